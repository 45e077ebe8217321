"""The tiny end-to-end run: train -> evaluate -> export -> reload in a fresh process -> predict."""

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import TINY_RUN_SETTINGS, cli_ok

from lstm_recipes.cli import main


def test_run_directory_has_everything(tiny_run):
    for name in (
        "run.json",
        "config.json",
        "preprocessing.json",
        "checkpoints/best.weights.h5",
        "history.csv",
        "metrics.json",
        "plots/learning_curves.png",
        "plots/confusion_matrix.png",
        "model_card.md",
        "export/1/saved_model.pb",
        "export/1/assets.extra/lstm_recipes.json",
    ):
        assert (tiny_run / name).exists(), name
    assert not (tiny_run / "backup").exists()  # removed once training finished
    assert list((tiny_run / "logs").rglob("events.out.tfevents.*"))
    info = json.loads((tiny_run / "run.json").read_text())
    assert info["state"] == "exported"
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert set(metrics) >= {"accuracy", "macro_f1", "confusion_matrix", "per_class"}
    # The generated reviews are separable by their sentiment words.
    assert metrics["accuracy"] > 0.8, metrics
    card = (tiny_run / "model_card.md").read_text()
    assert "serving_default(text: string[None]) -> {" in card and "accuracy" in card


FRESH_PROCESS = r"""
import json, sys
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
serve = loaded.signatures["serving_default"]
texts = ["great wonderful film", "awful boring plot", "", "word " * 20000, "日本語のテキスト 🎬 ¡hola!"]
out = serve(text=tf.constant(texts))
assert "lstm_recipes" not in sys.modules
print(json.dumps({"label": [b.decode() for b in out["label"].numpy()],
                  "probabilities": out["probabilities"].numpy().tolist()}))
"""


def test_export_reloads_in_a_fresh_process_without_the_package(tiny_run):
    out = subprocess.run(
        [sys.executable, "-I", "-c", FRESH_PROCESS, str(tiny_run / "export" / "1")],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["label"][:2] == ["pos", "neg"]
    assert len(result["label"]) == 5
    for row in result["probabilities"]:
        assert len(row) == 2 and abs(sum(row) - 1) < 1e-5


def test_export_serves_where_keras_cannot_be_imported(tiny_run):
    # As in TF Serving, and in the export's own fresh-process check when nothing is required.
    no_keras = 'import sys\nsys.modules["keras"] = None\n' + FRESH_PROCESS
    out = subprocess.run(
        [sys.executable, "-I", "-c", no_keras, str(tiny_run / "export" / "1")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["label"][:2] == ["pos", "neg"]


def test_predict_command(tiny_run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        main, ["predict", str(tiny_run), "great wonderful film", "awful boring plot"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert "label=pos" in lines[0] and "label=neg" in lines[1]
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("superb charming cast\n\ndreadful messy\n", encoding="utf-8")
    result = runner.invoke(
        main, ["predict", str(tiny_run / "export"), "--file", str(inputs), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [r["label"] for r in rows][::2] == ["pos", "neg"]
    assert rows[1]["text"] == "" and len(rows[1]["probabilities"]) == 2


def test_predict_errors(tiny_run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["predict", str(tiny_run)])
    assert result.exit_code == 2 and "expected INPUT arguments or --file" in result.output
    result = runner.invoke(main, ["predict", str(tmp_path), "x"])
    assert result.exit_code == 2 and "expected a SavedModel" in result.output
    result = runner.invoke(main, ["predict", str(tiny_run), "x", "--signature", "nope"])
    assert result.exit_code == 2 and "serving_default" in result.output


def test_export_again_adds_a_version_and_keeps_the_first(tiny_run):
    first = (tiny_run / "export" / "1" / "saved_model.pb").read_bytes()
    result = CliRunner().invoke(main, ["export", str(tiny_run)])
    assert result.exit_code == 0, result.output
    assert (tiny_run / "export" / "2" / "saved_model.pb").exists()
    assert (tiny_run / "export" / "1" / "saved_model.pb").read_bytes() == first
    assert not list((tiny_run / "export").glob(".tmp-*"))
    shutil.rmtree(tiny_run / "export" / "2")


def test_evaluate_command_rewrites_the_same_metrics(tiny_run):
    before = json.loads((tiny_run / "metrics.json").read_text())
    result = CliRunner().invoke(main, ["evaluate", str(tiny_run)])
    assert result.exit_code == 0, result.output
    after = json.loads((tiny_run / "metrics.json").read_text())
    assert after["accuracy"] == pytest.approx(before["accuracy"], abs=1e-6)


def test_saved_model_cli_show_and_run(tiny_run):
    cli = shutil.which("saved_model_cli")
    if cli is None:
        pytest.skip("saved_model_cli is not on PATH")
    path = str(tiny_run / "export" / "1")
    show = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True)
    assert show.returncode == 0, show.stderr
    assert "serving_default" in show.stdout and "probabilities" in show.stdout
    run = subprocess.run(
        [
            cli,
            "run",
            "--dir",
            path,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--input_exprs",
            'text=["great wonderful film"]',
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "b'pos'" in run.stdout


def test_rerunning_a_finished_run_reuses_it(tiny_run, tmp_path):
    info = json.loads((tiny_run / "run.json").read_text())
    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run, run_dir)
    history = (run_dir / "history.csv").read_text()
    result = cli_ok(
        "run", "sentiment", *TINY_RUN_SETTINGS, "--data", info["data"], "--run-dir", str(run_dir)
    )
    assert "training already finished" in result.output
    assert (run_dir / "history.csv").read_text() == history
    assert (run_dir / "export" / "2").exists()


def test_run_dir_made_with_other_settings_is_refused(tiny_run):
    info = json.loads((tiny_run / "run.json").read_text())
    result = CliRunner().invoke(
        main,
        [
            "run",
            "sentiment",
            "--preset",
            "tiny",
            "--data",
            info["data"],
            "--run-dir",
            str(tiny_run),
        ],
    )
    assert result.exit_code == 2
    assert "holds a run started with other settings" in result.output
    assert "epochs: 6 -> 2" in result.output


def test_new_copies_a_recipe_that_runs_by_path(tmp_path, reviews_csv):
    target = tmp_path / "my_recipe.py"
    runner = CliRunner()
    result = runner.invoke(main, ["new", "sentiment", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text().startswith('"""Sentiment')
    again = runner.invoke(main, ["new", "sentiment", str(target)])
    assert again.exit_code == 2 and "already exists" in again.output
    result = runner.invoke(
        main,
        [
            "train",
            str(target),
            "--preset",
            "tiny",
            "--data",
            str(reviews_csv),
            "--run-dir",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["recipe"] == str(target.resolve())
