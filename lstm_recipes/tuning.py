"""``lstm-recipes tune``: a hyperparameter search on KerasTuner whose trials are normal runs.

Every trial trains with the recipe's own pipeline (checkpoints, early stopping, exact resume)
in its own run directory, by ``lstm-recipes train`` in a process of its own (``tune_trials``),
and is scored on the validation split only: the value of the objective at the epoch the best
checkpoint was taken. KerasTuner's oracle (Bayesian
optimisation, Hyperband or random search) proposes the settings and keeps the search's state, so
rerunning the same command after a kill retrains no finished trial and resumes the one that was
cut. The starting preset is trained first, as the baseline every trial must beat; after the
search the best run is evaluated once on the test split and exported::

    OUT/search.json          the command's settings, the minutes used, each trial's result
    OUT/keras_tuner/         the oracle's state (KerasTuner's project folder)
    OUT/trials/preset/       the starting preset's run; OUT/trials/<id>/ each trial's run
    OUT/results.md, .csv     one row per trial; OUT/plots/*.png; OUT/best.preset.json
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

from lstm_recipes import recipe as recipe_lib
from lstm_recipes import rundir, search_space, tune_report, tune_trials
from lstm_recipes.errors import UserError

SETTINGS = "search.json"
BASELINE = "preset"
ALGORITHMS = ("bayesian", "hyperband", "random")


@dataclasses.dataclass(frozen=True)
class Objective:
    """The validation metric a search maximises or minimises.

    Args:
        name: a ``val_`` column of the runs' ``history.csv``.
        direction: ``min`` or ``max``.
    """

    name: str
    direction: str

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` beats ``b``."""
        return a < b if self.direction == "min" else a > b


def parse_objective(spec: str | None, module) -> Objective:
    """``--objective NAME[:min|max]``; default: the metric that picks the recipe's checkpoint.

    Args:
        spec: the option's value, or None.
        module: the recipe module.
    """
    monitor = getattr(module, "MONITOR", "val_loss")
    name, _, direction = (spec or monitor).partition(":")
    if not name.startswith("val_"):
        raise UserError(
            f"--objective: the search selects on the validation split only; expected a val_ "
            f"metric (e.g. {monitor}), got {name!r}"
        )
    if direction not in ("", "min", "max"):
        raise UserError(f"--objective: expected NAME, NAME:min or NAME:max, got {spec!r}")
    if not direction:
        default = getattr(module, "MONITOR_MODE", None) if name == monitor else None
        direction = default or ("min" if "loss" in name else "max")
    return Objective(name, direction)


def trial_score(run_dir: Path, module, objective: Objective) -> tuple[float | None, int]:
    """(objective at the epoch of the run's best checkpoint, epochs trained), from history.csv.

    Args:
        run_dir: a trained run directory.
        module: its recipe module (``MONITOR`` picks the checkpoint).
        objective: the search's objective.
    """
    rows = tune_report.read_history(run_dir / "history.csv")
    if not rows:
        return None, 0
    if objective.name not in rows[0]:
        columns = ", ".join(c for c in rows[0] if c.startswith("val_"))
        raise UserError(
            f"--objective {objective.name}: the runs log no such metric; they log {columns}"
        )
    monitor = getattr(module, "MONITOR", "val_loss")
    mode = getattr(module, "MONITOR_MODE", "min" if "loss" in monitor else "max")
    finite = [r for r in rows if math.isfinite(r.get(monitor, math.nan))]
    if not finite:
        return None, len(rows)
    pick = min if mode == "min" else max
    best = pick(finite, key=lambda r: r[monitor])
    value = best[objective.name]
    return (value if math.isfinite(value) else None), len(rows)


@dataclasses.dataclass
class Search:
    """A search's settings and its progress, kept in ``OUT/search.json``.

    Args:
        out: the search folder.
        settings: what the command asked for (a rerun must ask for the same).
        seconds: wall time the search has run so far, over all sessions (a kill's gap does
            not count).
        trials: trial id -> ``{"values", "objective", "epochs", "seconds", "cut", "status"}``.
    """

    out: Path
    settings: dict
    seconds: float = 0.0
    trials: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self._session = (time.time(), self.seconds)

    @classmethod
    def open(cls, out: Path, settings: dict) -> Search:
        """The search in ``out``: a new one, or the one a same-settings command left there."""
        path = out / SETTINGS
        if path.exists():
            saved = rundir.read_json(path)
            # The budget and trial count may grow between sessions; the rest defines the search.
            fixed = {k: v for k, v in settings.items() if k not in ("trials", "max_minutes")}
            diff = [k for k, v in fixed.items() if saved["settings"].get(k) != v]
            if diff:
                raise UserError(
                    f"{out} holds a search with other settings ({', '.join(diff)}); rerun that "
                    "command to resume it, or give another --out"
                )
            return cls(out, settings, saved["seconds"], saved["trials"])
        if out.exists() and any(out.iterdir()):
            raise UserError(f"expected --out to be a new or empty folder or a search, found {out}")
        out.mkdir(parents=True, exist_ok=True)
        search = cls(out, settings)
        search.save()
        return search

    def save(self) -> None:
        started, before = self._session
        self.seconds = before + time.time() - started
        rundir.write_json(
            self.out / SETTINGS,
            {"settings": self.settings, "seconds": round(self.seconds, 1), "trials": self.trials},
        )

    def remaining(self) -> float:
        """Seconds of the budget left."""
        started, before = self._session
        return self.settings["max_minutes"] * 60 - (before + time.time() - started)


