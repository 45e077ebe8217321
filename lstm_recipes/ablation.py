"""Cell ablations (``lstm-recipes ablate``): the statistics, tables and box plot.

The training loop lives in the CLI (it reuses ``run``'s resumable steps); this module turns the
per-run records into what Greff et al. 2015 report: per cell the mean and standard deviation of
the main metric, the difference to the vanilla LSTM, and Welch's t-test p-value.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

# Metrics where smaller is better; every other metric is taken as larger-is-better.
_LOWER_IS_BETTER = ("loss", "bits", "nats", "perplexity", "error")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better (losses, bits per char, perplexity).

    Args:
        metric: a key of a run's metrics.json.
    """
    return any(word in metric for word in _LOWER_IS_BETTER)


def _betacf(a: float, b: float, x: float) -> float:
    # Continued fraction of the incomplete beta function (Numerical Recipes, 6.4), modified Lentz.
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b).

    Args:
        a, b: positive shape parameters.
        x: a value in [0, 1].
    """
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"expected 0 <= x <= 1, got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_sf2(t: float, df: float) -> float:
    """Two-sided tail probability P(|T| >= |t|) of Student's t with ``df`` degrees of freedom.

    Args:
        t: the statistic.
        df: degrees of freedom (> 0, need not be an integer).
    """
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Welch's unequal-variance t-test of two samples: (t, degrees of freedom, two-sided p).

    NaN p-value when a sample has fewer than 2 values; p = 1 when both have no spread and equal
    means, 0 when they have no spread and differ.

    Args:
        a, b: the two samples.
    """
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return math.nan, math.nan, math.nan
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    se2 = va / na + vb / nb
    if se2 == 0:
        return (0.0, math.inf, 1.0) if ma == mb else (math.copysign(math.inf, ma - mb), 0.0, 0.0)
    t = (ma - mb) / math.sqrt(se2)
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    return t, df, student_t_sf2(t, df)


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
