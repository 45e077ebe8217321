"""Step-wise generation as graph functions, used in evaluation and inside exported models alike.

A *step function* maps ``(tokens[B] int32, state) -> (logits[B, V], state)``, where ``state`` is
any nested structure of tensors with fixed shapes (e.g. ``[[h, c], ...]`` per LSTM layer). The
loops here are ``tf.while_loop``s, so they trace into a SavedModel signature unchanged.
"""

from __future__ import annotations

import tensorflow as tf


def pick(logits, temperature, top_k, seed, step):
    """Next tokens from ``logits``: sampled at ``temperature`` among the ``top_k`` best, or the
    argmax when ``temperature <= 0``.

    Sampling is stateless (``seed`` and ``step`` fix the draw), so the same seed gives the same
    text in-process and in an exported model.

    Args:
        logits: (batch, vocab) unnormalized log-probabilities.
        temperature: scalar float; <= 0 means greedy.
        top_k: scalar int; <= 0 means the whole vocabulary.
        seed: scalar int32.
        step: scalar int32, the position being generated.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    vocab = tf.shape(logits)[-1]
    k = tf.where(top_k > 0, tf.minimum(top_k, vocab), vocab)
    kth_best = tf.math.top_k(logits, k).values[:, -1:]
    logits = tf.where(logits < kth_best, tf.fill(tf.shape(logits), -1e9), logits)
    greedy = tf.argmax(logits, -1, output_type=tf.int32)
    scaled = logits / tf.maximum(tf.cast(temperature, tf.float32), 1e-6)
    sampled = tf.random.stateless_categorical(
        scaled,
        1,
        seed=tf.stack([tf.cast(seed, tf.int32), tf.cast(step, tf.int32)]),
        dtype=tf.int32,
    )[:, 0]
    return tf.where(temperature > 0, sampled, greedy)


def sample(step_fn, logits, state, num_steps, temperature=1.0, top_k=0, seed=0):
    """Generate ``num_steps`` tokens, starting from the logits of the last conditioning step.

    Args:
        step_fn: ``(tokens[B], state) -> (logits[B, V], state)``.
        logits: (batch, vocab) logits after the prompt.
        state: the step function's state after the prompt.
        num_steps: scalar int32, tokens to generate (0 allowed).
        temperature: see ``pick``.
        top_k: see ``pick``.
        seed: see ``pick``.

    Returns:
        (batch, num_steps) int32 tokens.
    """
    temperature = tf.convert_to_tensor(temperature, tf.float32)
    top_k = tf.convert_to_tensor(top_k, tf.int32)
    seed = tf.convert_to_tensor(seed, tf.int32)
    num_steps = tf.convert_to_tensor(num_steps, tf.int32)
    tokens = tf.TensorArray(tf.int32, size=num_steps)

    def body(i, logits, state, tokens):
        token = pick(logits, temperature, top_k, seed, i)
        tokens = tokens.write(i, token)
        logits, state = step_fn(token, state)
        return i + 1, logits, state, tokens

    _, _, _, tokens = tf.while_loop(
        lambda i, *_: i < num_steps, body, (tf.constant(0), logits, state, tokens)
    )
    # TensorArray.stack of size 0 has unknown batch size; reshape keeps (batch, 0) well-formed.
    return tf.reshape(tf.transpose(tokens.stack()), [tf.shape(logits)[0], num_steps])
