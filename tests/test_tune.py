"""`lstm-recipes tune`: the space's parsing and its one-line errors before any training, a tiny
search end to end (validation-only selection, best.preset.json reproducing the best trial), and
resume after a kill mid-trial."""

import csv
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import cli_command, cli_ok, make_reviews, write_csv

from lstm_recipes import recipe as recipe_lib
from lstm_recipes import search_space, tune_report, tuning
from lstm_recipes.cli import main
from lstm_recipes.errors import UserError


@pytest.fixture(scope="module")
def sentiment():
    return recipe_lib.load_recipe("sentiment")


def test_space_parses_choices_ranges_and_booleans_as_the_fields_types(sentiment):
    config = sentiment.PRESETS["default"]
    dims = search_space.resolve(
        [
            "units=32,64",
            "learning_rate=1e-4..3e-3:log",
            "dropout=0.1..0.5",
            "max_length=16..128",
            "bidirectional=bool",
            "pooling=max,mean",
            "units=16,32,128",  # a field given again replaces the earlier spec
        ],
        sentiment,
        config,
    )
    by_name = {d.name: d for d in dims}
    assert list(by_name) == [
        "units",
        "learning_rate",
        "dropout",
        "max_length",
        "bidirectional",
        "pooling",
    ]
    assert by_name["units"] == search_space.Dimension("units", "choice", (16, 32, 128))
    assert by_name["learning_rate"] == search_space.Dimension(
        "learning_rate", "float", low=1e-4, high=3e-3, log=True
    )
    assert by_name["max_length"].kind == "int" and by_name["max_length"].low == 16
    assert by_name["bidirectional"].values == (False, True)
    assert by_name["pooling"].values == ("max", "mean")
    # Each spec as the user would write it parses back to the same dimension.
    assert [search_space.parse(d.describe(), sentiment) for d in dims] == dims


def test_default_space_is_the_recipes_tune_space_and_its_values_start_at_the_preset(sentiment):
    config = sentiment.PRESETS["default"]
    dims = search_space.resolve(["default"], sentiment, config)
    assert [d.describe() for d in dims] == [
        search_space.parse(s, sentiment).describe() for s in sentiment.TUNE_SPACE
    ]
    hp = search_space.hyperparameters(dims, config)
    for dim in dims:
        assert hp.get(dim.name) == getattr(config, dim.name), dim.name


