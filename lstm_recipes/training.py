"""Fit wiring and the run directory: train, evaluate and export a recipe, resumably.

A run directory (``runs/<recipe>/<timestamp>/`` unless given) holds: ``run.json`` (how the run
was started and how far it got), ``config.json``, ``preprocessing.json`` (vocabularies and other
state fitted on the train split), ``checkpoints/best.weights.h5``, ``backup/`` (removed when
training ends), ``logs/`` (TensorBoard), ``history.csv``, ``metrics.json``, ``plots/*.png``,
``model_card.md`` and ``export/<version>/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import json
import sys
import time
import types
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from lstm_recipes import distribute, fastpath, plots
from lstm_recipes import export as export_lib
from lstm_recipes import recipe as recipe_lib
from lstm_recipes.errors import UserError

BEST = "checkpoints/best.weights.h5"


def default_run_dir(module: types.ModuleType) -> Path:
    """``runs/<recipe>/<YYYYmmdd-HHMMSS>`` under the current folder."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / recipe_lib.recipe_name(module) / stamp


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"expected {path.name} in {path.parent}; is it a run directory?") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None


def _write_json(path: Path, value) -> None:
    # Write then rename, so an interrupted write never leaves a truncated file behind.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str))
    tmp.replace(path)


def optimizer(config) -> keras.optimizers.Optimizer:
    """Adam with the config's learning rate and optional ``clipnorm``."""
    clipnorm = getattr(config, "clipnorm", None) or None
    return keras.optimizers.Adam(config.learning_rate, clipnorm=clipnorm)


class TimeBudget(keras.callbacks.Callback):
    """Stop training once ``minutes`` have passed (checked after every batch).

    The epoch in progress is cut short and still validated and checkpointed, so a run never
    overshoots its budget by more than one batch and one validation pass.
    """

    def __init__(self, minutes: float):
        super().__init__()
        self.seconds = minutes * 60

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        if not self.model.stop_training and time.time() - self.start > self.seconds:
            print(f"\ntime budget of {self.seconds / 60:g} minutes reached; stopping", flush=True)
            self.model.stop_training = True


def schedule_callbacks(config) -> list:
    """Callbacks for the optional config fields ``lr_decay`` (per epoch) and ``max_minutes``."""
    callbacks = []
    decay = getattr(config, "lr_decay", 1.0)
    if decay != 1.0:
        callbacks.append(
            keras.callbacks.LearningRateScheduler(lambda epoch: config.learning_rate * decay**epoch)
        )
    if getattr(config, "max_minutes", 0):
        callbacks.append(TimeBudget(config.max_minutes))
    return callbacks


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
    _write_json(run_dir / "config.json", config_dict)
    _write_json(run_dir / "run.json", info)
    return run_dir, info


def _jsonable(value):
    return json.loads(json.dumps(value))


def load_run(run_dir: Path):
    """(recipe module, config, run info) of an existing run directory."""
    info = read_json(run_dir / "run.json")
    module = recipe_lib.load_recipe(info["recipe"])
    config = recipe_lib.config_from_dict(module, read_json(run_dir / "config.json"))
    return module, config, info


def set_state(run_dir: Path, info: dict, state: str, **extra) -> None:
    info.update(state=state, **extra)
    _write_json(run_dir / "run.json", info)


def preprocessing(module, config, splits, run_dir: Path) -> dict:
    """The run's fitted preprocessing state: fitted on the train split once, then reloaded."""
    path = run_dir / "preprocessing.json"
    if path.exists():
        return read_json(path)
    t0 = time.time()
    # A recipe may keep run-local state beside its preprocessing (e.g. an image feature cache).
    takes_run_dir = "run_dir" in inspect.signature(module.fit_preprocessing).parameters
    extra = {"run_dir": run_dir} if takes_run_dir else {}
    prep = module.fit_preprocessing(config, splits.train, **extra)
    _write_json(path, prep)
    print(f"preprocessing fitted on the train split in {time.time() - t0:.1f}s", flush=True)
    return prep


