"""Every command has --help; discovery commands never import TensorFlow."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from lstm_recipes.cli import main

COMMANDS = [
    "list",
    "show",
    "new",
    "run",
    "train",
    "evaluate",
    "export",
    "predict",
    "ablate",
    "diagnose",
    "inspect",
    "tune",
]


def test_every_command_is_tested_here():
    assert sorted(main.commands) == sorted(COMMANDS)


@pytest.mark.parametrize("command", [[]] + [[c] for c in COMMANDS])
def test_help(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    if command:
        assert main.commands[command[0]].get_short_help_str()[:20] in result.output.replace(
            "\n  ", " "
        )


def test_help_and_list_do_not_import_tensorflow(tmp_path):
    # --help and list must stay instant: importing TensorFlow costs 5-9 s.
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from lstm_recipes.cli import main\n"
        "for args in (['--help'], ['list'], ['run', '--help']):\n"
        "    assert CliRunner().invoke(main, args).exit_code == 0\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    # From another folder: `python -c` in the checkout would import the source tree instead.
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "False False"


def test_list_names_sentiment_with_topology():
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("sentiment"))
    assert "many-to-one" in line


def test_show_lists_presets_fields_forms_and_signatures():
    result = CliRunner().invoke(main, ["show", "sentiment"])
    assert result.exit_code == 0, result.output
    for expected in (
        "many-to-one",
        "tiny",
        "imdb",
        "vocab_size",
        "words kept",
        "tfds:NAME",
        "serving_default",
        "probabilities",
        "tune --space default`: learning_rate=3e-4..3e-3:log",
    ):
        assert expected in result.output


def test_show_unknown_recipe_is_a_clear_error():
    result = CliRunner().invoke(main, ["show", "sentimnet"])
    assert result.exit_code == 2
    assert "unknown recipe 'sentimnet'" in result.output and "sentiment" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["run", "train"])
def test_strategy_options_are_documented(command):
    result = CliRunner().invoke(main, [command, "--help"])
    text = " ".join(result.output.split())
    assert "--strategy NAME" in text and "--cpu-devices N" in text
    for name in ("default", "mirrored", "multi-worker", "tpu", "TF_CONFIG"):
        assert name in text
