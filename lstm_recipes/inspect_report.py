"""``lstm-recipes inspect`` on a run directory, and the files it writes: a self-contained HTML page (no network), one PNG per
drawn unit with the input coloured by its activation, the gate-saturation scatter, and the
probe table as CSV and JSON.

Colours follow Karpathy, Johnson & Fei-Fei 2015's figures: an activation of -1 is blue, 0 white,
+1 red.
"""

from __future__ import annotations

import base64
import csv
import html
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from lstm_recipes import inspection, probes, rundir
from lstm_recipes.errors import UserError
from lstm_recipes.inspection import Inspection, Unit

COLUMNS = 100  # characters per line in the PNGs
ROWS = 24  # lines per PNG
HTML_STEPS = 2000  # steps drawn per unit in the page
GATE_COLOURS = {
    "input_gate": "tab:green",
    "forget_gate": "tab:red",
    "output_gate": "tab:blue",
    "update_gate": "tab:purple",
    "reset_gate": "tab:orange",
}


def unit_name(unit: Unit) -> str:
    """``layer 2 forward, unit 37``."""
    layer, direction, index = unit
    return f"layer {layer} {direction}, unit {index}"


def _file_name(unit: Unit) -> str:
    layer, direction, index = unit
    return f"unit-L{layer}{direction[0]}-{index}.png"


def _shown(step: str, kind: str) -> str:
    if kind == "tokens":
        return step + " "
    if kind == "frames":
        return (step or "-")[:1]
    return step


def write(folder: Path, result: Inspection, title: str) -> None:
    """Write every output file of one inspection into ``folder``.

    Args:
        folder: an existing folder.
        result: ``inspection.inspect_model``'s result.
        title: the page's title (the run's name).
    """
    _write_tables(folder, result)
    saturation_png = folder / "gate_saturation.png"
    has_gates = any(result.saturation.values())
    if has_gates:
        saturation_plot(saturation_png, result)
    for unit in result.units:
        unit_plot(folder / _file_name(unit), result, unit)
    (folder / "inspect.html").write_text(
        _page(result, title, saturation_png if has_gates else None), encoding="utf-8"
    )


def _write_tables(folder: Path, result: Inspection) -> None:
    with open(folder / "probes.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["probe", "layer", "direction", "unit", "r", "active_steps", "steps"])
        for b in result.best:
            writer.writerow([b.probe, *b.unit, f"{b.r:.4f}", b.active, b.steps])
    summary = {
        "steps": sum(len(s.steps) for s in result.sequences),
        "sequences": len(result.sequences),
        "best_unit_per_probe": [
            {"probe": b.probe, "unit": unit_name(b.unit), "r": round(b.r, 4)} for b in result.best
        ],
        "constant_probes": result.constant,
        "drawn_units": [unit_name(u) for u in result.units],
        "gate_saturation": {
            f"layer {layer} {direction}": {
                gate: {
                    "left_saturated": round(float(left.mean()), 4),
                    "right_saturated": round(float(right.mean()), 4),
                }
                for gate, (left, right) in gates.items()
            }
            for (layer, direction), gates in result.saturation.items()
        },
    }
    rundir.write_json(folder / "inspect.json", summary)


def _cells(result: Inspection, unit: Unit, limit: int):
    """(shown text, activation) per step, None between sequences, up to ``limit`` steps."""
    count = 0
    for n, seq in enumerate(result.sequences):
        if n:
            yield None
        values = result.activation(unit, n)
        for step, value in zip(seq.steps, values):
            if count >= limit:
                return
            count += 1
            yield _shown(step, seq.kind), float(value)


def unit_plot(path: Path, result: Inspection, unit: Unit) -> None:
    """The start of the input drawn as text on a grid, each character coloured by ``unit``.

    Args:
        path: the PNG.
        result: the inspection.
        unit: ``(layer, direction, index)``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.full((ROWS, COLUMNS), np.nan)
    letters = []
    row = col = 0
    for cell in _cells(result, unit, ROWS * COLUMNS):
        text, value = ("\n", np.nan) if cell is None else cell
        for ch in text:
            if ch == "\n" or col >= COLUMNS:
                row, col = row + 1, 0
            if row >= ROWS or ch == "\n":
                continue
            grid[row, col] = value
            letters.append((row, col, ch))
            col += 1
        if row >= ROWS:
            break
    used = min(ROWS, row + 1)
    fig, ax = plt.subplots(figsize=(COLUMNS * 0.11, used * 0.22 + 0.5))
    ax.imshow(grid[:used], cmap="bwr", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    for r, c, ch in letters:
        if r < used and not ch.isspace():
            ax.text(c, r, ch, ha="center", va="center", fontsize=7, family="monospace")
    ax.set_axis_off()
    ax.set_title(unit_name(unit), fontsize=9, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def saturation_plot(path: Path, result: Inspection) -> None:
    """Per layer and direction: each gate unit's fraction of steps left-saturated (below 0.1)
    against right-saturated (above 0.9), the paper's Figure 3.

    Args:
        path: the PNG.
        result: the inspection.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(key, gates) for key, gates in result.saturation.items() if gates]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6), squeeze=False)
    for ax, ((layer, direction), gates) in zip(axes[0], panels):
        for gate, (left, right) in gates.items():
            ax.scatter(left, right, s=8, alpha=0.6, color=GATE_COLOURS[gate], label=gate)
        ax.plot([0, 1], [1, 0], color="0.7", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="fraction left-saturated (< 0.1)")
        ax.set_title(f"layer {layer} {direction}", fontsize=9)
    axes[0][0].set_ylabel("fraction right-saturated (> 0.9)")
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _colour(value: float) -> str:
    if not np.isfinite(value):
        return "transparent"
    v = float(np.clip(value, -1, 1))
    return f"rgba(214,39,40,{v:.2f})" if v >= 0 else f"rgba(31,90,200,{-v:.2f})"


