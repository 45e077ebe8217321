"""Kill a real training process with SIGKILL at a random point, rerun the same command: it
resumes, runs the same number of epochs, and ends with the same history and metrics as a run
that was never killed (fixed seeds; the backup holds weights, optimizer, random generator and
callback state, and the data shuffles replay)."""

import csv
import os
import random
import signal
import subprocess
import time

import pytest
from conftest import cli_command, make_reviews, write_csv

EPOCHS = 4


def history(run_dir):
    path = run_dir / "history.csv"
    return list(csv.DictReader(path.open())) if path.exists() else []


def write_tags(path):
    rng = random.Random(0)
    nouns, verbs = ["cat", "dog", "bird", "fish"], ["sees", "likes", "chases"]
    lines = []
    for _ in range(240):
        words = [("the", "B-NP"), (rng.choice(nouns), "I-NP"), (rng.choice(verbs), "B-VP")]
        words += [("a", "B-NP"), (rng.choice(nouns), "I-NP")]
        lines += [f"{w} {t}" for w, t in words] + [""]
    path.write_text("\n".join(lines))
    return path


def recipe_args(recipe, tmp_path):
    """(--data and --set arguments) for a few-second tiny training of each recipe."""
    common = ["--preset", "tiny", "--set", f"epochs={EPOCHS}", "--set", "patience=100"]
    if recipe == "sentiment":
        data = write_csv(tmp_path / "reviews.csv", make_reviews(800))
        return [*common, "--data", str(data), "--set", "max_examples=640"]
    if recipe == "sentiment-shards":
        # A streamed corpus: the shards are read again every epoch through a shuffle buffer.
        reviews = make_reviews(800)
        for i in range(3):
            write_csv(tmp_path / f"part-{i}.csv", reviews[i::3])
        return [*common, "--data", str(tmp_path / "part-*.csv")]
    if recipe == "tagging":
        return [*common, "--data", str(write_tags(tmp_path / "tags.txt"))]
    if recipe == "translation":
        return [*common, "--set", "max_examples=400"]
    if recipe == "char_lm":
        return [*common, "--set", "max_examples=12000"]
    return [*common, "--set", "max_examples=160", "--set", f"feature_cache={tmp_path / 'cache'}"]


def train(recipe, args, run_dir, **kwargs):
    recipe = recipe.removesuffix("-shards")
    command = [*cli_command(), "train", recipe, *args, "--run-dir", str(run_dir)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kwargs
    )


def kill_at_random_point(proc, run_dir, seed):
    """SIGKILL once the first epoch's backup is written, after a seeded random extra delay, cut
    short when the last epoch begins: on a fast machine the tiny epochs can all end within the
    delay, and the kill must land mid-training."""
    deadline = time.time() + 300
    backup = run_dir / "backup" / "training_metadata.json"
    while not backup.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    until = time.time() + random.Random(seed).uniform(0.0, 1.5)
    while time.time() < until and len(history(run_dir)) < EPOCHS - 1:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return len(history(run_dir))


def finish(proc):
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    return output


RECIPES = [
    "sentiment",
    "sentiment-shards",
    pytest.param("translation", marks=pytest.mark.slow),
    pytest.param("tagging", marks=pytest.mark.slow),
    pytest.param("char_lm", marks=pytest.mark.slow),
    pytest.param("image_captioning", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("recipe", RECIPES)
def test_sigkill_and_resume_matches_an_uninterrupted_run(tmp_path, recipe):
    args = recipe_args(recipe, tmp_path)
    reference = tmp_path / "reference"
    finish(train(recipe, args, reference))
    expected = history(reference)
    assert [int(r["epoch"]) for r in expected] == list(range(EPOCHS))

    run_dir = tmp_path / "killed"
    done = kill_at_random_point(train(recipe, args, run_dir), run_dir, seed=len(recipe))
    assert 1 <= done < EPOCHS, f"expected to kill mid-training, {done} epochs were done"
    assert (run_dir / "backup" / "training_metadata.json").exists()

    output = finish(train(recipe, args, run_dir))
    assert "resuming the run" in output
    assert f"Epoch 1/{EPOCHS}" not in output  # it went on from the backup, not from scratch
    resumed = history(run_dir)
    assert [int(r["epoch"]) for r in resumed] == list(range(EPOCHS))
    # The same losses and metrics, epoch by epoch, as the run that was never killed.
    assert resumed == expected
    assert not (run_dir / "backup").exists()
    assert (run_dir / "checkpoints" / "best.weights.h5").exists()
