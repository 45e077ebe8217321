"""Fit wiring: build a recipe's model and train it with checkpoints, resume and time budget.

What a run directory holds and how it is reopened is ``rundir``; the crash-safe checkpoints and
the exact-resume backup are ``checkpoints``; ``run.Run`` strings training, evaluation and
export together.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from lstm_recipes import compat, distribute, fastpath, precision
from lstm_recipes.checkpoints import BEST, BestCheckpoint, ExactBackup, backup_epoch, trim_history
from lstm_recipes.errors import UserError
from lstm_recipes.rundir import read_json, write_json


@contextlib.contextmanager
def unknown_lengths():
    """Silence Keras's "Your input ran out of data" warning inside the block.

    Bucketed datasets have no known length, so every pass over one (an epoch, an evaluation)
    ends that way; the warning would be printed after every run.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ran out of data.*")
        yield


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


class Progress(keras.callbacks.Callback):
    """When output is not a terminal (logs, CI, a cluster), a line when the first training step
    is done, then every ``seconds``, and at the end of each epoch the examples per second after
    its first step (tracing excluded): Keras prints nothing there until an epoch ends, and an
    epoch of a streamed corpus can last hours.

    Args:
        batch_size: examples per step, to report examples per second.
        seconds: seconds between lines.
    """

    def __init__(self, batch_size: int, seconds: float = 60.0):
        super().__init__()
        self.batch_size, self.seconds = batch_size, seconds

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.t0, self.first, self.steps = epoch, time.time(), None, 0

    def _rate(self, now: float) -> str:
        steps = self.steps - 1
        seconds = max(now - self.first, 1e-9)
        return f"{steps * self.batch_size / seconds:,.0f} examples/s after the first step"

    def on_train_batch_end(self, batch, logs=None):
        now = time.time()
        self.steps = batch + 1
        if self.first is None:
            self.first = self.shown = now
            print(f"first training step done in {now - self.t0:.1f}s", flush=True)
        elif now - self.shown >= self.seconds:
            self.shown = now
            print(
                f"epoch {self.epoch + 1}: {self.steps:,} steps, about "
                f"{self.steps * self.batch_size:,} examples ({self._rate(now)})",
                flush=True,
            )

    def on_epoch_end(self, epoch, logs=None):
        if self.first is not None and self.steps > 1:
            print(
                f"epoch {epoch + 1}: {self.steps:,} steps ({self._rate(time.time())})", flush=True
            )


def without_autotune(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` with tf.data's autotuning off: the same batches in the same order.

    With it on, letting an iterator go waited for a thread of its pipeline (caught in
    ``RootDataset::Iterator``'s destructor), and Keras lets one go at every epoch's start and
    every validation's (it makes the next epoch's iterator ahead of time and drops it). On the
    sentiment recipe's ``imdb`` model, 4 epochs (``benchmarks/RESULTS.md``, "Epochs without
    stalls"): waits of 5-20 s at random epochs with 6,000 reviews (fit 93-95 s), about 30 s
    with 22,500; with autotuning off no wait (fit 65.6 s) and the steps as fast.

    Args:
        dataset: a dataset of batches.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


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
    write_json(path, prep)
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
    deadline: float | None = None,
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
        deadline: a ``time.time()`` after which training stops as with ``max_minutes``
            (``tune``'s budget for the whole search), without changing the config.

    Returns:
        The model with the best validation weights loaded, built outside any strategy so that
        evaluation, decoding and export run on this process alone.
    """
    distribute.check_same_on_every_worker(strategy, prep, "preprocessing")
    keras.utils.set_random_seed(config.seed)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    asked = getattr(config, "precision", "float32")
    policy = precision.resolve(asked)
    with scope, precision.training_policy(policy):
        model = module.build_model(config, prep)
    if policy != "float32":
        print(
            f"precision {precision.shown(asked, policy)}: layers compute {precision.describe(model)}"
        )
    fastpath.check_model(model)
    train = without_autotune(module.batches(config, prep, splits.train, training=True))
    validation = without_autotune(module.batches(config, prep, splits.validation, training=False))
    if strategy is not None:
        train, validation = distribute.shard_by_data(train), distribute.shard_by_data(validation)
    else:
        compat.build_before_tracing(model, train)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    monitor = getattr(module, "MONITOR", "val_loss")
    # Keras's mode="auto" knows "acc" and "loss" names but not custom metrics.
    mode = getattr(module, "MONITOR_MODE", "min" if "loss" in monitor else "max")
    best = BestCheckpoint(run_dir / BEST, monitor, mode)
    early = keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience, mode=mode)
    callbacks = [
        # First, so that the learning rate they set is in the logs the others write.
        *schedule_callbacks(config),
        *([TimeBudget((deadline - time.time()) / 60)] if deadline is not None else []),
        best,
        early,
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0),
        *(module.callbacks(config) if hasattr(module, "callbacks") else []),
        *([] if sys.stdout.isatty() else [Progress(getattr(config, "batch_size", 1))]),
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
    trim_history(run_dir / "history.csv", backup_epoch(run_dir / "backup"))
    verbose = 1 if sys.stdout.isatty() else 2
    with unknown_lengths(), compat.multi_worker_fit(strategy, model):
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


def evaluate(model: keras.Model, batches: tf.data.Dataset) -> dict:
    """``model.evaluate`` on ``batches``: the compiled loss and metrics, by name.

    Its metrics' variables are made before the test step is traced (``fit`` does the same), so
    a model fresh from its checkpoint traces that step once instead of twice.

    Args:
        model: a compiled model.
        batches: (inputs, targets) batches.
    """
    batches = without_autotune(batches)
    compat.build_before_tracing(model, batches)
    return model.evaluate(batches, verbose=0, return_dict=True)


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
    for x, y in without_autotune(dataset):
        outputs.append(predict(x).numpy())
        targets.append(y.numpy())
    return targets, outputs
