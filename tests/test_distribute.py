"""tf.distribute strategies: bad settings, two real workers, resume from the chief's backup.

The tripwire for the Keras 3.15 multi-worker workaround is in tests/test_compat.py.

`--strategy mirrored` itself is exercised for every recipe by tests/test_contract.py.
"""

import json
import os
import re
import socket
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import MIRRORED, cli_command, make_reviews, write_csv

from lstm_recipes.cli import main

STRATEGIES = "default, mirrored, multi-worker, tpu"


@pytest.mark.parametrize(
    ("args", "tf_config", "message"),
    [
        (["--strategy", "nccl"], None, f"unknown strategy 'nccl'; expected one of {STRATEGIES}"),
        (["--set", "strategy=nccl"], None, f"expected one of {STRATEGIES}, got 'nccl'"),
        (["--strategy", "multi-worker"], None, "expected TF_CONFIG with the cluster and this task"),
        (
            ["--strategy", "multi-worker"],
            "{cluster",
            "expected TF_CONFIG to be JSON, found '{cluster'",
        ),
        (
            ["--strategy", "multi-worker"],
            '{"cluster": {"worker": ["127.0.0.1:1"]}}',
            'expected TF_CONFIG to hold "task": {"type": "worker", "index": N}, found cluster',
        ),
        (
            ["--strategy", "multi-worker"],
            '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
            "to name a job and index in its cluster",
        ),
        (["--strategy", "tpu"], None, "--strategy tpu: expected a TPU"),
        (["--cpu-devices", "2"], None, "expected --cpu-devices with --strategy mirrored"),
        # conftest split the CPU into 2 at start; it can be split once per process.
        (["--strategy", "mirrored", "--cpu-devices", "3"], None, "found 2 already in place"),
    ],
    ids=[
        "unknown",
        "unknown-set",
        "no-tf-config",
        "tf-config-not-json",
        "tf-config-no-task",
        "tf-config-bad-index",
        "no-tpu",
        "cpu-devices-without-mirrored",
        "cpu-devices-too-late",
    ],
)
def test_bad_strategy_settings_are_one_line_errors(
    tmp_path, monkeypatch, reviews_csv, args, tf_config, message
):
    monkeypatch.delenv("TPU_NAME", raising=False)
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    run_dir = tmp_path / "run"
    for command in ("run", "train"):
        result = CliRunner().invoke(
            main,
            [command, "sentiment", "--preset", "tiny", "--data", str(reviews_csv)]
            + ["--run-dir", str(run_dir), *args],
        )
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1
        assert not run_dir.exists()


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def two_workers(command: list[str], tmp_path) -> list[str]:
    """Run ``command`` as workers 0 and 1 of a local cluster; their outputs, both succeeded."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    procs = []
    for index in range(2):
        (tmp_path / f"tmp{index}").mkdir()
        task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(task),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TMPDIR": str(tmp_path / f"tmp{index}"),
        }
        procs.append(
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = []
    try:
        # A hang (a worker waiting for a peer that died) fails the test instead of blocking CI.
        outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-3000:]
    return outputs


def test_two_workers_train_the_same_weights_and_only_the_chief_writes(tmp_path, tiny_run):
    data = write_csv(tmp_path / "reviews.csv", make_reviews(160))
    # One run directory for both, as on a cluster's shared storage.
    run_dir = tmp_path / "run"
    # One epoch: the steps, not their number, are what differs from a single-device run.
    tiny = ["sentiment", "--preset", "tiny", "--data", str(data), "--set", "epochs=1"]
    command = [*cli_command(), "run", *tiny, "--run-dir", str(run_dir)]
    outputs = two_workers(command + ["--strategy", "multi-worker"], tmp_path)
    chief, other = outputs
    assert (
        "strategy: multi-worker, 2 replica(s) in sync; task worker 0 of 2 workers (chief)" in chief
    )
    assert "task worker 1 of 2 workers (not the chief" in other
    weights = [re.search(r"trained weights: (.+)", output).group(1) for output in outputs]
    assert weights[0] == weights[1], weights
    # Two workers with one replica each train exactly what two replicas on one machine do: each
    # global batch of batch_size examples is split in two (sharded by data, not duplicated).
    mirrored = CliRunner().invoke(
        main,
        ["train", *tiny, "--run-dir", str(tmp_path / "mirrored"), *MIRRORED],
    )
    assert mirrored.exit_code == 0, mirrored.output
    assert f"trained weights: {weights[0]}" in mirrored.output
    # The chief wrote the run directory, evaluated and exported; the other left nothing behind.
    for name in ("checkpoints/best.weights.h5", "history.csv", "metrics.json", "export/1"):
        assert (run_dir / name).exists(), name
    assert not (run_dir / "backup").exists()
    assert json.loads((run_dir / "run.json").read_text())["state"] == "exported"
    assert not list((tmp_path / "tmp1").iterdir())
    assert "Done." in chief and "the chief writes the run directory" in other
    # The same serving interface as a single-device run's export.
    meta = json.loads((run_dir / "export/1/assets.extra/lstm_recipes.json").read_text())
    single = json.loads((tiny_run / "export/1/assets.extra/lstm_recipes.json").read_text())
    assert meta["signatures"] == single["signatures"]


def tiny_model() -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


def test_a_restarted_worker_resumes_from_the_chiefs_backup_without_writing_it(tmp_path):
    from lstm_recipes import checkpoints

    x, y = np.ones((8, 2), "float32"), np.ones((8, 1), "float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    chief = tmp_path / "chief"

    def backup(folder, restore_dir=None):
        return checkpoints.ExactBackup(str(folder), data, {}, restore_dir=restore_dir)

    chief_backup = backup(chief)
    chief_backup.delete_checkpoint = False
    tiny_model().fit(data, epochs=2, verbose=0, callbacks=[chief_backup])
    saved = {p.name: p.read_bytes() for p in chief.iterdir()}
    worker = backup(tmp_path / "own", restore_dir=str(chief))
    history = tiny_model().fit(data, epochs=3, verbose=0, callbacks=[worker])
    assert history.epoch == [2]  # resumed after the chief's two epochs
    assert {p.name: p.read_bytes() for p in chief.iterdir()} == saved


def test_two_workers_read_disjoint_shards_of_a_streamed_corpus(tmp_path):
    reviews = make_reviews(480)
    for i in range(4):
        write_csv(tmp_path / f"part-{i}.csv", reviews[i::4])
    tiny = ["sentiment", "--preset", "tiny", "--data", str(tmp_path / "part-*.csv")]
    command = [*cli_command(), "train", *tiny, "--set", "epochs=2"]
    command += ["--run-dir", str(tmp_path / "run"), "--strategy", "multi-worker"]
    outputs = two_workers(command, tmp_path)
    # Each worker reads its own half of the shards, and they still train the same weights
    # (every step is synchronous: gradients are summed over both workers' batches).
    assert "worker 0 of 2 reads its own shards: part-0.csv, part-2.csv" in outputs[0]
    assert "worker 1 of 2 reads its own shards: part-1.csv, part-3.csv" in outputs[1]
    weights = [re.search(r"trained weights: (.+)", output).group(1) for output in outputs]
    assert weights[0] == weights[1], weights
