"""Cell ablations (``lstm-recipes ablate``): the resumable loop, the statistics, table and plot.

``ablate`` trains a recipe once per cell and seed (each a ``run.Run`` in its own directory),
then reports what Greff et al. 2015 report: per cell the mean and standard deviation of the
main metric, the difference to the vanilla LSTM, and Welch's t-test p-value.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

from lstm_recipes.errors import UserError

# Metrics where smaller is better; every other metric is taken as larger-is-better.
_LOWER_IS_BETTER = ("loss", "bits", "nats", "perplexity", "error")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better (losses, bits per char, perplexity).

    Args:
        metric: a key of a run's metrics.json.
    """
    return any(word in metric for word in _LOWER_IS_BETTER)


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Welch's unequal-variance t-test of two samples: (t, degrees of freedom, two-sided p).

    ``scipy.stats.ttest_ind(a, b, equal_var=False)``, with the cases it leaves undefined made
    explicit: NaN when a sample has fewer than 2 values; p = 1 when both have no spread and
    equal means, 0 when they have no spread and differ.

    Args:
        a, b: the two samples.
    """
    from scipy import stats

    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return math.nan, math.nan, math.nan
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    if va == 0 and vb == 0:
        return (0.0, math.inf, 1.0) if ma == mb else (math.copysign(math.inf, ma - mb), 0.0, 0.0)
    result = stats.ttest_ind(a, b, equal_var=False)
    return float(result.statistic), float(result.df), float(result.pvalue)


def _mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def summarize(records: list[dict], metric: str, baseline: str = "vanilla") -> list[dict]:
    """One row per cell, in first-seen order: runs, mean, std, difference to ``baseline``
    and Welch's p-value against it.

    Args:
        records: per-run dicts with ``cell`` and ``metric`` (the main metric's value).
        metric: the metric's name (for the direction of "better").
        baseline: the cell the others are compared with.
    """
    by_cell: dict[str, list[float]] = {}
    for r in records:
        by_cell.setdefault(r["cell"], []).append(float(r["metric"]))
    base = by_cell.get(baseline)
    rows = []
    for cell, values in by_cell.items():
        mean, std = _mean_std(values)
        row = {"cell": cell, "runs": len(values), "mean": mean, "std": std}
        if base is not None:
            row["diff"] = mean - _mean_std(base)[0]
            row["p_value"] = welch(values, base)[2] if cell != baseline else math.nan
        rows.append(row)
    return rows


def write_report(out_dir: Path, rows: list[dict], metric: str, header: str) -> dict:
    """Write ``results.md``, ``results.csv`` and ``cells.png``; return their paths.

    Args:
        out_dir: the ablation directory.
        rows: ``summarize``'s rows.
        metric: the main metric's name.
        header: a line describing the ablation (recipe, data, preset, seeds).
    """
    better = "lower" if lower_is_better(metric) else "higher"
    fields = ["cell", "runs", "mean", "std", "diff", "p_value"]
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    def num(v, fmt):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    lines = [
        f"{header}",
        "",
        f"Main metric: `{metric}` ({better} is better); diff and Welch's p against `vanilla`.",
        "",
        f"| cell | runs | {metric} mean ± std | diff | p |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['runs']} | {r['mean']:.4f} ± {r['std']:.4f} | "
            f"{num(r.get('diff'), '+.4f')} | {num(r.get('p_value'), '.3g')} |"
        )
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    box_plot(out_dir / "cells.png", out_dir / "records.jsonl", metric)
    return {"markdown": out_dir / "results.md", "csv": out_dir / "results.csv"}


def read_records(path: Path) -> list[dict]:
    """The per-run records of ``records.jsonl`` (missing file: none).

    Args:
        path: the records file.
    """
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def box_plot(path: Path, records_path: Path, metric: str) -> None:
    """A box plot of the metric per cell, every run drawn as a dot.

    Args:
        path: the PNG to write.
        records_path: ``records.jsonl``.
        metric: the main metric's name (axis label).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_cell: dict[str, list[float]] = {}
    for r in read_records(records_path):
        by_cell.setdefault(r["cell"], []).append(float(r["metric"]))
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(by_cell), 3.6))
    names = list(by_cell)
    ax.boxplot([by_cell[n] for n in names])
    for i, n in enumerate(names, start=1):
        ax.scatter([i] * len(by_cell[n]), by_cell[n], s=12, color="tab:blue", zorder=3)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30)
    ax.set_ylabel(metric)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


