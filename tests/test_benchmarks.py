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


def test_cli_startup_quick_judges_the_goal_by_its_own_medians(tmp_path):
    out = bench("cli_startup.py", "--quick", tmp_path=tmp_path)
    medians = dict(re.findall(r"^(lstm-recipes \S+)\s+median ([\d.]+) s", out, re.M))
    assert set(medians) == {"lstm-recipes --help", "lstm-recipes list"}
    verdict = re.search(r"goal < 0.5 s: (met|missed by .+)", out).group(1)
    slow = [name for name, median in medians.items() if float(median) >= 0.5]
    # The verdict follows from the printed medians (and names the commands that missed).
    assert (verdict == "met") == (not slow), out
    assert all(name in verdict for name in slow), out


@pytest.mark.slow  # a minute or more of CI for a smoke run of a benchmark
def test_imdb_throughput_quick_compares_recipe_and_reference(tmp_path):
    out = bench("imdb_throughput.py", "--quick", "--keras-loop", tmp_path=tmp_path)
    assert "generated data" in out
    rows = [row.split("|") for row in out.splitlines() if row.startswith("| ")]
    labels = ("keras-io reference", "recipe (", "recipe on Keras's CPU loop")
    for label in labels:
        found = [row for row in rows if row[1].strip().startswith(label)]
        assert len(found) == 1, (label, out)
        accuracy = float(found[0][3])
        assert 0 <= accuracy <= 1
    # Each contender's ratio is its tokens/s over the reference's, measured in this run.
    rates = {
        label: float(row[2].replace(",", ""))
        for row in rows
        for label in labels
        if row[1].strip().startswith(label)
    }
    reference = rates["keras-io reference"]
    for row in rows:
        label = next((x for x in labels if row[1].strip().startswith(x)), None)
        if label is not None:
            assert float(row[4]) == pytest.approx(rates[label] / reference, abs=0.006), row
    assert re.search(r"fused loop / Keras's loop: \d+\.\d\dx", out)


@pytest.mark.slow  # a minute or more of CI for a smoke run of a benchmark
def test_fused_lstm_quick_times_every_shape_on_both_loops(tmp_path):
    out = bench("fused_lstm.py", "--quick", tmp_path=tmp_path)
    assert "fused loop in use: True" in out
    rows = [row.split("|") for row in out.splitlines() if re.match(r"\| [a-z]", row)]
    assert [row[1].strip() for row in rows[1:]] == [
        "sentiment", "char_lm", "translation encoder", "translation decoder", "frames"
    ]  # fmt: skip
    for row in rows[1:]:
        keras_ms, fused_ms = (float(row[i].split()[0].replace(",", "")) for i in (3, 4))
        speedup = float(re.fullmatch(r"(\d+\.\d\d)x", row[5].strip()).group(1))
        # The speed-up column is Keras's step time over the fused loop's (ms rounded to 1).
        assert speedup == pytest.approx(
            keras_ms / fused_ms, rel=0.5 / min(keras_ms, fused_ms) + 0.006
        )


@pytest.mark.slow
def test_serving_quick(tmp_path):
    out = bench("serving.py", "--quick", tmp_path=tmp_path)
    assert re.search(r"served p50 / predict p50 = [\d.]+", out)
    assert re.search(r"batch-256 throughput: SavedModel [\d,]+ reviews/s", out)


@pytest.mark.slow
def test_decoding_quick_matches_the_previous_search_string_for_string(tmp_path):
    # The script exits 1 when a float32 string differs from the previous search's.
    out = bench("decoding.py", "--quick", "--decode-precision", "both", tmp_path=tmp_path)
    for name in ("greedy", "beam"):
        found = re.search(rf"{name} \(float32\): ([\d,]+) of ([\d,]+) strings equal", out)
        assert found and found.group(1) == found.group(2), out
        found = re.search(
            rf"{name}: bfloat16 product [\d.]+x float32's speed; ([\d,]+) of 200", out
        )
        assert found, out
    for precision in ("float32", "bfloat16"):
        assert re.search(rf"\| export \({precision}\), beam \| [\d.]+ \| [\d,]+ \|", out), out


@pytest.mark.slow
def test_peak_memory_quick(tmp_path):
    out = bench("peak_memory.py", "--quick", "sentiment", tmp_path=tmp_path)
    assert re.search(r"\| sentiment \| .* \| [\d,]+ MiB \| \d+ s \| 0 \|", out)


