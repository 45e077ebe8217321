"""Every use of a private Keras or TensorFlow API, in one place.

Each use says why no public API does the job. ``tests/test_compat.py`` holds one tripwire per
use: it fails, saying what to change here, as soon as an installed Keras or TensorFlow release
moves or changes the internal. Nothing outside this module touches ``keras.src``, a
``BackupAndRestore`` internal, ``model._initial_epoch``, ``reduce_per_replica``,
``LSTM.inner_loop``, ``model._symbolic_build``, a dataset's class or
``convert_variables_to_constants_v2``.

Checked with Keras 3.15 and TensorFlow 2.21 (``KNOWN_KERAS``).
"""

from __future__ import annotations

import contextlib
import io

import keras
import tensorflow as tf

KNOWN_KERAS = (3, 15)  # the (major, minor) these internals were read from


def keras_version() -> tuple[int, int]:
    """The installed Keras's (major, minor)."""
    return tuple(int(part) for part in keras.__version__.split(".")[:2])


# ----------------------------------------------------------------------------- weights in memory


def weights_bytes(model: keras.Model) -> bytes:
    """What ``model.save_weights(path)`` writes, built in memory.

    Why private: Keras 3.15's ``save_weights`` takes only a path and writes it in place, so a
    kill or a full disk during the write destroys the previous file (and a failed HDF5 write
    crashed the process in ``File.close``). Its HDF5 store writes to a ``BytesIO`` too; the
    caller then writes the bytes with plain Python I/O and renames them into place.

    Args:
        model: the model whose weights (and optimizer slots) to serialize.
    """
    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    saving_lib._save_state(
        model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set()
    )
    store.close()
    return buffer.getvalue()


# ----------------------------------------------------------------------------- backup and restore


