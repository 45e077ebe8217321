"""A language model's loss over a text read as one stream: the states carried from segment to
segment, and optionally dynamic evaluation (Krause et al., 2018, "Dynamic Evaluation of Neural
Sequence Models"): after scoring each segment the model takes one SGD step on it, so it adapts
to the text it is reading (its names, its style) without ever seeing a character before it
predicts it. The trained weights are restored afterwards.

Windows scored from a zero state (the recipe's ``nats_per_char``) pay for a cold start in every
window; a stream pays for it once. Both are honest held-out figures; they answer different
questions, so a run reports each under its own name.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np
import tensorflow as tf

from lstm_recipes import stepping


def stream_loss(
    config,
    layers: tuple,
    ids: np.ndarray,
    learning_rate: float = 0.0,
    decay: float = 0.0,
    segment: int = 50,
) -> dict:
    """Nats per character over ``ids`` predicted in order, the states carried throughout.

    Args:
        config: the recipe config (``cell``, ``layers``, ``units`` shape the states).
        layers: ``(embedding, stacked LSTM, logits)``: the model's layers, called in order.
        ids: the text's ids, one stream; every id after the first is predicted.
        learning_rate: 0 scores statically; above 0, one SGD step of this size on each segment's
            mean loss after scoring it (dynamic evaluation).
        decay: pulls the adapted weights back toward the trained ones by this share each step
            (Krause et al.'s prior; 0: none).
        segment: characters per segment: the truncation length of the adaptation's gradients.
    """
    if learning_rate < 0 or not 0 <= decay < 1 or segment < 1:
        raise ValueError(
            f"expected learning_rate >= 0, 0 <= decay < 1, segment >= 1; got "
            f"{learning_rate}, {decay}, {segment}"
        )
    embedding, lstm, logits = layers
    variables = [v for layer in layers for v in layer.trainable_variables]
    trained = [tf.identity(v) for v in variables]
    lr, keep = tf.constant(learning_rate, tf.float32), tf.constant(1.0 - decay, tf.float32)

    def nats_of(x, y, states):
        out, new = lstm.run(embedding(x), training=False, initial_states=states)
        nats = keras.losses.sparse_categorical_crossentropy(y, logits(out), from_logits=True)
        return tf.reduce_sum(nats), new

    @tf.function(autograph=False, reduce_retracing=True)
    def score(x, y, states):
        total, new = nats_of(x, y, states)
        return total, stepping.pack(new)

    @tf.function(autograph=False, reduce_retracing=True)
    def adapt(x, y, states):
        with tf.GradientTape() as tape:
            total, new = nats_of(x, y, states)
            mean = total / tf.cast(tf.size(y), tf.float32)
        grads = tape.gradient(mean, variables)
        for v, g, w in zip(variables, grads, trained):
            v.assign(w + keep * (v - w) - lr * tf.convert_to_tensor(g))
        return total, stepping.pack(new)

    step = adapt if learning_rate > 0 else score
    ids = np.asarray(ids, dtype="int32")
    states = stepping.zeros(config, 1)
    total, started, last_said = 0.0, time.time(), time.time()
    count = len(ids) - 1
    try:
        for start in range(0, count, segment):
            end = min(start + segment, count)
            x, y = ids[None, start:end], ids[None, start + 1 : end + 1]
            nats, packed = step(tf.constant(x), tf.constant(y), states)
            total += float(nats)
            states = stepping.unpack(packed, config)
            if time.time() - last_said > 30:
                print(f"  {end:,} of {count:,} characters: {total / end:.4f} nats/char", flush=True)
                last_said = time.time()
    finally:
        for v, w in zip(variables, trained):
            v.assign(w)
    nats = total / count
    return {
        "nats_per_char": nats,
        "bits_per_char": nats / math.log(2),
        "seconds": round(time.time() - started, 1),
    }


def static_and_dynamic(config, layers: tuple, ids: np.ndarray) -> dict:
    """The text read as one stream, statically and then adapting at ``config.dynamic_lr``
    (segments of ``config.seq_length``, the training windows' length).

    Args:
        config: the recipe config (``dynamic_lr``, ``seq_length`` and the states' shape).
        layers: ``(embedding, stacked LSTM, logits)``.
        ids: the text's ids.
    """
    print(f"reading the {len(ids):,}-character test text as one stream...", flush=True)
    # Without adaptation the segment length changes nothing but the speed.
    static = stream_loss(config, layers, ids, segment=1000)
    print(
        f"  {static['nats_per_char']:.4f} nats/char in {static['seconds']}s; now adapting "
        f"(dynamic evaluation, learning rate {config.dynamic_lr:g})...",
        flush=True,
    )
    adapted = stream_loss(config, layers, ids, config.dynamic_lr, segment=config.seq_length)
    print(f"  {adapted['nats_per_char']:.4f} nats/char in {adapted['seconds']}s", flush=True)
    return {
        "stream_nats_per_char": static["nats_per_char"],
        "dynamic_nats_per_char": adapted["nats_per_char"],
        "dynamic_bits_per_char": adapted["bits_per_char"],
    }
