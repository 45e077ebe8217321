"""The fused CPU LSTM loop (``lstm_recipes.fused``) against Keras's own CPU loop."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from lstm_recipes import fastpath, fused

B, T, D, U = 5, 9, 7, 6
MASKS = {
    "none": None,
    # right padding, a one-step and an empty sequence among them
    "right": np.array([[1] * n + [0] * (T - n) for n in (9, 4, 1, 0, 6)], bool),
    # holes anywhere (Keras's loop holds the state over them)
    "holes": np.random.default_rng(1).random((B, T)) > 0.4,
}


def _outputs_and_gradients(layer, x, mask, h0, c0, weights):
    with tf.GradientTape() as tape:
        tape.watch([x, h0, c0])
        out, h, c = layer(x, mask=mask, initial_state=[h0, c0], training=True)
        out3 = out if layer.return_sequences else out[:, None]
        loss = tf.reduce_sum(out3 * weights) + tf.reduce_sum(0.3 * h) + tf.reduce_sum(0.7 * c)
    return [out, h, c] + tape.gradient(loss, [x, h0, c0] + layer.trainable_weights)


def _same_weights_and_inputs(first, second, rng):
    # Both layers built with the same random weights; returns inputs x, h0 and c0.
    for layer in (first, second):
        layer.build((B, T, D))
    weights = [rng.normal(size=w.shape).astype("float32") * 0.5 for w in first.get_weights()]
    first.set_weights(weights)
    second.set_weights(weights)
    x = tf.constant(rng.normal(size=(B, T, D)).astype("float32"))
    h0, c0 = (tf.constant(rng.normal(size=(B, U)).astype("float32")) for _ in range(2))
    return x, h0, c0


@pytest.mark.parametrize(
    "mask_name, go_backwards, return_sequences, zero_output, loops",
    [(*case, 1) for case in itertools.product(MASKS, (False, True), (False, True), (False, True))]
    # the batch of 5 as slices of 2 and 3, and of 1, 1 and 3, each its own loop
    + [("right", False, True, True, 2), ("holes", True, False, False, 3)],
)
def test_fused_loop_equals_keras_loop(
    mask_name, go_backwards, return_sequences, zero_output, loops
):
    rng = np.random.default_rng(0)
    kwargs = dict(
        return_sequences=return_sequences,
        return_state=True,
        go_backwards=go_backwards,
        zero_output_for_mask=zero_output,
    )
    reference = keras.layers.LSTM(U, **kwargs)
    candidate = fused.LSTM(U, parallel_loops=loops, **kwargs)
    x, h0, c0 = _same_weights_and_inputs(reference, candidate, rng)
    mask = None if MASKS[mask_name] is None else tf.constant(MASKS[mask_name])
    out_weights = tf.constant(rng.normal(size=(B, T if return_sequences else 1, U)), tf.float32)

    expected = _outputs_and_gradients(reference, x, mask, h0, c0, out_weights)
    found = _outputs_and_gradients(candidate, x, mask, h0, c0, out_weights)
    names = ["outputs", "h", "c", "d_inputs", "d_h0", "d_c0", "d_kernel", "d_recurrent", "d_bias"]
    for name, a, b in zip(names, expected, found):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=2e-5, rtol=1e-5, err_msg=name)


def test_fused_layer_trains_like_keras_in_a_bidirectional_model():
    """Same weights, same data, a few Adam steps in compiled graphs: the same model after."""

    def model(layer_class):
        tokens = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(50, 8, mask_zero=True)(tokens)
        x = keras.layers.Bidirectional(layer_class(6, return_sequences=True, dropout=0.0))(x)
        x = keras.layers.Bidirectional(layer_class(5))(x)
        m = keras.Model(tokens, keras.layers.Dense(2, activation="softmax")(x))
        m.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        return m

    rng = np.random.default_rng(0)
    ids = rng.integers(1, 50, size=(16, 12))
    for row, n in enumerate(rng.integers(1, 13, size=16)):
        ids[row, n:] = 0  # right padding, as the recipes batch
    labels = rng.integers(0, 2, size=16)
    keras.utils.set_random_seed(0)
    reference = model(keras.layers.LSTM)
    candidate = model(fused.LSTM)
    candidate.set_weights(reference.get_weights())
    for m in (reference, candidate):
        m.fit(ids, labels, batch_size=8, epochs=3, shuffle=False, verbose=0)
    for a, b in zip(reference.get_weights(), candidate.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-4)


def test_fused_layer_runs_the_fused_loop_and_can_be_switched_off(monkeypatch):
    layer = fused.LSTM(4)
    layer.build((2, 3, 5))
    assert layer.own_loop_applies()
    assert not fused.LSTM(4, recurrent_dropout=0.1).own_loop_applies()
    assert not fused.LSTM(4, activation="relu").own_loop_applies()
    assert not fused.LSTM(4, use_cudnn=False).own_loop_applies()
    monkeypatch.setenv("LSTM_RECIPES_FUSED", "0")
    assert not layer.own_loop_applies()

    # the traced graph differs: only the fused loop has a hand-written gradient
    def op_types(ok):
        monkeypatch.setenv("LSTM_RECIPES_FUSED", "1" if ok else "0")
        fn = tf.function(lambda x: layer(x)).get_concrete_function(tf.TensorSpec([2, 3, 5]))
        return {op.type for op in fn.graph.get_operations()}

    assert "IdentityN" in op_types(True)  # tf.custom_gradient's marker
    assert "IdentityN" not in op_types(False)


def test_fused_layer_serializes_and_counts_as_an_lstm_for_the_fast_path_guard():
    layer = fused.LSTM(3, return_sequences=True, name="enc")
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(clone) is fused.LSTM and clone.units == 3 and clone.return_sequences
    assert fused.LSTM(3, parallel_loops=2).get_config()["parallel_loops"] == 2
    model = keras.Sequential([keras.Input((4, 2)), keras.layers.Bidirectional(layer)])
    assert fastpath.slow_layers(model) == []
    slow = keras.Sequential([keras.Input((4, 2)), fused.LSTM(3, recurrent_dropout=0.2)])
    assert [reason for _, reason in fastpath.slow_layers(slow)] == [
        "recurrent_dropout=0.2 (cuDNN needs 0)"
    ]


def test_fused_layer_drops_the_same_input_features_at_every_step():
    """Input dropout as Keras's LSTM applies it: one mask per sequence, not one per step."""
    layer = fused.LSTM(4, dropout=0.5, return_sequences=True, seed=3)
    x = tf.constant(np.random.default_rng(0).normal(size=(3, 6, 8)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x, training=True)
    dropped = tape.gradient(out, x).numpy() == 0  # a dropped feature gets no gradient
    assert dropped.any() and not dropped.all()
    assert (dropped == dropped[:, :1]).all()  # the same features at every step
    np.testing.assert_allclose(layer(x, training=False), layer(x, training=False))


def test_fused_loops_cope_with_a_batch_smaller_than_their_number():
    """A replica's batch of 1 or 2 split 3 ways (empty slices): same result as Keras's loop."""
    rng = np.random.default_rng(2)
    reference, candidate = keras.layers.LSTM(4), fused.LSTM(4, parallel_loops=3)
    for batch in (1, 2):
        x = tf.constant(rng.normal(size=(batch, 5, 3)), tf.float32)
        if not reference.built:
            reference.build(x.shape)
            candidate.build(x.shape)
            candidate.set_weights(reference.get_weights())
        results = []
        for layer in (reference, candidate):
            with tf.GradientTape() as tape:
                out = layer(x, training=True)
            results.append([out, *tape.gradient(out, layer.trainable_weights)])
        for a, b in zip(*results):
            np.testing.assert_allclose(b.numpy(), a.numpy(), atol=2e-5)


def test_fused_loop_takes_the_empty_batch_tf_distribute_feeds_a_worker_out_of_data():
    """A [0, 0, F] batch (no examples, no steps) in a traced step: empty outputs, zero grads."""
    layer = fused.LSTM(4, return_sequences=True)
    layer.build((None, None, 3))

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32)])
    def step(x):
        with tf.GradientTape() as tape:
            out = layer(x, training=True)
            loss = tf.reduce_sum(out)
        return out, tape.gradient(loss, layer.trainable_weights)

    out, grads = step(tf.zeros([0, 0, 3]))
    assert out.shape == (0, 0, 4)
    assert all(float(tf.reduce_sum(tf.abs(g))) == 0.0 for g in grads)