@pytest.mark.parametrize(
    "values",
    [
        {"units": 32, "learning_rate": 0.0012345678901234, "bidirectional": False},
        # What KerasTuner's Gaussian process proposes: NumPy scalars.
        {
            "units": np.int64(16),
            "dropout": np.float64(0.41617828324459055),
            "residual": np.bool_(1),
        },
    ],
)
def test_set_lines_parse_back_to_the_same_config(sentiment, values):
    lines = recipe_lib.set_lines(values)
    assert not any("np." in line for line in lines), lines
    config = recipe_lib.resolve_config(sentiment, "tiny", lines)
    assert {k: getattr(config, k) for k in values} == {
        k: v.item() if hasattr(v, "item") else v for k, v in values.items()
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("unitz=1,2", "--space: unknown config field 'unitz'; valid fields:"),
        ("pooling=a..b", "--space pooling: a range needs a number field; pooling is"),
        ("units=256..32", "--space units: expected low < high, got 256..32"),
        ("units=0,8", "--space units: expected values of at least 1, got 0"),
        ("learning_rate=0..1e-3", "--space learning_rate: expected positive values, got 0"),
        ("dropout=0.0..0.5:log", "--space dropout: a log range needs low > 0, got 0.0"),
        ("dropout=0.1..0.5:exp", "expected low..high or low..high:log"),
        ("units=64", "--space units: expected two or more choices (a,b), a range"),
        ("units=a,b", "--space units: expected int, got 'a'"),
        ("pooling=max,median", "--space pooling: expected one of last, max, mean, max_mean"),
        ("units=bool", "--space units: bool needs a bool field; units is int"),
        ("max_minutes=1..5", "--space: max_minutes cannot be searched: the search's --max-minutes"),
        ("units=8,8", "repeat a value"),
        ("units", "expected --space FIELD=SPEC"),
    ],
)
def test_a_bad_space_is_one_line_before_anything_is_written(tmp_path, spec, message):
    out = tmp_path / "search"
    result = CliRunner().invoke(main, ["tune", "sentiment", "--space", spec, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "expected at least one --space FIELD=SPEC"),
        (["--space", "units=8,16", "--objective", "accuracy"], "expected a val_ metric"),
        (["--space", "units=8,16", "--objective", "val_loss:up"], "expected NAME, NAME:min"),
        (["--space", "units=8,16", "--max-minutes", "0"], "--max-minutes: expected a positive"),
    ],
)
def test_bad_search_options_are_one_line(tmp_path, args, message):
    out = tmp_path / "search"
    result = CliRunner().invoke(main, ["tune", "sentiment", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_importance_ranks_the_field_that_moves_the_objective_first():
    table = [
        {"values": {"units": u, "pooling": p}, "objective": 1.0 / u + (0.001 if p == "max" else 0)}
        for u, p in [(8, "max"), (16, "mean"), (32, "max"), (64, "mean"), (128, "max")]
    ]
    weights = tune_report.importance(table, ["units", "pooling"])
    assert weights["units"] == pytest.approx(1.0)
    assert weights["pooling"] < 0.5


def test_tiny_search_selects_on_validation_only_and_its_preset_file_reproduces_the_best(
    tmp_path, monkeypatch, sentiment
):
    data = write_csv(tmp_path / "reviews.csv", make_reviews(300))
    out = tmp_path / "search"
    evaluated = []
    evaluate = sentiment.evaluate

    def recording_evaluate(config, model, prep, split, run_dir):
        evaluated.append(run_dir)
        return evaluate(config, model, prep, split, run_dir)

    monkeypatch.setattr(sentiment, "evaluate", recording_evaluate)
    args = ["--preset", "tiny", "--data", str(data), "--space", "units=8,16"]
    args += ["--space", "learning_rate=1e-3..3e-2:log", "--trials", "3", "--out", str(out)]
    cli_ok("tune", "sentiment", *args)

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["trial"] for r in rows][0] == "preset" and len(rows) == 4
    assert all(r["status"] == "completed" for r in rows)
    # Each trial's objective is its best validation loss, read back from its own history.
    for row in rows:
        history = tune_report.read_history(out / "trials" / row["trial"] / "history.csv")
        assert float(row["val_loss"]) == pytest.approx(min(h["val_loss"] for h in history))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    best_dir = out / "trials" / best["trial"]
    # The test split was touched once, for the best run, after every trial was done.
    assert evaluated == [best_dir]
    assert [p.parent.name for p in (out / "trials").glob("*/metrics.json")] == [best["trial"]]
    assert (best_dir / "export" / "1" / "saved_model.pb").exists()
    assert (out / "plots" / "objective_by_trial.png").stat().st_size > 1000
    assert "| preset |" in (out / "results.md").read_text()

    preset = json.loads((out / "best.preset.json").read_text())
    assert preset["trial"] == best["trial"] and preset["preset"] == "tiny"
    # What `run --preset-file` resolves (before training) is the best trial's config.
    preset_name, lines = recipe_lib.read_preset_file(sentiment, out / "best.preset.json")
    best_config = json.loads((best_dir / "config.json").read_text())
    assert recipe_lib.resolve_config(sentiment, preset_name, lines) == recipe_lib.config_from_dict(
        sentiment, best_config
    )

    # Rerunning the finished search trains nothing and does not evaluate again.
    before = {p: p.stat().st_mtime_ns for p in (out / "trials").rglob("history.csv")}
    cli_ok("tune", "sentiment", *args)
    assert {p: p.stat().st_mtime_ns for p in (out / "trials").rglob("history.csv")} == before
    assert evaluated == [best_dir]
    # The same folder with another space is another search: refused, nothing touched.
    other = CliRunner().invoke(main, ["tune", "sentiment", *args, "--space", "units=8,32"])
    assert other.exit_code == 2 and "holds a search with other settings (space)" in other.output


def test_preset_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"recipe": "char_lm", "preset": "tiny", "set": {}}))
    cases = [
        (["--preset-file", str(bad)], "expected a JSON preset file at"),
        (["--preset-file", str(other)], "is a preset for recipe 'char_lm', not 'sentiment'"),
        (["--preset-file", str(tmp_path / "none.json")], "expected a preset file at"),
        (["--preset-file", str(other), "--preset", "tiny"], "expected --preset or --preset-file"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, ["train", "sentiment", *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_a_search_killed_mid_trial_resumes_without_retraining_finished_trials(tmp_path):
    data = write_csv(tmp_path / "reviews.csv", make_reviews(600))
    out = tmp_path / "search"
    command = [*cli_command(), "tune", "sentiment", "--preset", "tiny", "--data", str(data)]
    command += ["--set", "epochs=4", "--set", "patience=100", "--space", "units=8,12,16"]
    command += ["--trials", "2", "--algorithm", "random", "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # Kill once the first trial after the preset has committed an epoch to its backup.
    history = out / "trials" / "0" / "history.csv"
    deadline = time.time() + 180
    while proc.poll() is None and time.time() < deadline:
        if history.exists() and len(tune_report.read_history(history)) >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(tune_report.read_history(history))
    assert 1 <= done < 4, f"expected to kill trial 0 mid-training, it had {done} epochs"
    preset_history = (out / "trials" / "preset" / "history.csv").read_bytes()
    first_rows = history.read_text().splitlines()[: done + 1]

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert "=== trial preset" not in resumed.stdout  # finished: not retrained
    assert "=== trial 0:" in resumed.stdout and "=== trial 1:" in resumed.stdout
    assert (out / "trials" / "preset" / "history.csv").read_bytes() == preset_history
    # Trial 0 went on from its backup: the epochs it had done are kept, each epoch once.
    rows = history.read_text().splitlines()
    assert rows[: done + 1] == first_rows and len(rows) == 1 + 4
    state = json.loads((out / "search.json").read_text())
    assert sorted(state["trials"]) == ["0", "1", "preset"]
    assert all(
        t["status"] == "completed" and math.isfinite(t["objective"])
        for t in state["trials"].values()
    )


def test_objective_is_read_at_the_best_checkpoints_epoch(tmp_path, sentiment):
    (tmp_path / "history.csv").write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n"
        "0,0.5,0.7,0.55,0.69\n1,0.6,0.6,0.61,0.65\n2,0.7,0.5,0.66,0.67\n"
    )
    # sentiment keeps the checkpoint of the lowest val_loss (epoch 1).
    loss = tuning.Objective("val_loss", "min")
    accuracy = tuning.Objective("val_accuracy", "max")
    assert tuning.trial_score(tmp_path, sentiment, loss) == (0.65, 3)
    assert tuning.trial_score(tmp_path, sentiment, accuracy) == (0.61, 3)
    with pytest.raises(UserError, match="the runs log no such metric; they log val_accuracy"):
        tuning.trial_score(tmp_path, sentiment, tuning.Objective("val_f1", "max"))


def test_the_search_stops_when_its_minutes_are_spent(tmp_path):
    data = write_csv(tmp_path / "reviews.csv", make_reviews(300))
    out = tmp_path / "search"
    # 1.2 s: spent while the preset's run is still training; no trial starts after it.
    result = cli_ok("tune", "sentiment", "--preset", "tiny", "--set", "epochs=50", "--data",
                    str(data), "--space", "units=8,16", "--max-minutes", "0.02", "--out", str(out))  # fmt: skip
    assert "search stopped: the 0.02-minute budget is spent" in result.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["trial"], r["status"]) for r in rows] == [("preset", "completed (budget cut)")]
    assert int(rows[0]["epochs"]) < 50


def test_hyperband_promotes_a_trial_by_going_on_from_its_run(tmp_path):
    data = write_csv(tmp_path / "reviews.csv", make_reviews(300))
    out = tmp_path / "search"
    # 3 epochs, factor 3: three 1-epoch trials, then the best of them trained to 3 epochs.
    cli_ok("tune", "sentiment", "--preset", "tiny", "--set", "epochs=3", "--set", "patience=100",
           "--data", str(data), "--space", "units=8,16", "--space", "dropout=0.1..0.5",
           "--algorithm", "hyperband", "--trials", "4", "--out", str(out))  # fmt: skip
    runs = {p.name: json.loads((p / "run.json").read_text()) for p in (out / "trials").iterdir()}
    promoted = [name for name, info in runs.items() if "continued_from" in info]
    assert len(promoted) == 1
    child = out / "trials" / promoted[0]
    parent = Path(runs[promoted[0]]["continued_from"])
    parent_rows = (parent / "history.csv").read_text().splitlines()
    child_rows = (child / "history.csv").read_text().splitlines()
    # The parent's epoch is kept as it was, and two more follow it: 3 epochs in all.
    assert len(parent_rows) == 2 and len(child_rows) == 4
    assert child_rows[:2] == parent_rows
    assert json.loads((child / "config.json").read_text())["epochs"] == 3
