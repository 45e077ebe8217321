"""Shared fixtures: generated data files, a trained tiny run, and the path to ../shared/data."""

from __future__ import annotations

import csv
import os
import random
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LSTM_RECIPES_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share two cores: one TensorFlow thread each (and in the CLI runs they start),
    # or their thread pools preempt each other. A test alone took 44 s; beside the other worker,
    # 147 s. Set before TensorFlow starts; the CLI leaves these variables alone.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

# Logical CPU devices can only be set before TensorFlow starts, so the session starts with two:
# in-process tests then run `--strategy mirrored --cpu-devices 2` (2 replicas) on a CPU-only
# machine. Ops without a device still run on the first, so other tests see no difference.
MIRRORED = ["--strategy", "mirrored", "--cpu-devices", "2"]


def pytest_configure(config):
    from lstm_recipes.distribute import split_cpu

    split_cpu(2)


def pytest_xdist_node_collection_finished(node, ids):
    """Tripwire: test modules that share a trained fixture carry an ``xdist_group`` mark, so
    that one worker trains it once. A pytest that drops the marks (9.2 does) doubles that work
    silently; stop instead, with what to do."""
    canary = [i for i in ids if "test_char_lm.py::" in i]
    if (
        node.config.getoption("dist") == "loadgroup"
        and canary
        and not any("@" in i for i in canary)
    ):
        pytest.exit(
            "expected xdist_group marks in the collected test ids (tests/test_char_lm.py has "
            "one), found none: this pytest breaks --dist loadgroup (pytest-dev/pytest-xdist#1386,"
            ' pytest 9.2). Install pytest<9.2, as setup.cfg asks: pip install ".[test]"',
            returncode=4,
        )


POSITIVE = ["great", "wonderful", "superb", "moving", "brilliant", "delightful", "charming", "fun"]
NEGATIVE = ["awful", "boring", "dull", "clumsy", "tedious", "bland", "dreadful", "messy"]
FILLER = [
    "the",
    "film",
    "story",
    "cast",
    "plot",
    "acting",
    "movie",
    "scenes",
    "was",
    "and",
    "a",
    "its",
    "of",
]


def review(rng: random.Random, label: str) -> str:
    words = rng.sample(FILLER, 5) + rng.sample(POSITIVE if label == "pos" else NEGATIVE, 2)
    rng.shuffle(words)
    return " ".join(words)


def make_reviews(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Synthetic, learnable two-class reviews (positive and negative words among filler)."""
    rng = random.Random(seed)
    return [(review(rng, label), label) for label in ("pos", "neg") * (n // 2)]


def write_csv(path: Path, rows, header=("text", "label"), delimiter=",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def reviews_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "reviews.csv", make_reviews(300))


# The tiny run's settings; a test that reruns that run must pass exactly these.
TINY_RUN_SETTINGS = ["--preset", "tiny", "--set", "epochs=6", "--set", "learning_rate=0.01"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny sentiment run (trained, evaluated, exported) on generated reviews."""
    root = tmp_path_factory.mktemp("tiny_run")
    data = write_csv(root / "reviews.csv", make_reviews(400))
    run_dir = root / "run"
    cli_ok("run", "sentiment", *TINY_RUN_SETTINGS, "--data", str(data), "--run-dir", str(run_dir))
    return run_dir


def cli_ok(*args: str):
    """Invoke ``lstm-recipes ARGS`` in-process and insist that it succeeded."""
    from click.testing import CliRunner

    from lstm_recipes.cli import main

    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def fresh_python(script: str, *args: str, cwd: Path):
    """Run ``script`` in a new interpreter (as a server would load a model) and return the JSON
    value it prints on its last line."""
    import json
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True, cwd=cwd
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cli_command() -> list[str]:
    """The installed ``lstm-recipes`` console script.

    Not ``python -m``: that would import the source tree in the current folder, where
    ``lstm_recipes.recipes`` does not exist, instead of the installed package.
    """
    script = shutil.which("lstm-recipes") or str(Path(sys.executable).parent / "lstm-recipes")
    return [script]


def readme_block(name: str, following: int = 0) -> str:
    """The README's Python code block that defines ``name`` (tests run what users copy), and
    the ``following`` blocks after it."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    found = [n for n, b in enumerate(blocks) if f"def {name}(" in b]
    assert len(found) == 1, f"expected one README code block defining {name}, found {len(found)}"
    return "\n".join(blocks[found[0] : found[0] + 1 + following])


# The start of an app's script: the LiteRT interpreter only; TensorFlow, Keras and this package
# cannot be imported, as on a device.
LITERT_APP = r"""
import importlib.abc, json, re, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "lstm_recipes"):
            raise ImportError(name)
sys.meta_path.insert(0, Block())
import numpy as np
from ai_edge_litert.interpreter import Interpreter
"""