class BackupHooks(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` with its private hooks routed to methods a subclass overrides.

    Why private: Keras 3.15's callback has no public way to change what a backup holds (its
    weights file is written in place, without the seed generators' state or other callbacks'
    memory). It calls ``_save_model`` at each epoch end and ``_load_model`` at train begin, and
    resumes at ``model._initial_epoch``; a subclass overrides ``save_backup`` and
    ``load_backup`` here instead.
    """

    def _save_model(self):
        self.save_backup(self._current_epoch)

    def _load_model(self):
        self.load_backup()

    def save_backup(self, epoch: int) -> None:
        """Write a backup of the model after ``epoch`` epochs (override)."""
        super()._save_model()

    def load_backup(self) -> None:
        """Restore the last backup, if any (override); Keras's own format by default."""
        super()._load_model()

    def resume_at(self, epoch: int) -> None:
        """Make ``fit`` continue after ``epoch`` finished epochs."""
        self._current_epoch = epoch
        self.model._initial_epoch = epoch


# ----------------------------------------------------------------------------- dataset iterators


def count_iterators(dataset: tf.data.Dataset) -> list[int]:
    """A one-item list that counts the iterators made from ``dataset`` from now on.

    Why private: Keras makes one or two iterators per epoch inside ``fit`` (depending on
    whether the dataset's length is known) and each draws the next seed of a
    ``shuffle(..., reshuffle_each_iteration=True)``; an exact resume must make as many. No
    public hook sees them, so the dataset's class is swapped for a subclass whose ``__iter__``
    counts. (Under a tf.distribute strategy the distributed dataset makes them and the count
    stays 0.)

    Args:
        dataset: the training dataset given to ``fit``.
    """
    count = [0]
    base = type(dataset)

    class Counted(base):
        def __iter__(self):
            count[0] += 1
            return super().__iter__()

    Counted.__name__ = Counted.__qualname__ = base.__name__
    dataset.__class__ = Counted
    return count


# ----------------------------------------------------------------------------- multi-worker fit

# (keras#20585; keras#20329, tensorflow#72388): under MultiWorkerMirroredStrategy, Keras 3.15's
# fit (1) reduces the first input batch across workers before the first step only to learn its
# shapes for a symbolic build ("Attempt to convert a value (PerReplica...) to a Tensor",
# keras#20329); (2) reduces each replica's scalar logs along axis 0 ("Invalid reduction
# dimension 0 for input with 0 dimensions", tensorflow#72388).
MULTI_WORKER_FIX_UNTIL = (3, 15)  # the last Keras (major, minor) known to need it


def in_multi_worker_mode(strategy) -> bool:
    """Whether ``strategy`` spans several workers.

    Why private: Keras picks its reduce paths by this same flag of the strategy's extended
    object; no public attribute says it.

    Args:
        strategy: a ``tf.distribute`` strategy.
    """
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )


def needs_multi_worker_fix(strategy) -> bool:
    """True when ``fit`` under ``strategy`` needs ``multi_worker_fit`` with this Keras.

    Args:
        strategy: a ``tf.distribute`` strategy.
    """
    return keras_version() <= MULTI_WORKER_FIX_UNTIL and in_multi_worker_mode(strategy)


@contextlib.contextmanager
def multi_worker_fit(strategy, model: keras.Model):
    """Within the block, ``model.fit`` works under a multi-worker strategy.

    Why private: the two failing paths (above) are inside Keras's trainer. For this model and
    the duration of its fit only, the symbolic build takes this worker's first replica's batch,
    and scalar logs are reduced across replicas (axis None).

    Args:
        strategy: the strategy ``model`` was built under, or None.
        model: the model about to be trained.
    """
    if strategy is None or not needs_multi_worker_fix(strategy):
        yield
        return
    from keras.src.backend.tensorflow import trainer

    def symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                first = next(batches)
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], first
                )
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean"):
            return original(values, strategy, reduction)
        return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)

    model._maybe_symbolic_build = symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        trainer.reduce_per_replica = original
        del model._maybe_symbolic_build


# ----------------------------------------------------------------------------- one trace


def build_before_tracing(model: keras.Model, dataset: tf.data.Dataset) -> None:
    """Create the optimizer's, compiled metrics' and compiled loss's variables now, so that
    ``fit`` and ``evaluate`` trace their step once, not twice.

    Why private: without a distribution strategy Keras 3.15 leaves these variables to the first
    trace of the train function, and a ``tf.function`` whose first trace creates variables is
    traced again (a tiny translation run traced its train step twice, 6.7 s each). Under a
    strategy Keras builds them first with ``model._symbolic_build``; this calls it the same way.
    No public API builds compiled metrics and losses without running the model on data.

    Args:
        model: a compiled model about to be trained without a strategy.
        dataset: its training batches; only their ``element_spec`` is read.
    """
    model._symbolic_build(data_batch=dataset.element_spec)


# ----------------------------------------------------------------------------- LSTM step loop


@keras.saving.register_keras_serializable(package="lstm_recipes")
class LSTMLoopHook(keras.layers.LSTM):
    """``keras.layers.LSTM`` whose step loop a subclass may replace.

    Why private: Keras 3.15 runs an LSTM's steps in ``inner_loop(sequences, initial_state,
    mask, training)`` (after the input checks, before the output handling); replacing only that
    keeps the layer's weights, config, masking rules and cuDNN path. A subclass implements
    ``own_loop_applies`` and ``own_loop`` with ``inner_loop``'s arguments and results
    (last output, outputs, states).
    """

    def own_loop_applies(self) -> bool:
        """Whether ``own_loop`` runs instead of Keras's loop (override)."""
        return False

    def own_loop(self, sequences, initial_state, mask, training=False):
        """The replacement step loop (override)."""
        raise NotImplementedError

    def unrolls_fixed_steps(self) -> bool:
        """Whether Keras's loop unrolls inputs whose step count is static (override)."""
        return False

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if self.own_loop_applies():
            return self.own_loop(sequences, initial_state, mask, training=training)
        if self.unroll or sequences.shape[1] is None or not self.unrolls_fixed_steps():
            return super().inner_loop(sequences, initial_state, mask, training=training)
        self.unroll = True  # Keras's loop reads the layer's flag
        try:
            return super().inner_loop(sequences, initial_state, mask, training=training)
        finally:
            self.unroll = False


# ----------------------------------------------------------------------------- LiteRT conversion


def frozen_function(concrete: tf.types.experimental.ConcreteFunction):
    """``concrete`` with every variable it reads turned into a constant.

    Why private: the LiteRT converter keeps resource variables that a ``while`` loop body reads
    (every LSTM layer's weights) as variables, and the interpreter then fails at run time
    (``READ_VARIABLE ... variable != nullptr``). TensorFlow's own converter freezes graphs with
    this function; no public API does.

    Args:
        concrete: a traced ``tf.function``.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    return convert_variables_to_constants_v2(concrete)
