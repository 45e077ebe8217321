"""Faults: SIGKILL during export, a full disk during training and export, edge inputs to a
served model. Every time: a clear message and the state already written intact.

A full disk is simulated with ``RLIMIT_FSIZE`` in the child process (writes past the limit fail
with EFBIG, as ENOSPC would on a full disk), so no root and no tmpfs mount are needed.
"""

import csv
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

from conftest import cli_command, make_reviews, write_csv
from serving_edges import run_edge_inputs
from test_cli_misuse import tree_digest

SERVE_SCRIPT = r"""
import json, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
out = serve(text=tf.constant(["a wonderful film", ""]))
print(json.dumps([x.decode() for x in out["label"].numpy().tolist()]))
"""


def serve(version):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, str(version)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def versions(export_root):
    return sorted(int(p.name) for p in export_root.iterdir() if p.name.isdigit())


def limit_file_size(nbytes):
    """preexec_fn: files may not grow past ``nbytes`` (EFBIG, not the default SIGXFSZ kill)."""

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return apply


def lstm_recipes(*args, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [*cli_command(), *map(str, args)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs
    )


def copy_run(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    for extra in versions(run_dir / "export")[1:]:  # other tests may have added versions
        shutil.rmtree(run_dir / "export" / str(extra))
    return run_dir


def test_sigkill_during_export_keeps_the_previous_version(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    export_root = run_dir / "export"
    first = tree_digest(export_root / "1")
    answer = serve(export_root / "1")

    proc = lstm_recipes("export", run_dir)
    deadline = time.time() + 300
    while not list(export_root.glob(".tmp-*")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the export ended before it could be killed"
    time.sleep(random.Random(10).uniform(0.0, 1.0))  # somewhere in the write or the check
    proc.send_signal(signal.SIGKILL)
    proc.communicate()

    assert tree_digest(export_root / "1") == first
    assert serve(export_root / "1") == answer
    # No partial version is visible: every integer-named folder is a whole, loadable model, and
    # what the killed export left is hidden under a name TF Serving does not read as a version.
    assert versions(export_root) == [1]
    leftovers = [p.name for p in export_root.iterdir() if not p.name.isdigit()]
    assert all(name.startswith(".tmp-") for name in leftovers), leftovers

    again = lstm_recipes("export", run_dir)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    assert versions(export_root) == [1, 2]
    assert serve(export_root / "2") == answer
    assert not list(export_root.glob(".tmp-*")), "a later export removes what a killed one left"


def test_disk_full_during_export(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    export_root = run_dir / "export"
    first = tree_digest(export_root / "1")
    variables = sum(p.stat().st_size for p in (export_root / "1" / "variables").iterdir())
    proc = lstm_recipes("export", run_dir, preexec_fn=limit_file_size(variables // 2))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, out + err
    assert "could not write the SavedModel" in err and "is the disk full?" in err, err
    assert "Traceback" not in err and "--debug" in err
    assert tree_digest(export_root / "1") == first
    assert versions(export_root) == [1] and not list(export_root.glob(".tmp-*"))


def history(run_dir):
    path = run_dir / "history.csv"
    return [int(r["epoch"]) for r in csv.DictReader(path.open())] if path.exists() else []


def test_disk_full_during_training_keeps_earlier_checkpoints_and_resumes(tmp_path):
    data = write_csv(tmp_path / "reviews.csv", make_reviews(600))
    run_dir = tmp_path / "run"
    args = ["train", "sentiment", "--preset", "tiny", "--data", data, "--run-dir", run_dir]
    args += ["--set", "epochs=3", "--set", "patience=100"]

    # A first run, killed after its first epoch, leaves a backup and a best checkpoint.
    proc = lstm_recipes(*args)
    deadline = time.time() + 300
    backup, best = run_dir / "backup", run_dir / "checkpoints" / "best.weights.h5"
    while (
        not (backup / "training_metadata.json").exists()
        and proc.poll() is None
        and time.time() < deadline
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert backup.exists() and best.exists(), "expected to kill after the first epoch"
    saved = {p: tree_digest(p) for p in (backup, best.parent)}

    # The disk fills up: first so full that nothing can be written (TensorBoard's event file
    # fails first), then with room for small files but not for the next checkpoint.
    weights = min(p.stat().st_size for p in backup.glob("*.weights.h5"))
    for limit in (64, weights // 2):
        full = lstm_recipes(*args, preexec_fn=limit_file_size(limit))
        out, err = full.communicate(timeout=600)
        assert full.returncode == 1, out + err
        assert "The disk looks full" in err, err
        assert "Traceback" not in err
        assert {p: tree_digest(p) for p in saved} == saved  # earlier checkpoints untouched
        assert not list(run_dir.rglob("*.tmp.weights.h5"))
    assert "could not write" in err and "previous file, if any, is intact" in err, err

    # Space again: the same command finishes the run.
    done = lstm_recipes(*args)
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, out + err
    assert "resuming the run" in out and history(run_dir) == [0, 1, 2]


def test_served_sentiment_edge_inputs(tiny_run):
    results = run_edge_inputs(tiny_run / "export" / "1")
    assert sum(r["outcome"] == "ok" for r in results) >= 6
