"""Smoke runs of the benchmarks' --quick modes: each runs, prints its figures and exits 0.

The speed and memory goals themselves are measured by the benchmarks and recorded in
benchmarks/RESULTS.md; tests never time anything.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

BENCHMARKS = REPO / "benchmarks"


def bench(name: str, *args: str, tmp_path) -> str:
    # No shared data: the quick modes fall back to generated data, as on CI.
    env = {**os.environ, "LSTM_RECIPES_DATA": str(tmp_path / "no-shared-data")}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_cli_startup_quick(tmp_path):
    out = bench("cli_startup.py", "--quick", tmp_path=tmp_path)
    medians = dict(re.findall(r"^(lstm-recipes \S+)\s+median ([\d.]+) s", out, re.M))
    assert set(medians) == {"lstm-recipes --help", "lstm-recipes list"}
    assert re.search(r"goal < 0.5 s: (met|missed by .+)", out)


def test_imdb_throughput_quick_compares_recipe_and_reference(tmp_path):
    out = bench("imdb_throughput.py", "--quick", "--keras-loop", tmp_path=tmp_path)
    assert "generated data" in out
    rows = [row.split("|") for row in out.splitlines() if row.startswith("| ")]
    labels = ("keras-io reference", "recipe (", "recipe on Keras's CPU loop")
    for label in labels:
        found = [row for row in rows if row[1].strip().startswith(label)]
        assert len(found) == 1, (label, out)
        tokens_per_second = float(found[0][2].replace(",", ""))
        accuracy = float(found[0][3])
        assert tokens_per_second > 0 and 0 <= accuracy <= 1
    assert re.search(r"fused loop / Keras's loop: \d+\.\d\dx", out)


def test_fused_lstm_quick_times_every_shape_on_both_loops(tmp_path):
    out = bench("fused_lstm.py", "--quick", tmp_path=tmp_path)
    assert "fused loop in use: True" in out
    rows = [row.split("|") for row in out.splitlines() if re.match(r"\| [a-z]", row)]
    assert [row[1].strip() for row in rows[1:]] == [
        "sentiment", "char_lm", "translation encoder", "translation decoder", "frames"
    ]  # fmt: skip
    for row in rows[1:]:
        assert float(row[3].split()[0]) > 0 and float(row[4].split()[0]) > 0
        assert re.fullmatch(r"\d+\.\d\dx", row[5].strip())


@pytest.mark.slow
def test_serving_quick(tmp_path):
    out = bench("serving.py", "--quick", tmp_path=tmp_path)
    assert re.search(r"served p50 / predict p50 = [\d.]+", out)
    assert re.search(r"batch-256 throughput: SavedModel [\d,]+ reviews/s", out)


@pytest.mark.slow
def test_peak_memory_quick(tmp_path):
    out = bench("peak_memory.py", "--quick", "sentiment", tmp_path=tmp_path)
    assert re.search(r"\| sentiment \| .* \| [\d,]+ MiB \| \d+ s \| 0 \|", out)


@pytest.mark.slow
def test_profile_training_quick(tmp_path):
    out = bench("profile_training.py", "--quick", tmp_path=tmp_path)
    shares = [float(m) for m in re.findall(r"^\| [^|]+ \| ([\d.]+)% \|$", out, re.M)]
    assert shares and abs(sum(shares) - 100) < 0.5
