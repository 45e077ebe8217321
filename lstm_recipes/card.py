"""The model card of a run: data, config, test metrics and export signatures, in Markdown."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lstm_recipes import recipe as recipe_lib


def write(
    module,
    config,
    run_dir: Path,
    info: dict,
    sizes: dict,
    metrics: dict,
    signatures: dict,
    quality: dict | None = None,
    vectors: dict | None = None,
    requires: tuple[str, ...] = (),
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
        quality: what reading the data replaced or skipped (``data_report.json``), or None
            for a run made before data reports.
        vectors: the pretrained word vectors' coverage report (``vectors.keep``), or None.
        requires: modules a consumer imports before loading the export (``Serving.requires``).
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
        *_data_quality(config, quality),
        *_vectors(vectors),
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
    if requires:
        names = ", ".join(f"`{m}`" for m in requires)
        lines += [
            "",
            f"Loading it needs {names} imported before `tf.saved_model.load` (its ops are in "
            "the graph; `pip install` the package built for the loading TensorFlow's version).",
        ]
    if isinstance(metrics.get("sample"), str):
        lines += ["", "## Sample", "", "```", metrics["sample"], "```"]
    lines += ["", "Plots: `plots/`. Training history: `history.csv`. TensorBoard: `logs/`.", ""]
    path = run_dir / "model_card.md"
    path.write_text("\n".join(lines))
    return path


def _vectors(report: dict | None) -> list[str]:
    if not report:
        return []
    return [
        "## Word vectors",
        f"- `{report['file']}`, dimension {report['dim']}: {report['found']:,} of "
        f"{report['words']:,} training words found ({report['coverage']:.1%}); the others "
        "started random",
        "",
    ]


def _data_quality(config, quality: dict | None) -> list[str]:
    if quality is None:
        return []
    lines = [
        "## Data quality",
        f"- read with encoding `{getattr(config, 'encoding', 'utf-8')}`, decode_errors "
        f"`{getattr(config, 'decode_errors', 'strict')}`, skip_bad_rows "
        f"{getattr(config, 'skip_bad_rows', 0):,}",
    ]
    if not quality.get("replaced_bytes") and not quality.get("skipped_rows"):
        lines.append("- nothing was replaced or skipped")
    if quality.get("replaced_bytes"):
        lines.append(f"- undecodable bytes replaced by U+FFFD: {quality['replaced_bytes']:,}")
        lines += [f"  - `{f}`: {n:,}" for f, n in quality.get("replaced_in", {}).items()]
    if quality.get("skipped_rows"):
        listed = quality.get("skipped", [])
        more = quality["skipped_rows"] - len(listed)
        lines.append(f"- bad rows skipped: {quality['skipped_rows']:,}")
        lines += [f"  - `{row}`" for row in listed]
        lines += [f"  - ... and {more:,} more"] if more > 0 else []
    return [*lines, ""]