def fit(
    module,
    config,
    prep: dict,
    splits,
    run_dir: Path,
    strategy: tf.distribute.Strategy | None = None,
    restore_from: Path | None = None,
) -> keras.Model:
    """Train with checkpoints, resume, early stopping, TensorBoard, CSV history and NaN guard.

    Rerunning after a crash or kill with the same run directory resumes from the last finished
    epoch (``BackupAndRestore``), optimizer state included.

    Args:
        module: the recipe module.
        config: the resolved config.
        prep: the fitted preprocessing state.
        splits: the data splits.
        run_dir: where checkpoints, backup, logs and history go (a temporary folder on a
            worker that is not the chief).
        strategy: a ``tf.distribute`` strategy (see ``distribute.make_strategy``); None trains
            on one device.
        restore_from: on a worker that is not the chief, the chief's ``backup/`` folder to
            resume from (it writes its own backups to ``run_dir``).

    Returns:
        The model with the best validation weights loaded, built outside any strategy so that
        evaluation, decoding and export run on this process alone.
    """
    distribute.check_same_on_every_worker(strategy, prep, "preprocessing")
    keras.utils.set_random_seed(config.seed)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = module.build_model(config, prep)
    fastpath.check_model(model)
    train = module.batches(config, prep, splits.train, training=True)
    validation = module.batches(config, prep, splits.validation, training=False)
    if strategy is not None:
        train, validation = distribute.shard_by_data(train), distribute.shard_by_data(validation)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    monitor = getattr(module, "MONITOR", "val_loss")
    # Keras's mode="auto" knows "acc" and "loss" names but not custom metrics.
    mode = getattr(module, "MONITOR_MODE", "min" if "loss" in monitor else "max")
    backup = str(run_dir / "backup")
    callbacks = [
        # First, so that the learning rate they set is in the logs the others write.
        *schedule_callbacks(config),
        keras.callbacks.BackupAndRestore(backup, save_freq="epoch")
        if restore_from is None
        else distribute.WorkerBackupAndRestore(str(restore_from), backup),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / BEST),
            monitor=monitor,
            save_best_only=True,
            save_weights_only=True,
            mode=mode,
        ),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience, mode=mode),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0),
        *(module.callbacks(config) if hasattr(module, "callbacks") else []),
    ]
    verbose = 1 if sys.stdout.isatty() else 2
    with warnings.catch_warnings(), distribute.keras_fit_workaround(strategy, model):
        # Bucketed datasets have no known length; Keras warns at each epoch's end that the
        # input "ran out of data", which is how every epoch ends here.
        warnings.filterwarnings("ignore", message=".*ran out of data.*")
        model.fit(
            train,
            validation_data=validation,
            epochs=config.epochs,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,
        )
    if not np.all([np.isfinite(w).all() for w in model.get_weights()]):
        raise UserError("training diverged (NaN loss); try a lower learning_rate or set clipnorm")
    if (run_dir / BEST).exists():
        return load_model(module, config, prep, run_dir)
    if strategy is not None:
        trained, model = model, module.build_model(config, prep)
        model.set_weights(trained.get_weights())
    return model


def fingerprint(model: keras.Model) -> str:
    """A short hash of a model's weights, to check that every worker trained the same model.

    Args:
        model: a Keras model.
    """
    import hashlib

    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return f"sha256:{digest.hexdigest()[:16]} ({model.count_params():,} parameters)"


def load_model(module, config, prep: dict, run_dir: Path) -> keras.Model:
    """The recipe's model with the run's best weights."""
    path = run_dir / BEST
    if not path.exists():
        raise UserError(f"expected trained weights at {path}; train the run first")
    model = module.build_model(config, prep)
    with warnings.catch_warnings():
        # The checkpoint also holds the optimizer's slots, which inference does not need.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(str(path))
    return model


def predictions(model: keras.Model, dataset: tf.data.Dataset):
    """(targets, model outputs) over a whole dataset of (inputs, targets) batches, in step.

    Args:
        model: a Keras model.
        dataset: batches of (inputs, targets); order may be anything (e.g. bucketed).
    """
    predict = tf.function(
        lambda x: model(x, training=False), reduce_retracing=True, autograph=False
    )
    targets, outputs = [], []
    for x, y in dataset:
        outputs.append(predict(x).numpy())
        targets.append(y.numpy())
    return targets, outputs


def evaluate(module, config, prep, model, splits, run_dir: Path) -> dict:
    """Test-split metrics from the recipe, saved to ``metrics.json`` with learning curves."""
    t0 = time.time()
    metrics = module.evaluate(config, model, prep, splits.test, run_dir)
    metrics["eval_seconds"] = round(time.time() - t0, 1)
    _write_json(run_dir / "metrics.json", metrics)
    plots.learning_curves(run_dir / "history.csv", run_dir / "plots" / "learning_curves.png")
    return metrics


def export(module, config, prep, model, run_dir: Path) -> tuple[Path, dict]:
    """A new verified SavedModel version under ``run_dir/export``; returns (path, signatures)."""
    serving = module.serving(config, model, prep)
    signatures = export_lib.signature_summary(serving.endpoints)
    metadata = {"recipe": recipe_lib.recipe_name(module), "signatures": signatures}
    path = export_lib.export_saved_model(serving, run_dir / "export", metadata)
    return path, signatures


def model_card(
    module, config, run_dir: Path, info: dict, sizes: dict, metrics: dict, signatures: dict
) -> Path:
    """Write ``model_card.md``: data, config, metrics and export signatures of the run."""
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