def _say(message: str) -> None:
    print(message, flush=True)


def _train_trial(
    search: Search, trial_id: str, values: dict, module, objective, parent: str | None = None
) -> float | None:
    """Train one trial as a normal run directory and record its validation score; a Hyperband
    trial with a ``parent`` goes on from that trial's run."""
    s = search.settings
    run_dir = search.out / "trials" / trial_id
    lines = recipe_lib.set_lines(values)
    used = s["max_minutes"] - search.remaining() / 60
    _say(
        f"\n=== trial {trial_id} ({used:.1f} of {s['max_minutes']:g} minutes used): "
        f"{' '.join(lines) or '(the starting preset)'}"
    )
    overrides = [*s["overrides"], *lines]
    if parent is not None and not run_dir.exists():
        tune_trials.continue_run(
            search.out / "trials" / parent, run_dir, values["epochs"], overrides
        )
        _say(f"going on from trial {parent}'s run")
    start = time.time()
    deadline = start + search.remaining()
    tune_trials.train_in_subprocess(s, overrides, run_dir, deadline)
    value, epochs = trial_score(run_dir, module, objective)
    search.trials[trial_id] = {
        "values": values,
        "objective": value,
        "epochs": epochs,
        # A resumed trial's time is the sum of its sessions' times.
        "seconds": round(
            search.trials.get(trial_id, {}).get("seconds", 0) + time.time() - start, 1
        ),
        "cut": time.time() >= deadline,
        "status": "completed" if value is not None else "failed",
    }
    search.save()
    shown = "no finite value" if value is None else f"{value:.4f}"
    _say(f"=== trial {trial_id}: {objective.name} {shown} after {epochs} epochs")
    return value


class _BudgetSpent(Exception):
    """Raised between trials once the time budget or the trial count is used up."""


def _tuner(search: Search, module, objective: Objective, dims, config):
    """A KerasTuner ``Tuner`` whose trials are ``_train_trial`` runs."""
    import keras_tuner

    s = search.settings
    hp = search_space.hyperparameters(dims, config)
    kt_objective = keras_tuner.Objective(objective.name, objective.direction)
    common = {"objective": kt_objective, "hyperparameters": hp, "seed": config.seed}
    if s["algorithm"] == "hyperband":
        oracle = keras_tuner.oracles.HyperbandOracle(max_epochs=config.epochs, factor=3, **common)
    elif s["algorithm"] == "random":
        oracle = keras_tuner.oracles.RandomSearchOracle(max_trials=s["trials"], **common)
    else:
        # KerasTuner samples 3 x (fields) random trials before its Gaussian process takes over:
        # 24 for an 8-field space, about what a 60-minute search runs in all (the first UPOS
        # search was random search throughout). 10 leaves the model most of the trials.
        oracle = keras_tuner.oracles.BayesianOptimizationOracle(
            max_trials=s["trials"], num_initial_points=min(3 * len(dims), 10), **common
        )

    class Tuner(keras_tuner.Tuner):
        def pre_create_trial(self):
            done = [t for k, t in search.trials.items() if k != BASELINE]
            if len(done) >= s["trials"]:
                raise _BudgetSpent(f"{len(done)} trials done")
            if search.remaining() <= 0:
                raise _BudgetSpent(f"the {s['max_minutes']:g}-minute budget is spent")

        def on_trial_begin(self, trial):
            super().on_trial_begin(trial)
            # KerasTuner saves its state when a trial ends; saved now, a kill during the first
            # trial also resumes that trial (it is retried with the same id and run directory).
            self.save()

        def run_trial(self, trial, *args, **kwargs):
            values = dict(trial.hyperparameters.values)
            # Hyperband's bookkeeping; its epoch budget for this round becomes the run's epochs.
            epochs, parent = values.get("tuner/epochs"), values.get("tuner/trial_id")
            values = {
                k: v.item() if hasattr(v, "item") else v  # NumPy scalars from the oracle
                for k, v in values.items()
                if not k.startswith("tuner/")
            }
            if epochs is not None:
                values["epochs"] = int(epochs)
            try:
                value = _train_trial(search, trial.trial_id, values, module, objective, parent)
            except UserError as e:  # diverged: a failed trial, not a failed search
                _say(f"=== trial {trial.trial_id} failed: {e}")
                search.trials[trial.trial_id] = {"values": values, "status": "failed"}
                search.save()
                raise keras_tuner.errors.FailedTrialError(str(e)) from None
            if value is None:
                raise keras_tuner.errors.FailedTrialError("no finite validation value")
            return {objective.name: value}

    return Tuner(oracle, directory=str(search.out), project_name="keras_tuner")


