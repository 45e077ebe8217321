"""What ``lstm-recipes tune`` leaves beside its trials: the results table (markdown and CSV), the
objective plotted against trial and against the fields that mattered most, and
``best.preset.json``, which ``lstm-recipes run RECIPE --preset-file`` turns back into the best
trial's config."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from lstm_recipes import recipe as recipe_lib
from lstm_recipes import rundir


def read_history(path: Path) -> list[dict]:
    """The rows of a run's ``history.csv`` as floats (NaN where a cell is empty or not a number).

    Args:
        path: the CSV file; a missing one has no rows.
    """
    if not path.exists():
        return []
    rows = []
    for row in csv.DictReader(path.open()):
        parsed = {}
        for key, value in row.items():
            try:
                parsed[key] = float(value)
            except (TypeError, ValueError):
                parsed[key] = math.nan
        rows.append(parsed)
    return rows


def rows(trials: dict, baseline: str) -> list[dict]:
    """One row per trial, the baseline first, then in trial order.

    Args:
        trials: ``Search.trials``.
        baseline: the baseline's trial id.
    """
    # KerasTuner's ids are numbers without leading zeros for some oracles: "10" after "9".
    order = sorted(trials, key=lambda k: (k != baseline, len(k), k))
    return [
        {
            "trial": key,
            "values": trials[key].get("values", {}),
            "objective": trials[key].get("objective"),
            "epochs": trials[key].get("epochs", 0),
            "minutes": round(trials[key].get("seconds", 0) / 60, 2),
            "status": trials[key]["status"] + (" (budget cut)" if trials[key].get("cut") else ""),
        }
        for key in order
    ]


def importance(table: list[dict], fields: list[str]) -> dict[str, float]:
    """How strongly each field goes with the objective over the scored trials, 0 to 1: |Spearman
    rho| for numbers, the correlation ratio (eta) for choices and booleans.

    Args:
        table: ``rows(...)``.
        fields: the searched fields.
    """
    scored = [r for r in table if r["objective"] is not None and r["values"]]
    y = np.array([r["objective"] for r in scored], dtype=float)
    result = {}
    for field in fields:
        values = [r["values"].get(field) for r in scored]
        if len(scored) < 3 or len(set(map(str, values))) < 2:
            result[field] = 0.0
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            a = np.argsort(np.argsort(values)).astype(float)
            b = np.argsort(np.argsort(y)).astype(float)
            rho = np.corrcoef(a, b)[0, 1]
            result[field] = float(abs(rho)) if np.isfinite(rho) else 0.0
        else:
            total = float(((y - y.mean()) ** 2).sum())
            groups = {}
            for v, target in zip(map(str, values), y):
                groups.setdefault(v, []).append(target)
            between = sum(len(g) * (np.mean(g) - y.mean()) ** 2 for g in groups.values())
            result[field] = float(math.sqrt(between / total)) if total > 0 else 0.0
    return result


def _shown(value, exact: bool) -> str:
    if isinstance(value, float) and not exact:
        return f"{value:.4g}" if abs(value) < 0.01 else f"{value:.4f}"
    return recipe_lib.format_value(value)


def _table(
    table: list[dict], fields: list[str], objective_name: str, start: dict, exact: bool
) -> list[list[str]]:
    """Header and rows; ``exact`` keeps every digit of float settings (the CSV)."""
    header = ["trial", *fields, objective_name, "epochs", "minutes", "status"]
    lines = [header]
    for r in table:
        shown = [_shown(r["values"].get(f, start.get(f)), exact) for f in fields]
        value = "" if r["objective"] is None else _shown(r["objective"], exact)
        lines.append(
            [r["trial"], *shown, value, str(r["epochs"]), f"{r['minutes']:.2f}", r["status"]]
        )
    return lines


def write(search, table: list[dict], best: dict, objective, fields: list[str], start: dict) -> None:
    """results.md, results.csv, plots/ and best.preset.json in the search folder.

    Args:
        search: the ``tuning.Search``.
        table: ``rows(...)``.
        best: the best row.
        objective: the ``tuning.Objective``.
        fields: the searched fields.
        start: the starting config's values of the searched fields (the baseline's row).
    """
    out = search.out
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(
        _table(table, fields, objective.name, start, exact=True)
    )
    lines = _table(table, fields, objective.name, start, exact=False)
    (out / "results.csv").write_text(buffer.getvalue())
    weights = importance(table, fields)
    settings = search.settings
    md = [
        f"# Search: {settings['recipe']} from preset `{settings['preset']}`",
        "",
        f"Objective: `{objective.name}` ({objective.direction}) on the validation split; "
        f"{settings['algorithm']}; {search.seconds / 60:.1f} of {settings['max_minutes']:g} minutes "
        f"used; {len(table) - 1} trials besides the preset.",
        "",
        f"Best: trial `{best['trial']}`, {objective.name} {best['objective']:.4f}.",
        "",
        "| " + " | ".join(lines[0]) + " |",
        "|" + "---|" * len(lines[0]),
        *("| " + " | ".join(line) + " |" for line in lines[1:]),
        "",
        "How strongly each field went with the objective (|Spearman rho| or eta, 0 to 1): "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(weights.items(), key=lambda kv: -kv[1])),
        "",
    ]
    (out / "results.md").write_text("\n".join(md))
    _plots(out / "plots", table, objective, weights)
    preset = {
        "recipe": settings["recipe"],
        "preset": settings["preset"],
        "set": {
            **_as_dict(settings["overrides"]),
            **best["values"],
        },
        "validation": {objective.name: best["objective"]},
        "trial": best["trial"],
    }
    rundir.write_json(out / "best.preset.json", preset)


def _as_dict(overrides: list[str]) -> dict:
    """The command's own ``--set`` lines, kept as strings (``--set`` parses them again)."""
    return dict(line.split("=", 1) for line in overrides)


def _plots(folder: Path, table: list[dict], objective, weights: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    scored = [(i, r) for i, r in enumerate(table) if r["objective"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([i for i, _ in scored], [r["objective"] for _, r in scored], "o", label="trial")
    running, best = [], None
    for _, r in scored:
        if best is None or objective.better(r["objective"], best):
            best = r["objective"]
        running.append(best)
    ax.step([i for i, _ in scored], running, where="post", label="best so far")
    if table and table[0]["objective"] is not None and not table[0]["values"]:
        ax.axhline(table[0]["objective"], linestyle="--", color="grey", label="starting preset")
    ax.set_xlabel("trial (0: the starting preset)")
    ax.set_ylabel(f"{objective.name} (validation)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "objective_by_trial.png", dpi=100)
    plt.close(fig)
    top = [k for k, v in sorted(weights.items(), key=lambda kv: -kv[1])][:2]
    for field in top:
        points = [(r["values"][field], r["objective"]) for _, r in scored if field in r["values"]]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        xs = [recipe_lib.format_value(x) if isinstance(x, (str, bool)) else x for x, _ in points]
        ax.plot(xs, [y for _, y in points], "o")
        numbers = [x for x, _ in points if isinstance(x, float)]
        if len(numbers) == len(points) and min(numbers) > 0 and max(numbers) / min(numbers) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(field)
        ax.set_ylabel(f"{objective.name} (validation)")
        fig.tight_layout()
        fig.savefig(folder / f"objective_by_{field}.png", dpi=100)
        plt.close(fig)
