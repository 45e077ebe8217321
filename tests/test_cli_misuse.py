"""CLI misuse: status 2 and one line on stderr for usage errors, 1 for runtime failures, no
traceback unless --debug, and nothing already written is touched."""

import hashlib
import os

import pytest
from click.testing import CliRunner
from conftest import write_csv

from lstm_recipes.cli import main


def invoke(*args, debug=False):
    result = CliRunner().invoke(main, [*(["--debug"] if debug else []), *map(str, args)])
    if not debug:
        assert "Traceback" not in result.output, result.output
    return result


def tree_digest(folder):
    """A digest of every file's path and bytes under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no_such_recipe"], "unknown recipe 'no_such_recipe'; expected one of"),
        (["run", "missing_recipe.py"], "expected a recipe module file, found no file"),
        (["run", "sentiment", "--preset", "huge"], "unknown preset 'huge' for recipe sentiment"),
        (["run", "sentiment", "--set", "unitz=3"], "unknown config key 'unitz'; valid keys:"),
        (["run", "sentiment", "--set", "units"], "expected --set KEY=VALUE, got 'units'"),
        (["run", "sentiment", "--set", "units=lots"], "--set units: expected int, got 'lots'"),
        (["run", "sentiment", "--set", "dropout=x"], "--set dropout: expected float"),
        (["run", "sentiment", "--set", "bidirectional=maybe"], "bidirectional"),
        (["run", "sentiment", "--set", "epochs=0"], "--set epochs: expected at least 1, got '0'"),
        (["run", "sentiment", "--set", "batch_size=-4"], "--set batch_size: expected at least 1"),
        (["run", "sentiment", "--set", "learning_rate=0"], "expected a positive number"),
        (["run", "char_lm", "--set", "dynamic_lr=-1"], "--set dynamic_lr: expected at least 0.0"),
        (["run", "sentiment", "--data", "no/such/file.csv"], "found no file or folder at"),
        (["run", "translation", "--data", "a.en,b.de"], "expected a file at a.en, found none"),
        (["train", "char_lm", "--data", "no_such.txt"], "found no file or folder at no_such.txt"),
        (["run", "tagging", "--data", "tags.conll"], "found nothing at tags.conll"),
        (
            ["run", "frame_labeling", "--data", "tags.conll"],
            "now its own recipe: lstm-recipes run tagging",
        ),
        (["run", "image_captioning", "--data", "photos/"], "found nothing"),
        (["run", "sentiment", "--data", "tfds:"], "expected tfds:NAME"),
        (["run", "sentiment", "--data", "tfds:a/b/c"], "expected tfds:NAME[/CONFIG][:VERSION]"),
    ],
)
def test_usage_errors_exit_2_with_one_line_and_leave_no_run_directory(
    tmp_path, monkeypatch, args, message
):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args, "--run-dir", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    # A run directory made for a command that failed would refuse the corrected command.
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["run"],
        ["run", "sentiment", "--no-such-flag"],
        ["run", "sentiment", "--data"],
        ["evaluate", "no/such/run"],
        ["export", "no/such/run"],
        ["predict", "no/such/model", "hello"],
        ["predict", ".", "x", "--chars", "-5"],
        ["ablate", "sentiment", "--seeds", "0"],
        ["no-such-command"],
    ],
)
def test_click_usage_errors_exit_2(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_messages_go_to_stderr(tmp_path):
    result = CliRunner().invoke(main, ["run", "sentiment", "--preset", "huge"])
    assert result.exit_code == 2
    assert "unknown preset" in result.stderr and "unknown preset" not in result.stdout


def test_unreadable_data_file(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "reviews.csv", [("good", "pos"), ("bad", "neg")] * 20)
    if os.geteuid() == 0:  # root reads anything: make the read itself fail
        from lstm_recipes.data import files

        def denied(self):
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(files.Path, "read_bytes", denied)
    else:
        path.chmod(0)
    result = invoke("train", "sentiment", "--data", path, "--run-dir", tmp_path / "run")
    assert result.exit_code == 2
    assert f"cannot read {path}" in result.output and "Permission denied" in result.output
    assert not (tmp_path / "run").exists()


def test_run_directory_of_another_recipe_is_refused_untouched(tiny_run):
    before = tree_digest(tiny_run)
    for recipe in ("translation", "char_lm"):
        result = invoke("train", recipe, "--preset", "tiny", "--run-dir", tiny_run)
        assert result.exit_code == 2
        assert "holds a run of recipe 'sentiment', expected" in result.output
    result = invoke("train", "sentiment", "--preset", "default", "--run-dir", tiny_run)
    assert result.exit_code == 2 and "started with other settings" in result.output
    assert tree_digest(tiny_run) == before


def test_run_dir_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("mine")
    result = invoke("train", "sentiment", "--preset", "tiny", "--run-dir", tmp_path / "taken")
    assert result.exit_code == 2
    assert (tmp_path / "taken").read_text() == "mine"


def test_export_directory_that_is_a_file_is_refused(tiny_run, tmp_path):
    """(An export directory that exists gets a new version beside the old ones:
    test_faults.py's export tests.)"""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir, ignore=shutil.ignore_patterns("export"))
    (run_dir / "export").write_text("not a folder")
    result = invoke("export", run_dir)
    assert result.exit_code == 2 and "found a file" in result.output
    assert (run_dir / "export").read_text() == "not a folder"


def test_runtime_failure_exit_1_and_debug_traceback(tmp_path, monkeypatch):
    from lstm_recipes import rundir

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rundir, "open_run", full)
    data = write_csv(tmp_path / "d.csv", [("good", "pos"), ("bad", "neg")] * 20)
    args = ("train", "sentiment", "--preset", "tiny", "--data", data)
    result = invoke(*args)
    assert result.exit_code == 1
    assert "Error: OSError: [Errno 28] No space left on device" in result.stderr
    assert "--debug" in result.stderr
    debug = invoke(*args, debug=True)
    assert isinstance(debug.exception, OSError)