def search(
    recipe: str,
    space: tuple[str, ...],
    data: str = "builtin",
    test_data: str | None = None,
    validation_data: str | None = None,
    preset: str = "default",
    overrides: tuple[str, ...] = (),
    trials: int = 20,
    max_minutes: float = 60.0,
    objective: str | None = None,
    algorithm: str = "bayesian",
    out: Path | None = None,
) -> Path:
    """Search a recipe's config on the validation split; evaluate and export the best run.

    Args:
        recipe: a built-in recipe name or a path to a recipe ``.py`` file.
        space: ``--space`` items (``FIELD=SPEC`` or ``default``).
        data: the ``--data`` spec.
        test_data: a separate test spec (used once, for the best run).
        validation_data: a separate validation spec.
        preset: the preset the search starts from (trained first, as the baseline).
        overrides: ``KEY=VALUE`` changes to the preset, kept in every trial.
        trials: trials besides the baseline.
        max_minutes: wall time of the whole search, over its reruns.
        objective: ``NAME[:min|max]`` of a validation metric (default: the recipe's
            ``MONITOR``).
        algorithm: ``bayesian``, ``hyperband`` or ``random``.
        out: the search folder (default ``runs/<recipe>/tune``).

    Returns:
        The best run's directory.
    """
    if algorithm not in ALGORITHMS:
        raise UserError(f"--algorithm: expected one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    module = recipe_lib.load_recipe(recipe)
    config = recipe_lib.resolve_config(module, preset, overrides)
    dims = search_space.resolve(space, module, config)
    goal = parse_objective(objective, module)
    if not max_minutes > 0:
        raise UserError(f"--max-minutes: expected a positive number, got {max_minutes}")
    out = Path(out or Path("runs") / recipe_lib.recipe_name(module) / "tune")
    settings = {
        "recipe": recipe,
        "data": data,
        "test_data": test_data,
        "validation_data": validation_data,
        "preset": preset,
        "overrides": list(overrides),
        "space": [d.describe() for d in dims],
        "objective": f"{goal.name}:{goal.direction}",
        "algorithm": algorithm,
        "trials": trials,
        "max_minutes": max_minutes,
    }
    search = Search.open(out, settings)
    _say(f"search folder: {out}")
    _say(f"space: {'  '.join(settings['space'])}")
    _say(f"objective: {goal.name} ({goal.direction}), validation split; algorithm: {algorithm}")
    _say(f"budget: {max_minutes:g} minutes ({search.seconds / 60:.1f} used), {trials} trials")
    if search.trials.get(BASELINE, {}).get("status") != "completed" and search.remaining() > 0:
        _train_trial(search, BASELINE, {}, module, goal)
    tuner = _tuner(search, module, goal, dims, config)
    try:
        tuner.search(verbose=0)
    except _BudgetSpent as e:
        _say(f"\nsearch stopped: {e}")
    except RuntimeError as e:  # KerasTuner's "too many failed trials in a row"
        raise UserError(f"the search stopped: {str(e).splitlines()[0]}") from None
    return finish(search, module, config, goal, dims)


def finish(search: Search, module, config, objective: Objective, dims) -> Path:
    """Write the results, pick the best run on validation, evaluate it on test and export it."""
    from lstm_recipes.run import Run

    rows = tune_report.rows(search.trials, BASELINE)
    scored = [r for r in rows if r["objective"] is not None]
    if not scored:
        raise UserError("no trial finished with a finite validation value; nothing to pick")
    best = scored[0]
    for row in scored[1:]:
        if objective.better(row["objective"], best["objective"]):
            best = row
    best_dir = search.out / "trials" / best["trial"]
    start = {d.name: getattr(config, d.name) for d in dims}
    tune_report.write(search, rows, best, objective, [d.name for d in dims], start)
    _say(f"\nbest on validation: trial {best['trial']}, {objective.name} {best['objective']:.4f}")
    info = rundir.read_json(best_dir / "run.json")
    if info.get("state") == "exported":
        _say(f"already evaluated and exported: {info.get('export')}")
        return best_dir
    _say("evaluating the best run on the test split (once) and exporting it")
    best_run = Run.reopen(best_dir)
    best_run.evaluate()
    best_run.export()
    _say(
        f"best run: {best_dir}\nreproduce it: lstm-recipes run {search.settings['recipe']} "
        f"--preset-file {search.out / 'best.preset.json'} ..."
    )
    return best_dir
