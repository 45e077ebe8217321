"""Bad input on the command line: a clear message, exit status 2, no traceback, nothing damaged."""

import pytest
from click.testing import CliRunner
from conftest import write_csv

from lstm_recipes.cli import main


def invoke(*args):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"words,label\nhi,pos\n", "expected columns text, label"),
        (b"", "is empty"),
        (b"text,label\n\xff\xfe,pos\n", "expected UTF-8 text"),
        (b"text,label\na,pos\nb,pos\n", "expected at least 2 classes"),
    ],
)
def test_broken_data_files(tmp_path, content, message):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    result = invoke(
        "run",
        "sentiment",
        "--preset",
        "tiny",
        "--data",
        str(path),
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert result.exit_code == 2
    assert message in result.output


def test_bad_set_value(tmp_path):
    result = invoke("run", "sentiment", "--set", "units=lots", "--run-dir", str(tmp_path / "r"))
    assert result.exit_code == 2 and "expected int, got 'lots'" in result.output
    assert not (tmp_path / "r").exists()


def test_run_dir_with_foreign_files_is_not_touched(tmp_path, reviews_csv):
    (tmp_path / "notes.txt").write_text("mine")
    result = invoke(
        "run",
        "sentiment",
        "--preset",
        "tiny",
        "--data",
        str(reviews_csv),
        "--run-dir",
        str(tmp_path),
    )
    assert result.exit_code == 2 and "found other files" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "reviews.csv"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_evaluate_and_export_need_a_run_directory(tmp_path):
    for command in ("evaluate", "export"):
        result = invoke(command, str(tmp_path))
        assert result.exit_code == 2 and "expected run.json" in result.output


def test_evaluate_before_training(tmp_path):
    write_csv(tmp_path / "d.csv", [("good", "pos"), ("bad", "neg")] * 10)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(
        '{"recipe": "sentiment", "data": "%s"}' % (tmp_path / "d.csv")
    )
    (run_dir / "config.json").write_text("{}")
    (run_dir / "preprocessing.json").write_text(
        '{"vocabulary": ["good"], "labels": ["neg", "pos"]}'
    )
    result = invoke("evaluate", str(run_dir))
    assert result.exit_code == 2 and "expected trained weights" in result.output


def test_runtime_failures_exit_1_without_traceback_and_debug_shows_it(tmp_path, monkeypatch):
    from lstm_recipes import recipe as recipe_lib

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(recipe_lib, "load_recipe", broken)
    result = invoke("show", "sentiment")
    assert result.exit_code == 1
    assert "Error: RuntimeError: disk on fire" in result.output and "--debug" in result.output
    debug = CliRunner().invoke(main, ["--debug", "show", "sentiment"])
    assert isinstance(debug.exception, RuntimeError)