DEFAULT_CELLS = ("vanilla", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr")


def run_ablation(
    recipe: str,
    data: str,
    test_data: str | None,
    preset: str,
    overrides: tuple[str, ...],
    out_dir: Path | None,
    cells: list[str],
    seeds: int,
    metric: str | None = None,
    validation_data: str | None = None,
) -> Path:
    """Train ``recipe`` once per cell and seed, resumably, and write the report.

    Args:
        recipe: a recipe name or path.
        data: the ``--data`` spec.
        test_data: a separate test spec, or None.
        preset: the preset every run starts from.
        overrides: ``KEY=VALUE`` changes every run shares (not ``cell`` or ``seed``).
        out_dir: the ablation directory (None: ``runs/ablate/<recipe>-<preset>``).
        cells: the cells to compare.
        seeds: seeds per cell, counted from the config's ``seed``.
        metric: the test metric to compare (None: the recipe's ``MAIN_METRIC``).
        validation_data: a separate validation spec, or None.

    Returns:
        The ablation directory (``results.md``, ``results.csv``, ``cells.png``, records and one
        run directory per cell and seed).
    """
    from lstm_recipes import cells as cells_lib
    from lstm_recipes import recipe as recipe_lib
    from lstm_recipes.run import Run

    module = recipe_lib.load_recipe(recipe)
    base = recipe_lib.resolve_config(module, preset, overrides)
    if not hasattr(base, "cell"):
        raise UserError(f"recipe {recipe} has no `cell` config field to ablate")
    for item in overrides:
        if item.split("=", 1)[0].strip() in ("cell", "seed"):
            raise UserError(f"ablate sets cell and seed itself; remove --set {item}")
    for name in cells:
        if name not in cells_lib.CELLS:
            raise UserError(f"unknown cell {name!r}; expected some of {', '.join(cells_lib.CELLS)}")
    metric = metric or getattr(module, "MAIN_METRIC", "accuracy")
    out_dir = Path(
        out_dir or Path("runs") / "ablate" / f"{recipe_lib.recipe_name(module)}-{preset}"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "recipe": recipe,
        "data": data,
        "test_data": test_data,
        "preset": preset,
        "overrides": list(overrides),
        "metric": metric,
    }
    if validation_data:  # only when given: earlier ablations' settings stay equal
        settings["validation_data"] = validation_data
    settings_path = out_dir / "ablation.json"
    if settings_path.exists():
        before = json.loads(settings_path.read_text())
        if before != settings:
            raise UserError(
                f"{out_dir} holds an ablation with other settings ({before}); expected {settings}."
                " Use another --run-dir"
            )
    else:
        settings_path.write_text(json.dumps(settings, indent=2) + "\n")
    records_path = out_dir / "records.jsonl"
    done = {(r["cell"], r["seed"]) for r in read_records(records_path)}
    jobs = [(c, base.seed + k) for c in cells for k in range(seeds)]
    for n, (cell, seed) in enumerate(jobs, start=1):
        if (cell, seed) in done:
            continue
        print(f"[{n}/{len(jobs)}] cell={cell} seed={seed}", flush=True)
        t0 = time.time()
        run = Run.train(
            recipe,
            data,
            test_data,
            preset,
            (*overrides, f"cell={cell}", f"seed={seed}"),
            out_dir / "runs" / f"{cell}-seed{seed}",
            validation_data=validation_data,
        )
        metrics = run.evaluate()
        if metric not in metrics:
            numeric = [k for k, v in metrics.items() if isinstance(v, (int, float))]
            raise UserError(f"expected test metric {metric!r}; this recipe reports {numeric}")
        record = {
            "cell": cell,
            "seed": seed,
            "metric": float(metrics[metric]),
            "seconds": round(time.time() - t0, 1),
            "params": int(run.model.count_params()),
            "run_dir": str(run.run_dir),
        }
        with open(records_path, "a") as f:
            f.write(json.dumps(record) + "\n")
    records = [r for r in read_records(records_path) if r["cell"] in cells]
    header = (
        f"Ablation of `{recipe}` (preset {preset}, data {data}, {seeds} seeds from {base.seed}"
        + (f", --set {' '.join(overrides)}" if overrides else "")
        + ")"
    )
    write_report(out_dir, summarize(records, metric), metric, header)
    return out_dir
