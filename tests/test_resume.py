"""Kill a training process with SIGKILL, rerun the same command, and it resumes."""

import csv
import os
import re
import signal
import subprocess
import time

from conftest import cli_command, make_reviews, write_csv


def epochs_done(history):
    if not history.exists():
        return []
    return [int(row["epoch"]) for row in csv.DictReader(history.open())]


def test_resume_after_sigkill(tmp_path):
    data = write_csv(tmp_path / "reviews.csv", make_reviews(2000))
    run_dir = tmp_path / "run"
    command = [
        *cli_command(),
        "train",
        "sentiment",
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--run-dir",
        str(run_dir),
        "--set",
        "epochs=8",
        "--set",
        "patience=100",
        "--set",
        "max_examples=2000",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    deadline = time.time() + 300
    while (
        len(epochs_done(run_dir / "history.csv")) < 2
        and proc.poll() is None
        and time.time() < deadline
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_after = epochs_done(run_dir / "history.csv")
    assert 2 <= len(killed_after) < 8, f"expected to kill mid-training, got epochs {killed_after}"
    assert (run_dir / "backup").exists()

    resumed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming the run" in resumed.stdout
    first_epoch = int(re.search(r"Epoch (\d+)/8", resumed.stdout).group(1))
    # Resumes after the last epoch that finished before the kill, not from epoch 1.
    assert first_epoch >= len(killed_after)
    done = epochs_done(run_dir / "history.csv")
    assert done[-1] == 7 and sorted(set(done)) == list(range(8))
    assert not (run_dir / "backup").exists()
    assert (run_dir / "checkpoints" / "best.weights.h5").exists()
