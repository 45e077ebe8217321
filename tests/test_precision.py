"""--set precision: the CPU check and its one-line refusal, the mixed policy's layers, and a
mixed_bfloat16 run end to end (emulated where the CPU has no bfloat16 instructions)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import cli_ok

from lstm_recipes import precision
from lstm_recipes import recipe as recipe_lib
from lstm_recipes.cli import main
from lstm_recipes.errors import UserError

FLAGS = "flags\t\t: fpu vme sse sse2 avx avx2 fma{}\n"
HAS_BF16 = bool(precision.cpu_bf16_flags())


def cpuinfo(tmp_path, extra: str = ""):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\n" + FLAGS.format(extra) + "processor\t: 1\n")
    return path


def test_bf16_flags_are_read_from_cpuinfo(tmp_path):
    assert precision.cpu_bf16_flags(cpuinfo(tmp_path)) == []
    assert precision.cpu_bf16_flags(cpuinfo(tmp_path, " avx512_bf16 amx_bf16")) == [
        "avx512_bf16",
        "amx_bf16",
    ]
    assert precision.cpu_bf16_flags(tmp_path / "missing") == []


def test_mixed_bfloat16_is_refused_in_one_line_without_bf16(tmp_path, monkeypatch):
    monkeypatch.delenv("LSTM_RECIPES_EMULATED_BF16", raising=False)
    plain = cpuinfo(tmp_path)
    with pytest.raises(UserError) as refused:
        precision.check("mixed_bfloat16", plain)
    message = str(refused.value)
    assert "\n" not in message and "avx512_bf16" in message and "precision=float32" in message
    precision.check("float32", plain)  # float32 is never refused
    precision.check("mixed_bfloat16", cpuinfo(tmp_path, " avx512_bf16"))
    monkeypatch.setenv("LSTM_RECIPES_EMULATED_BF16", "1")
    precision.check("mixed_bfloat16", plain)


@pytest.mark.skipif(HAS_BF16, reason="this CPU has bfloat16 instructions: nothing is refused")
def test_cli_refuses_mixed_bfloat16_here_before_writing_anything(tmp_path, monkeypatch):
    monkeypatch.delenv("LSTM_RECIPES_EMULATED_BF16", raising=False)
    run_dir = tmp_path / "run"
    args = ["train", "sentiment", "--preset", "tiny", "--run-dir", str(run_dir)]
    result = CliRunner().invoke(main, [*args, "--set", "precision=mixed_bfloat16"])
    assert result.exit_code == 2, result.output
    assert "avx512_bf16" in result.output and "Traceback" not in result.output
    assert result.output.count("\n") == 1 and not run_dir.exists()


def test_an_unknown_precision_names_the_choices(tmp_path):
    result = CliRunner().invoke(
        main, ["train", "sentiment", "--preset", "tiny", "--set", "precision=float16"]
    )
    assert result.exit_code == 2
    assert "expected one of float32, mixed_bfloat16, auto, got 'float16'" in result.output


def test_the_mixed_policy_keeps_lstms_float32_and_is_reset_after_building():
    module = recipe_lib.load_recipe("translation")
    config = recipe_lib.resolve_config(module, "tiny", [])
    prep = {"source_vocabulary": ["a", "b"], "target_vocabulary": ["x", "y"]}
    with precision.training_policy("mixed_bfloat16"):
        model = module.build_model(config, prep)
    assert keras.mixed_precision.dtype_policy().name == "float32"
    # The encoder's two directions and the decoder: float32 cells; the rest bfloat16.
    assert precision.describe(model) == "7 in bfloat16, 3 in float32"
    assert all(w.dtype == "float32" for w in model.weights)
    assert precision.describe(module.build_model(config, prep)) == "10 in float32"


def test_a_mixed_bfloat16_translation_run_trains_evaluates_and_exports(tmp_path, monkeypatch):
    if not HAS_BF16:
        monkeypatch.setenv("LSTM_RECIPES_EMULATED_BF16", "1")
    run_dir = tmp_path / "run"
    result = cli_ok(
        "run", "translation", "--preset", "tiny", "--run-dir", str(run_dir),
        "--set", "precision=mixed_bfloat16",
    )  # fmt: skip
    assert "precision mixed_bfloat16: layers compute 7 in bfloat16, 3 in float32" in result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert np.isfinite(metrics["loss"]) and 0 <= metrics["bleu_beam"] <= 100
    config = json.loads((run_dir / "config.json").read_text())
    assert config["precision"] == "mixed_bfloat16"
    # The export serves float32 from the float32 weights (verified in a fresh process on export).
    assert (run_dir / "export" / "1" / "saved_model.pb").exists()


def test_auto_is_mixed_bfloat16_only_where_the_cpu_has_bfloat16(tmp_path, monkeypatch):
    monkeypatch.delenv("LSTM_RECIPES_EMULATED_BF16", raising=False)
    plain, bf16 = cpuinfo(tmp_path), tmp_path / "bf16"
    bf16.write_text(FLAGS.format(" avx512_bf16"))
    assert precision.resolve("auto", plain) == "float32"
    assert precision.resolve("auto", bf16) == "mixed_bfloat16"
    assert precision.resolve("float32", bf16) == "float32"
    precision.check("auto", plain)  # never refused: it falls back to float32


def test_a_run_with_precision_auto_says_and_records_what_it_chose(tmp_path):
    run_dir = tmp_path / "run"
    result = cli_ok(
        "train", "sentiment", "--preset", "tiny", "--run-dir", str(run_dir),
        "--set", "precision=auto", "--set", "epochs=1",
    )  # fmt: skip
    chosen = "precision auto (mixed_bfloat16 on this CPU): layers compute"
    assert (chosen in result.output) == HAS_BF16, result.output
    assert json.loads((run_dir / "config.json").read_text())["precision"] == "auto"
    used = "mixed_bfloat16" if HAS_BF16 else "float32"
    assert json.loads((run_dir / "run.json").read_text())["precision"] == used
