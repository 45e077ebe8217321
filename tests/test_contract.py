"""One test every registered recipe passes: the contract, then a tiny run on its built-in data."""

import dataclasses
import json
import math

import pytest
from click.testing import CliRunner
from conftest import MIRRORED

from lstm_recipes import recipe as recipe_lib
from lstm_recipes.cli import main

RECIPES = recipe_lib.list_recipes()
# The built-in translation data has 20,000 pairs: 10% for validation and test would make this
# run mostly beam search over 2,000 sentences; tagging's 12,810 sentences would make it mostly
# evaluation of 3,843 (the tiny preset caps only the training split).
SMALLER = ["--set", "validation_size=200", "--set", "test_size=200"]
SMALLER_SPLITS = {"translation": SMALLER, "tagging": SMALLER}


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_meets_the_contract(name):
    module = recipe_lib.load_recipe(name)
    doc = module.__doc__ or ""
    assert f"lstm-recipes run {name}" in doc, "the docstring gives the exact command"
    assert "Expect" in doc, "the docstring gives the result to expect"
    assert dataclasses.fields(module.Config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        module.PRESETS["default"].seed = 1
    comments = recipe_lib.field_comments(module.Config)
    uncommented = [f.name for f in dataclasses.fields(module.Config) if not comments.get(f.name)]
    assert not uncommented, f"config fields without a comment: {uncommented}"
    for field in ("seed", "batch_size", "epochs", "learning_rate", "patience"):
        assert hasattr(module.PRESETS["default"], field), f"training reads config.{field}"
    assert "builtin" in module.DATA_FORMS and "serving_default" in module.SIGNATURES


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_runs_tiny_end_to_end(name, tmp_path, monkeypatch):
    # A relative --run-dir, as users type it (the export check runs in another folder).
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    # Mirrored over 2 logical CPU devices: every recipe trains under tf.distribute too. One
    # epoch: tracing the replicated steps makes a mirrored epoch dearer (CI time); the other
    # tests of each recipe train with the default strategy.
    args = ["run", name, "--preset", "tiny", "--run-dir", "run", *MIRRORED, "--set", "epochs=1"]
    args += SMALLER_SPLITS.get(name, [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "strategy: mirrored, 2 replica(s) in sync" in result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    module = recipe_lib.load_recipe(name)
    main_metric = getattr(module, "MAIN_METRIC", "accuracy")
    assert isinstance(metrics.get(main_metric), float), f"no test {main_metric} in {metrics}"
    assert math.isfinite(metrics[main_metric])
    meta = json.loads((run_dir / "export/1/assets.extra/lstm_recipes.json").read_text())
    # A recipe with several input kinds exports the signatures of the kind it was trained on.
    assert "serving_default" in meta["signatures"]
    assert set(meta["signatures"]) <= set(module.SIGNATURES)
    assert (
        f"| {main_metric} | {metrics[main_metric]:.4f} |" in (run_dir / "model_card.md").read_text()
    )
    # `inspect` on the same run (no training of its own: CI time)
    _inspect_writes_its_page_and_pictures(module, run_dir)


def _inspect_writes_its_page_and_pictures(module, run_dir):
    result = CliRunner().invoke(main, ["inspect", "run", "--steps", "300", "--cells", "2"])
    if not hasattr(module, "inspect_sequences"):
        assert result.exit_code == 2, result.output
        assert result.output.startswith("Error: expected a recipe with inspect_sequences")
        return
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = run_dir / "inspect"
    pictures = sorted(p.name for p in out.glob("unit-*.png"))
    assert len(pictures) == 2, pictures
    for name in [*pictures, "gate_saturation.png"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (out / "inspect.html").read_text()
    assert "data:image/png;base64," in page, "the saturation plot is inside the page"
    assert not any(tag in page for tag in ("src='http", "<link", "<script")), "no network"
    assert page.count("<span style='background:rgba(") >= 100, "the steps, coloured"
    summary = json.loads((out / "inspect.json").read_text())
    assert summary["steps"] <= 300 and summary["best_unit_per_probe"]
