"""The run directory: create it, reopen it to resume, record how far a run got.

A run directory (``runs/<recipe>/<timestamp>/`` unless given) holds: ``run.json`` (how the run
was started and how far it got), ``config.json``, ``preprocessing.json`` (vocabularies and other
state fitted on the train split), ``data_report.json`` (what reading the data replaced or
skipped), ``checkpoints/best.weights.h5``, ``backup/`` (removed when training ends), ``logs/``
(TensorBoard), ``history.csv``, ``metrics.json``, ``plots/*.png``, ``model_card.md`` and
``export/<version>/``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import types
from pathlib import Path

from lstm_recipes import recipe as recipe_lib
from lstm_recipes.errors import UserError


def default_run_dir(module: types.ModuleType) -> Path:
    """``runs/<recipe>/<YYYYmmdd-HHMMSS>`` under the current folder."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / recipe_lib.recipe_name(module) / stamp


def read_json(path: Path) -> dict:
    """A JSON file of a run directory; a one-line error when it is missing or broken.

    Args:
        path: the file.
    """
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"expected {path.name} in {path.parent}; is it a run directory?") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None


def write_json(path: Path, value) -> None:
    """Write ``value`` as JSON to ``path`` atomically.

    Args:
        path: the file to (re)place.
        value: anything JSON can hold (other values are written as strings).
    """
    # Write then rename, so an interrupted write never leaves a truncated file behind.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str))
    tmp.replace(path)


def check_run_dir(module, run_dir: Path | None) -> None:
    """Refuse, before any work, a ``--run-dir`` that is a file or holds another recipe's run.

    Args:
        module: the recipe module.
        run_dir: the folder given, or None.
    """
    if run_dir is None:
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"expected --run-dir to be a folder, found a file at {run_dir}")
    if (run_dir / "run.json").exists():
        info = read_json(run_dir / "run.json")
        if info.get("recipe") != module.RECIPE_SOURCE:
            raise UserError(
                f"{run_dir} holds a run of recipe {info.get('recipe')!r}, expected "
                f"{module.RECIPE_SOURCE!r}; use a new --run-dir (nothing was changed)"
            )


def open_run(module, config, run_dir: Path | None, started: dict) -> tuple[Path, dict]:
    """Create a run directory or reopen one to resume; refuse one made with another config.

    Args:
        module: the recipe module.
        config: the resolved config.
        run_dir: the folder, or None for a new timestamped one.
        started: how the run was started (data specs, preset, overrides) for ``run.json``.
    """
    run_dir = run_dir or default_run_dir(module)
    config_dict = dataclasses.asdict(config)
    if (run_dir / "run.json").exists():
        info = read_json(run_dir / "run.json")
        saved = read_json(run_dir / "config.json")
        # A field added since the run was made (e.g. strategy) counts as its default.
        defaults = {f.name: f.default for f in dataclasses.fields(config)}
        diff = [
            f"{k}: {saved.get(k, defaults[k])!r} -> {v!r}"
            for k, v in config_dict.items()
            if saved.get(k, defaults[k]) != _jsonable(v)
        ]
        if (
            diff
            or info.get("data") != started.get("data")
            or info.get("test_data") != started.get("test_data")
        ):
            raise UserError(
                f"{run_dir} holds a run started with other settings ({'; '.join(diff) or 'data'}); "
                "use a new --run-dir, or the same command to resume it"
            )
        print(f"resuming the run in {run_dir}", flush=True)
        return run_dir, info
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(
            f"expected --run-dir to be new or a run directory, found other files in {run_dir}"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {
        **started,
        "recipe": module.RECIPE_SOURCE,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "state": "started",
    }
    write_json(run_dir / "config.json", config_dict)
    write_json(run_dir / "run.json", info)
    return run_dir, info


def _jsonable(value):
    return json.loads(json.dumps(value))


def load_run(run_dir: Path):
    """(recipe module, config, run info) of an existing run directory.

    Args:
        run_dir: the run directory.
    """
    info = read_json(run_dir / "run.json")
    module = recipe_lib.load_recipe(info["recipe"])
    config = recipe_lib.config_from_dict(module, read_json(run_dir / "config.json"))
    return module, config, info


def set_state(run_dir: Path, info: dict, state: str, **extra) -> None:
    """Record how far the run got (``started``, ``trained``, ``evaluated``, ``exported``).

    Args:
        run_dir: the run directory.
        info: the run's ``run.json`` content, updated in place.
        state: the new state.
        **extra: more facts to record (sizes, the export path).
    """
    info.update(state=state, **extra)
    write_json(run_dir / "run.json", info)
