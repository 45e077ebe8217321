"""The model card of a run: data, config, test metrics and export signatures, in Markdown."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lstm_recipes import recipe as recipe_lib


def write(
    module, config, run_dir: Path, info: dict, sizes: dict, metrics: dict, signatures: dict
) -> Path:
    """Write ``run_dir/model_card.md`` and return its path.

    Args:
        module: the recipe module.
        config: the run's config.
        run_dir: the run directory.
        info: the run's ``run.json`` content (data specs, preset, overrides).
        sizes: examples per split.
        metrics: the test metrics.
        signatures: the export's signatures (``export.signature_summary``).
    """
    headline = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    lines = [
        f"# Model card: {recipe_lib.recipe_name(module)} ({module.TOPOLOGY})",
        "",
        f"Run directory `{run_dir}`, created {info.get('created')}.",
        "",
        "## Data",
        f"- training data: `{info.get('data')}`; test data: `{info.get('test_data') or 'carved from the training data'}`",
        "- examples: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()),
        "",
        "## Config",
        f"Preset `{info.get('preset')}` with overrides {info.get('overrides') or 'none'}:",
        "",
        "| field | value |",
        "|---|---|",
        *[f"| {k} | `{v}` |" for k, v in dataclasses.asdict(config).items()],
        "",
        "## Test metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *[
            f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
            for k, v in headline.items()
        ],
        "",
        "## Export signatures",
        "",
    ]
    for name, sig in signatures.items():
        ins = ", ".join(f"{k}: {v}" for k, v in sig["inputs"].items())
        outs = ", ".join(f"{k}: {v}" for k, v in sig["outputs"].items())
        lines.append(f"- `{name}({ins}) -> {{{outs}}}`")
    if isinstance(metrics.get("sample"), str):
        lines += ["", "## Sample", "", "```", metrics["sample"], "```"]
    lines += ["", "Plots: `plots/`. Training history: `history.csv`. TensorBoard: `logs/`.", ""]
    path = run_dir / "model_card.md"
    path.write_text("\n".join(lines))
    return path