def test_bfloat16_products_train_near_float32_and_leave_inference_exact():
    rng = np.random.default_rng(2)
    kwargs = dict(return_sequences=True, return_state=True)
    plain = fused.LSTM(U, **kwargs)
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = fused.LSTM(U, **kwargs)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert plain.products is None and mixed.products == tf.bfloat16
    assert mixed.compute_dtype == "float32"  # the recurrence and its state stay float32
    x, h0, c0 = _same_weights_and_inputs(plain, mixed, rng)
    mask = tf.constant(MASKS["right"])
    out_weights = tf.constant(rng.normal(size=(B, T, U)), tf.float32)
    expected = _outputs_and_gradients(plain, x, mask, h0, c0, out_weights)
    found = _outputs_and_gradients(mixed, x, mask, h0, c0, out_weights)
    names = ["outputs", "h", "c", "d_inputs", "d_h0", "d_c0", "d_kernel", "d_recurrent", "d_bias"]
    for name, a, b in zip(names, expected, found):
        a, b = a.numpy(), b.numpy()
        # bfloat16 keeps 8 significant bits: errors of about 2 ** -8 of each value's scale
        scale = np.abs(a).max() + 1e-6
        assert np.abs(b - a).max() / scale < 0.03, name
    assert not np.array_equal(expected[0].numpy(), found[0].numpy())  # bfloat16 did run
    # Evaluation, decoding and export run the float32 products: the very numbers of float32.
    np.testing.assert_array_equal(
        mixed(x, mask=mask, initial_state=[h0, c0], training=False)[0].numpy(),
        plain(x, mask=mask, initial_state=[h0, c0], training=False)[0].numpy(),
    )
