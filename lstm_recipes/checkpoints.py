"""Crash-safe checkpoints: the best epoch's weights, and a backup that resumes exactly.

Every weights file is built in memory, written to a temporary file and renamed into place, so a
kill or a full disk never leaves a file that cannot be read.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from lstm_recipes import compat
from lstm_recipes.rundir import read_json, write_json

BEST = "checkpoints/best.weights.h5"


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
    data = compat.weights_bytes(model)
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


class ExactBackup(compat.BackupHooks):
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
        self.iterators = compat.count_iterators(dataset)

    def _seed_states(self) -> list:
        return [v for v in self.model.variables if "seed_generator_state" in v.path]

    def save_backup(self, epoch: int) -> None:
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch{epoch}.weights.h5"
        save_weights_atomically(self.model, folder / name)
        state = {
            key: {a: _plain_number(getattr(cb, a)) for a in attrs}
            for key, (cb, attrs) in self.stateful.items()
        }
        metadata = {
            "epoch": epoch,
            "weights": name,
            "seeds": [np.asarray(v.numpy()).tolist() for v in self._seed_states()],
            "callbacks": state,
            "iterators": self.iterators[0],
        }
        write_json(folder / "training_metadata.json", metadata)  # the commit point
        for old in folder.glob("epoch*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def on_train_begin(self, logs=None):
        self.load_backup()

    def load_backup(self) -> None:
        meta_path = Path(self.restore_dir) / "training_metadata.json"
        if not meta_path.exists():
            return
        meta = read_json(meta_path)
        if "weights" not in meta:  # a backup of Keras's own format
            return super().load_backup()
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
        self.resume_at(epoch)
        for _ in range(meta.get("iterators", epoch)):
            iter(self.dataset)


def backup_epoch(backup_dir: Path) -> int:
    """Epochs finished according to an ``ExactBackup`` folder (0 when there is none)."""
    meta = Path(backup_dir) / "training_metadata.json"
    return int(read_json(meta).get("epoch", 0)) if meta.exists() else 0


def _plain_number(value):
    return float(value) if isinstance(value, (np.floating, np.integer)) else value


def trim_history(path: Path, epochs: int) -> None:
    """Drop the rows of ``history.csv`` for epochs after the backup's last.

    A run killed before it committed an epoch's backup had already logged its row; the resumed
    run trains that epoch again.

    Args:
        path: the ``history.csv``.
        epochs: epochs the backup holds.
    """
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
