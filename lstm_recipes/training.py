"""Fit wiring and the run directory: train, evaluate and export a recipe, resumably.

A run directory (``runs/<recipe>/<timestamp>/`` unless given) holds: ``run.json`` (how the run
was started and how far it got), ``config.json``, ``preprocessing.json`` (vocabularies and other
state fitted on the train split), ``checkpoints/best.weights.h5``, ``backup/`` (removed when
training ends), ``logs/`` (TensorBoard), ``history.csv``, ``metrics.json``, ``plots/*.png``,
``model_card.md`` and ``export/<version>/``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import inspect
import io
import json
import os
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


def save_weights_atomically(model: keras.Model, path: Path) -> None:
    """``model.save_weights(path)``, safe against kills and full disks.

    Keras writes weights files in place, so a kill or a full disk during the write would
    destroy the previous file; and HDF5 crashed the process (SIGSEGV in ``File.close``) when a
    write failed for lack of space. So the file is built in memory, written to a temporary file
    with plain Python I/O (a full disk is then an ordinary ``OSError``), and renamed into place.

    Args:
        model: the model.
        path: the ``.weights.h5`` file to (re)place.
    """
    path = Path(path)
    data = _weights_bytes(model)
    tmp = path.with_name(path.name.removesuffix(".weights.h5") + ".tmp.weights.h5")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(
            e.errno,
            f"could not write {path} ({e.strerror or e}); is the disk full? The previous file, "
            "if any, is intact: free some space and rerun the same command",
        ) from None


def _weights_bytes(model: keras.Model) -> bytes:
    # What model.save_weights writes, built in memory: Keras 3.15's save_weights takes only a
    # path, but its HDF5 store also writes to a BytesIO.
    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    saving_lib._save_state(
        model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set()
    )
    store.close()
    return buffer.getvalue()


class BestCheckpoint(keras.callbacks.Callback):
    """Keep the weights of the best epoch by ``monitor``, written atomically.

    Args:
        path: the ``.weights.h5`` file.
        monitor: the logged metric, e.g. ``val_loss``.
        mode: ``min`` or ``max``.
    """

    def __init__(self, path: Path, monitor: str, mode: str):
        super().__init__()
        self.path, self.monitor, self.mode = Path(path), monitor, mode
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None or not np.isfinite(current):
            return
        current = float(current)
        if self.best is not None and not (
            current < self.best if self.mode == "min" else current > self.best
        ):
            return
        save_weights_atomically(self.model, self.path)
        self.best = current


class ExactBackup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` whose resumed run repeats what an uninterrupted run would do.

    Keras 3.15's callback writes its weights file in place (a kill or a full disk during the
    write leaves a backup that cannot be read), does not save the state of the layers' random
    seed generators (dropout masks), restarts each dataset's per-epoch shuffle from the first
    epoch's order, and resets the other callbacks' memory (the best value so far, early
    stopping's patience). Here each backup is new files committed by renaming its metadata,
    which also holds the seed states and the named callbacks' state, and the number of
    iterators made so far from the training dataset: each new iterator draws the next seed of a
    ``shuffle(..., reshuffle_each_iteration=True)``, and Keras makes one or two per epoch
    depending on whether the dataset's length is known. On resume the dataset is advanced by as
    many fresh iterators, so epoch k sees the batches it would have seen without the kill.

    A worker that is not the chief of a multi-worker run resumes from the chief's backup
    (``restore_dir``, on storage every worker sees) and writes its own to a private folder, so
    that no two processes write the same file.

    Args:
        backup_dir: the folder (removed when training ends).
        dataset: the training dataset given to ``fit`` (its iterators are counted from now on).
        stateful: name -> (callback, attribute names) to save and restore.
        restore_dir: the folder to resume from, when it is not ``backup_dir``.
    """

    def __init__(
        self,
        backup_dir: str,
        dataset: tf.data.Dataset,
        stateful: dict,
        restore_dir: str | None = None,
    ):
        super().__init__(backup_dir, save_freq="epoch")
        self.dataset, self.stateful = dataset, stateful
        self.restore_dir = restore_dir or backup_dir
        self.iterators = _count_iterators(dataset)

    def _seed_states(self) -> list:
        return [v for v in self.model.variables if "seed_generator_state" in v.path]

    def _save_model(self):
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch{self._current_epoch}.weights.h5"
        save_weights_atomically(self.model, folder / name)
        state = {
            key: {a: _plain_number(getattr(cb, a)) for a in attrs}
            for key, (cb, attrs) in self.stateful.items()
        }
        metadata = {
            "epoch": self._current_epoch,
            "weights": name,
            "seeds": [np.asarray(v.numpy()).tolist() for v in self._seed_states()],
            "callbacks": state,
            "iterators": self.iterators[0],
        }
        _write_json(folder / "training_metadata.json", metadata)  # the commit point
        for old in folder.glob("epoch*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def on_train_begin(self, logs=None):
        self._load_model()

    def _load_model(self):
        meta_path = Path(self.restore_dir) / "training_metadata.json"
        if not meta_path.exists():
            return
        meta = read_json(meta_path)
        if "weights" not in meta:  # a backup of Keras's own format
            return super()._load_model()
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(str(Path(self.restore_dir) / meta["weights"]))
        for variable, value in zip(self._seed_states(), meta["seeds"]):
            variable.assign(np.asarray(value, variable.dtype))
        for key, values in meta["callbacks"].items():
            callback = self.stateful[key][0]
            for attr, value in values.items():
                setattr(callback, attr, value)
        epoch = meta["epoch"]
        self._current_epoch = epoch
        self.model._initial_epoch = epoch
        for _ in range(meta.get("iterators", epoch)):
            iter(self.dataset)


def _count_iterators(dataset: tf.data.Dataset) -> list[int]:
    # Keras makes its iterators inside fit; a subclass with a counting __iter__ sees each one.
    # (Under a tf.distribute strategy the distributed dataset makes them and the count stays 0.)
    count = [0]
    base = type(dataset)

    class Counted(base):
        def __iter__(self):
            count[0] += 1
            return super().__iter__()

    Counted.__name__ = Counted.__qualname__ = base.__name__
    dataset.__class__ = Counted
    return count


def backup_epoch(backup_dir: Path) -> int:
    """Epochs finished according to an ``ExactBackup`` folder (0 when there is none)."""
    meta = Path(backup_dir) / "training_metadata.json"
    return int(read_json(meta).get("epoch", 0)) if meta.exists() else 0


def _plain_number(value):
    return float(value) if isinstance(value, (np.floating, np.integer)) else value


def _trim_history(path: Path, epochs: int) -> None:
    # Rows of epochs after the backup were logged by a run killed before it could commit them.
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) < epochs]
    if len(kept) != len(rows):
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="") as f:
            csv.writer(f).writerows(kept)
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
    epoch (``ExactBackup``), optimizer state included.

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
    best = BestCheckpoint(run_dir / BEST, monitor, mode)
    early = keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience, mode=mode)
    callbacks = [
        # First, so that the learning rate they set is in the logs the others write.
        *schedule_callbacks(config),
        best,
        early,
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0),
        *(module.callbacks(config) if hasattr(module, "callbacks") else []),
        # Last: it restores the others' state after their on_train_begin has reset it, and
        # commits an epoch only after they have all recorded it.
        ExactBackup(
            str(run_dir / "backup"),
            dataset=train,
            stateful={"best": (best, ["best"]), "early": (early, ["wait", "best", "best_epoch"])},
            restore_dir=str(restore_from) if restore_from is not None else None,
        ),
    ]
    # Rows of epochs after the backup were logged by a run killed before it committed them;
    # they will be run again. (Before CSVLogger opens the file.)
    _trim_history(run_dir / "history.csv", backup_epoch(run_dir / "backup"))
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