def _page(result: Inspection, title: str, saturation_png: Path | None) -> str:
    why = {}
    for b in result.best:
        why.setdefault(b.unit, []).append(f"{b.probe} (r = {b.r:+.2f})")
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>inspect: {html.escape(title)}</title>",
        "<style>body{font:14px sans-serif;max-width:70em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
        ".text{font:13px monospace;white-space:pre-wrap;line-height:1.5;border:1px solid #ddd;"
        "padding:6px}</style>",
        f"<h1>Cells of {html.escape(title)}</h1>",
        f"<p>{sum(len(s.steps) for s in result.sequences)} steps in "
        f"{len(result.sequences)} sequence(s). Each step is coloured by the unit's activation "
        "(tanh of its cell state; the output for a GRU or simple RNN): blue -1, white 0, "
        "red +1.</p>",
        "<h2>Best unit per probe</h2><table><tr><th>probe</th><th>unit</th><th>r</th>"
        "<th>steps where the probe is on</th></tr>",
    ]
    for b in result.best:
        parts.append(
            f"<tr><td>{html.escape(b.probe)}</td><td>{unit_name(b.unit)}</td>"
            f"<td>{b.r:+.3f}</td><td>{b.active} of {b.steps}</td></tr>"
        )
    parts.append("</table>")
    if result.constant:
        names = ", ".join(html.escape(n) for n in result.constant)
        parts.append(f"<p>Not ranked (never changes in this input): {names}.</p>")
    if saturation_png is not None:
        data = base64.b64encode(saturation_png.read_bytes()).decode()
        parts.append("<h2>Gate saturation</h2>")
        parts.append(f"<img alt='gate saturation' src='data:image/png;base64,{data}'>")
    for unit in result.units:
        reason = "; ".join(why.get(unit, [])) or "strongly correlated with a probe"
        parts.append(f"<h3>{unit_name(unit)}: {html.escape(reason)}</h3><div class='text'>")
        for cell in _cells(result, unit, HTML_STEPS):
            if cell is None:
                parts.append("\n\n")
                continue
            text, value = cell
            parts.append(
                f"<span style='background:{_colour(value)}' title='{value:+.3f}'>"
                f"{html.escape(text)}</span>"
            )
        parts.append("</div>")
    return "".join(parts)


def run_inspection(
    run_dir: Path,
    texts: list[str] | None,
    layer: int | None = None,
    cells: int = 8,
    probe_specs: tuple[str, ...] = (),
    steps: int = 3000,
    out: Path | None = None,
) -> tuple[Path, Inspection]:
    """Inspect a trained run's cells and write the HTML page, PNGs, CSV and JSON.

    Args:
        run_dir: a trained run directory.
        texts: inputs to inspect (None: the start of the run's test split).
        layer: draw and rank units of this layer only (from 1); None: every layer.
        cells: how many units to draw.
        probe_specs: user probes, ``NAME=REGEX``.
        steps: at most this many steps per input (and in all, from the test split).
        out: the output folder (default ``RUN_DIR/inspect``); files in it are replaced only
            once everything was computed.

    Returns:
        (the HTML page's path, the inspection).
    """
    from lstm_recipes import training
    from lstm_recipes.run import Run

    regexes = dict(probes.parse_regex(spec) for spec in probe_specs)
    if texts is not None:
        inspection.check_texts(texts)
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists():
        raise UserError(f"expected a run directory with run.json, found none in {run_dir}")
    module, config, _ = rundir.load_run(run_dir)
    if not hasattr(module, "inspect_sequences"):
        raise UserError(
            f"expected a recipe with inspect_sequences (char_lm, sentiment, tagging, "
            f"frame_labeling); run {run_dir} is a {module.__name__.rsplit('.', 1)[-1]} run"
        )
    if texts is None:
        run = Run.reopen(run_dir)
        prep, model, split = run.prep, run.model, run.splits.test or run.splits.validation
    else:
        prep = rundir.read_json(run_dir / "preprocessing.json")
        model, split = training.load_model(module, config, prep, run_dir), None
    sequences = module.inspect_sequences(config, prep, texts, split, steps)
    result = inspection.inspect_model(model, sequences, regexes, layer, cells)
    out = Path(out or run_dir / "inspect")
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".inspect-", dir=out))
    try:
        write(staging, result, title=f"{run_dir.name} ({module.__name__})")
        for path in staging.iterdir():
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "inspect.html", result
