"""Tripwires for every private Keras/TensorFlow API that ``lstm_recipes.compat`` uses.

Each test exercises one internal the way compat does and fails, saying what to change, when an
installed Keras or TensorFlow release moves or changes it.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from lstm_recipes import compat


def tiny_model() -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    return model


def data() -> tf.data.Dataset:
    x, y = np.ones((8, 2), "float32"), np.ones((8, 1), "float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4)


def test_weights_bytes_load_like_save_weights(tmp_path):
    model = tiny_model()
    model.fit(data(), epochs=1, verbose=0)  # optimizer slots too
    try:
        blob = compat.weights_bytes(model)
    except (ImportError, AttributeError, TypeError) as e:
        pytest.fail(
            f"Keras {keras.__version__} changed keras.src.saving.saving_lib ({e}): update "
            "compat.weights_bytes to build what model.save_weights writes in memory"
        )
    path = tmp_path / "m.weights.h5"
    path.write_bytes(blob)
    other = tiny_model()
    other.load_weights(str(path))
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_backup_hooks_see_every_epoch_and_resume_where_told(tmp_path):
    calls = []

    class Hooks(compat.BackupHooks):
        def save_backup(self, epoch):
            calls.append(("save", epoch))

        def load_backup(self):
            calls.append(("load",))
            self.resume_at(2)

    hooks = Hooks(str(tmp_path / "backup"), save_freq="epoch")
    history = tiny_model().fit(data(), epochs=4, verbose=0, callbacks=[hooks])
    assert calls == [("load",), ("save", 3), ("save", 4)], (
        f"Keras {keras.__version__} changed BackupAndRestore's _load_model/_save_model/"
        f"_current_epoch hooks (calls {calls}): update compat.BackupHooks"
    )
    assert history.epoch == [2, 3], (
        f"Keras {keras.__version__} no longer resumes at model._initial_epoch: update "
        "compat.BackupHooks.resume_at"
    )


@pytest.mark.parametrize("known_length", [True, False])
def test_count_iterators_counts_what_fit_makes(known_length):
    dataset = data()
    if not known_length:
        dataset = dataset.filter(lambda x, y: True)
    count = compat.count_iterators(dataset)
    assert isinstance(dataset, tf.data.Dataset)
    tiny_model().fit(dataset, epochs=3, verbose=0)
    assert count[0] >= 3, (
        f"Keras {keras.__version__} made {count[0]} iterators in 3 epochs: the dataset class "
        "swap of compat.count_iterators no longer sees them; find another way to count"
    )


def test_lstm_loop_hook_replaces_kerass_step_loop():
    params = list(inspect.signature(keras.layers.LSTM.inner_loop).parameters)
    assert params == ["self", "sequences", "initial_state", "mask", "training"], (
        f"Keras {keras.__version__} changed LSTM.inner_loop's arguments to {params}: update "
        "compat.LSTMLoopHook and fused.LSTM.own_loop"
    )
    seen = []

    class Hooked(compat.LSTMLoopHook):
        def own_loop_applies(self):
            return True

        def own_loop(self, sequences, initial_state, mask, training=False):
            seen.append(sequences.shape)
            return keras.layers.LSTM.inner_loop(self, sequences, initial_state, mask, training)

    layer = Hooked(3)
    out = layer(np.ones((2, 5, 4), "float32"))
    assert seen, f"Keras {keras.__version__} no longer calls LSTM.inner_loop: update compat"
    assert tuple(out.shape) == (2, 3)


def test_the_loop_hook_unrolls_a_fixed_step_count_without_a_while_loop():
    class Unrolled(compat.LSTMLoopHook):
        def unrolls_fixed_steps(self):
            return True

    def loops(layer) -> set:
        spec = tf.TensorSpec([None, 5, 4], tf.float32)  # a dynamic batch, 5 steps
        fn = tf.function(layer).get_concrete_function(spec)
        return {op.type for op in fn.graph.get_operations()} & {"While", "StatelessWhile"}

    assert loops(compat.LSTMLoopHook(3)), "Keras's loop is no while loop: this test is moot"
    layer = Unrolled(3)
    assert not loops(layer), (
        f"Keras {keras.__version__}'s RNN.inner_loop no longer unrolls when the layer's unroll "
        "flag is set: update compat.LSTMLoopHook.inner_loop (LiteRT needs char LSTMs unrolled)"
    )
    assert layer.unroll is False, "the hook left the layer's unroll flag set"


def test_keras_still_needs_the_multi_worker_workaround():
    """Keras's own reduce paths, unpatched, under a multi-worker strategy.

    If this fails, a Keras release changed them: when they no longer fail, drop
    ``compat.multi_worker_fit``; when a newer Keras still fails, raise
    ``compat.MULTI_WORKER_FIX_UNTIL`` (and check the two-worker test passes).
    """
    from keras.src.backend.tensorflow import trainer

    strategy = tf.distribute.MultiWorkerMirroredStrategy._from_local_devices(["/cpu:0", "/cpu:1"])
    # Two local replicas stand in for two workers: Keras picks its reduce paths by this flag.
    strategy.extended._in_multi_worker_mode = lambda: True
    failures = []
    logs = strategy.run(lambda: {"loss": tf.constant(1.0)})
    try:  # tensorflow#72388: scalar logs reduced along axis 0
        trainer.reduce_per_replica(logs, strategy, "auto")
    except ValueError as e:
        assert "Invalid reduction dimension 0" in str(e)
        failures.append("scalar logs")
    with strategy.scope():
        model = tiny_model()
    dataset = tf.data.Dataset.from_tensor_slices((np.ones((8, 2), "float32"), np.ones((8, 1))))
    iterator = trainer.TFEpochIterator(
        x=dataset.batch(4), distribute_strategy=strategy, steps_per_execution=1
    )
    try:  # keras#20329: the first input batch reduced across workers before the first step
        model._maybe_symbolic_build(iterator=iterator)
    except ValueError:
        failures.append("first batch")
    if compat.keras_version() <= compat.MULTI_WORKER_FIX_UNTIL:
        assert compat.needs_multi_worker_fix(strategy)
        assert failures == ["scalar logs", "first batch"], (
            f"Keras {keras.__version__} no longer fails there (only in {failures}): "
            "drop or shrink compat.multi_worker_fit"
        )
    else:
        assert not failures, (
            f"Keras {keras.__version__} still fails in {failures}: raise "
            "compat.MULTI_WORKER_FIX_UNTIL"
        )


def test_frozen_function_turns_variables_into_constants():
    weight = tf.Variable([2.0, 3.0])

    @tf.function(input_signature=[tf.TensorSpec([2], tf.float32)])
    def scale(x):
        return {"y": x * weight}

    try:
        frozen = compat.frozen_function(scale.get_concrete_function())
    except ImportError as e:
        raise AssertionError(
            f"TensorFlow {tf.__version__} moved convert_variables_to_constants_v2 ({e}): update "
            "compat.frozen_function, which LiteRT export needs"
        ) from None
    assert not frozen.variables, "compat.frozen_function left variables in the graph"
    weight.assign([0.0, 0.0])  # a frozen graph keeps the values it was frozen with
    out = tf.nest.flatten(frozen(tf.constant([1.0, 1.0])))[0]
    np.testing.assert_allclose(out.numpy(), [2.0, 3.0])


def test_building_first_makes_fit_and_evaluate_trace_each_step_once():
    traces = []

    class Counting(keras.Sequential):
        def train_step(self, data):
            traces.append("train")
            return super().train_step(data)

        def test_step(self, data):
            traces.append("test")
            return super().test_step(data)

    def fresh():
        model = Counting([keras.Input((2,)), keras.layers.Dropout(0.1), keras.layers.Dense(1)])
        model.compile("adam", "mse", metrics=["mae"])
        return model

    model = fresh()
    compat.build_before_tracing(model, data())
    model.fit(data(), validation_data=data(), epochs=2, verbose=0)
    fresh_model = fresh()
    compat.build_before_tracing(fresh_model, data())
    fresh_model.evaluate(data(), verbose=0)
    assert traces == ["train", "test", "test"], (
        f"expected one trace of each step after compat.build_before_tracing, got {traces}: the "
        "installed Keras builds optimizer and metric state differently (Trainer._symbolic_build "
        "in keras/src/trainers/trainer.py); update compat.build_before_tracing to what Keras now "
        "does before tracing, or drop it if Keras builds that state first by itself"
    )
