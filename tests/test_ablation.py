"""`ablate`: Welch's t-test against closed forms, and a resumable end-to-end ablation."""

from __future__ import annotations

import csv
import json
import math

import pytest
from click.testing import CliRunner

from lstm_recipes import ablation
from lstm_recipes.cli import main


@pytest.mark.parametrize("gap", [0.05, 0.3, 2.0])
def test_welch_matches_the_closed_form_at_two_degrees_of_freedom(gap):
    # Two samples of two values with equal spread: df = 2, where Student's t has the closed
    # form P(|T| > t) = 1 - t / sqrt(2 + t^2).
    t, df, p = ablation.welch([0.0, 0.1], [gap, gap + 0.1])
    assert df == pytest.approx(2.0)
    assert t == pytest.approx(-gap / math.sqrt(0.005 / 2 * 2))
    assert p == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t), abs=1e-10)


def test_welch_known_example():
    # Worked by hand: means 20 and 22, variances 2.5 and 2.5, n = 5 each:
    # t = -2 / sqrt(1) = -2, df = 8, two-sided p = 0.0805.
    t, df, p = ablation.welch([18, 19, 20, 21, 22], [20, 21, 22, 23, 24])
    assert t == pytest.approx(-2.0)
    assert df == pytest.approx(8.0)
    assert p == pytest.approx(0.0805162, abs=1e-6)  # numerical integration of the t density
    assert math.isnan(ablation.welch([1.0], [1.0, 2.0])[2])
    assert ablation.welch([1.0, 1.0], [1.0, 1.0])[2] == 1.0


def test_summarize_rows():
    records = [
        {"cell": "vanilla", "metric": 0.8},
        {"cell": "vanilla", "metric": 0.9},
        {"cell": "nfg", "metric": 0.5},
        {"cell": "nfg", "metric": 0.6},
    ]
    rows = {r["cell"]: r for r in ablation.summarize(records, "accuracy")}
    assert rows["nfg"]["mean"] == pytest.approx(0.55)
    assert rows["nfg"]["diff"] == pytest.approx(-0.3)
    # t = -0.3 / sqrt(0.005 / 2 * 2) with df = 2: the closed form above.
    t = 0.3 / math.sqrt(0.005)
    assert rows["nfg"]["p_value"] == pytest.approx(1 - t / math.sqrt(2 + t * t))
    assert math.isnan(rows["vanilla"]["p_value"])
    assert ablation.lower_is_better("bits_per_char") and not ablation.lower_is_better("bleu_beam")


def test_ablate_end_to_end_and_resume(tmp_path):
    out = tmp_path / "abl"
    args = ["ablate", "sentiment", "--preset", "tiny", "--cells", "np,gru", "--seeds", "2"]
    args += ["--run-dir", str(out)]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output + repr(first.exception)
    assert "[4/4] cell=gru" in first.output
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert sorted((r["cell"], r["seed"]) for r in records) == [
        ("gru", 42),
        ("gru", 43),
        ("np", 42),
        ("np", 43),
    ]
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert [r["cell"] for r in rows] == ["np", "gru"]
    assert (out / "cells.png").stat().st_size > 1000
    # No vanilla among the cells: no baseline column values, but the table is written.
    assert "| np | 2 |" in (out / "results.md").read_text()

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "cell=" not in again.output.replace("| cell |", ""), "finished runs were retrained"
    assert len((out / "records.jsonl").read_text().splitlines()) == 4

    other = CliRunner().invoke(main, [*args, "--set", "units=4"])
    assert other.exit_code == 2 and "other settings" in other.output


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--cells", "vanilla,peephole"], "unknown cell 'peephole'"),
        (["--set", "cell=gru"], "ablate sets cell and seed itself"),
        (["--metric", "nonsense"], "expected test metric 'nonsense'"),
    ],
)
def test_ablate_errors(tmp_path, extra, message):
    args = ["ablate", "sentiment", "--preset", "tiny", "--seeds", "1", "--cells", "np"]
    result = CliRunner().invoke(main, [*args, "--run-dir", str(tmp_path / "a"), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