@pytest.mark.slow
def test_profile_training_quick(tmp_path):
    out = bench("profile_training.py", "--quick", tmp_path=tmp_path)
    shares = [float(m) for m in re.findall(r"^\| [^|]+ \| ([\d.]+)% \|$", out, re.M)]
    assert shares and abs(sum(shares) - 100) < 0.5


@pytest.mark.slow  # trains a tiny run and converts it three times
def test_on_device_quick_prints_each_quantization_and_full_float_agreement(tmp_path):
    out = bench("on_device.py", "--quick", tmp_path=tmp_path)
    found = dict(re.findall(r"^LiteRT (\w+): .* agreement ([\d.]+)%", out, re.M))
    assert set(found) == {"none", "dynamic", "float16"}, out
    # The float model is the SavedModel's graph: its windowed labels must all agree.
    assert float(found["none"]) == 100.0, out


def test_vectors_load_finds_the_half_of_the_vocabulary_the_file_holds(tmp_path):
    out = bench("vectors_load.py", "--words", "3000", "--dim", "8", "--vocabulary", "200",
                tmp_path=tmp_path)  # fmt: skip
    loaded = re.search(r"loaded ([\d,]+) of ([\d,]+) vocabulary words \(dimension (\d+)\)", out)
    assert loaded and loaded.groups() == ("100", "200", "8"), out


@pytest.mark.slow
def test_charrnn_race_quick_reports_every_contender_and_their_ratios(tmp_path):
    pytest.importorskip("torch")
    out = bench("charrnn_race.py", "--quick", "--onednn-off", tmp_path=tmp_path)
    rows = [row.split("|") for row in out.splitlines() if re.match(r"\| (PyTorch|recipe)", row)]
    rates = {row[1].split("(")[0].strip(): float(row[2].replace(",", "")) for row in rows}
    assert len(rates) == 3 and {"recipe", "PyTorch, oneDNN off"} <= set(rates), out
    torch_rate = next(v for k, v in rates.items() if k not in ("recipe", "PyTorch, oneDNN off"))
    # Each ratio is the contender's rate over oneDNN-on PyTorch's, measured in this run.
    for row in rows:
        name = row[1].split("(")[0].strip()
        assert float(row[3]) == pytest.approx(rates[name] / torch_rate, abs=0.006), row
    ratio = float(re.search(r"recipe / PyTorch: ([\d.]+)x", out).group(1))
    assert ratio == pytest.approx(rates["recipe"] / torch_rate, abs=0.006), out


@pytest.mark.slow  # a minute of CI for a smoke run of a benchmark
def test_imdb_ceiling_quick_rates_the_stack_and_recipe_against_the_reference(tmp_path):
    out = bench("imdb_ceiling.py", "--quick", tmp_path=tmp_path)
    rows = [row.split("|") for row in out.splitlines() if re.match(r"\| [kLr]", row)]
    names = [row[1].split("(")[0].strip() for row in rows]
    assert names == ["keras-io reference", "LSTM stack alone", "recipe"], out
    rates = [float(row[2].replace(",", "")) for row in rows]
    for row, rate in zip(rows, rates):
        slowest, fastest = (float(v.replace(",", "")) for v in row[3].split("/"))
        assert slowest <= rate <= fastest, row  # the median lies between the extremes
        assert float(row[4]) == pytest.approx(rate / rates[0], abs=0.006), row


@pytest.mark.slow  # two tiny trainings; emulated bfloat16 where the CPU lacks it
def test_bfloat16_quick_trains_both_precisions_and_rates_one_against_the_other(tmp_path):
    out = bench("bfloat16.py", "--quick", "sentiment", tmp_path=tmp_path)
    assert "'layers': 'all float32'" in out.split("sentiment float32:")[1].split("\n")[0], out
    bf16_line = out.split("sentiment mixed_bfloat16:")[1].split("\n")[0]
    assert re.search(r"'layers': '\d+ in bfloat16, \d+ in float32'", bf16_line), out
    row = re.search(
        r"^\| sentiment \| .* \| accuracy \| ([\d,]+) ex/s, ([\d.]+) \| ([\d,]+) ex/s, ([\d.]+) "
        r"\| ([\d.]+)x \|$",
        out,
        re.M,
    )
    assert row, out
    f32, f32_metric, bf16, bf16_metric, ratio = (float(v.replace(",", "")) for v in row.groups())
    assert 0 <= f32_metric <= 1 and 0 <= bf16_metric <= 1
    assert ratio == pytest.approx(bf16 / f32, abs=0.006), row.group(0)
