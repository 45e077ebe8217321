"""The attention search as it was before issue #22, kept to compare speed and strings with.

Every beam of every row runs on every step until all rows have ended, the first step included,
and a step is a one-step sequence through the decoder's LSTM layers (``StackedLSTM.run``).
Only ``benchmarks/decoding.py`` uses it.
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops

from lstm_recipes import decoding
from lstm_recipes.seq2seq import END, START

_NEG = -1e9


def _step(decoder, tokens, states, memory, keys, memory_mask):
    x = decoder.embedding(ops.expand_dims(tokens, 1))
    out, states = decoder.lstm.run(x, training=False, initial_states=states)
    context, _ = decoder.attention(out, memory, memory_mask, keys=keys)
    logits = decoder.logits(decoder.combine(ops.concatenate([out, context], -1)))
    return logits[:, 0], states


def _beam_search(step_fn, state, constants, start_ids, end_id, max_length, k, length_penalty):
    batch = tf.shape(start_ids)[0]
    max_length = tf.maximum(tf.convert_to_tensor(max_length, tf.int32), 1)

    def tile(x):
        return tf.repeat(x, k, axis=0)

    state = tf.nest.map_structure(tile, state)
    constants = tf.nest.map_structure(tile, constants)
    tokens = tile(start_ids)
    scores = tf.tile(tf.constant([[0.0] + [_NEG] * (k - 1)]), [batch, 1])
    finished = tf.zeros([batch, k], tf.bool)
    lengths = tf.zeros([batch, k], tf.int32)
    seqs = tf.zeros([batch, k, max_length], tf.int32)

    def gather_beams(value, parents):
        flat = tf.reshape(parents + tf.range(batch)[:, tf.newaxis] * k, [-1])
        return tf.gather(value, flat)

    def write(buffer, i, new):
        hot = tf.one_hot(i, tf.shape(buffer)[-1], dtype=tf.int32)
        return buffer * (1 - hot) + new[..., tf.newaxis] * hot

    def body(i, tokens, state, scores, finished, lengths, seqs):
        logits, state = step_fn(tokens, state, constants)
        vocab = tf.shape(logits)[-1]
        log_probs = tf.reshape(tf.nn.log_softmax(tf.cast(logits, tf.float32)), [batch, k, vocab])
        only_end = tf.where(tf.one_hot(end_id, vocab) > 0, 0.0, _NEG)
        log_probs = tf.where(finished[..., tf.newaxis], only_end, log_probs)
        total = tf.reshape(scores[..., tf.newaxis] + log_probs, [batch, k * vocab])
        scores, best = tf.math.top_k(total, k)
        parents, new = best // vocab, best % vocab
        state = tf.nest.map_structure(lambda s: gather_beams(s, parents), state)
        was_finished = tf.gather(finished, parents, batch_dims=1)
        lengths = tf.gather(lengths, parents, batch_dims=1) + tf.cast(~was_finished, tf.int32)
        finished = was_finished | tf.equal(new, end_id)
        seqs = write(tf.gather(seqs, parents, batch_dims=1), i, new)
        return i + 1, tf.reshape(new, [-1]), state, scores, finished, lengths, seqs

    steps, _, _, scores, finished, lengths, seqs = tf.while_loop(
        lambda i, _t, _s, _sc, finished, *_: (i < max_length) & ~tf.reduce_all(finished),
        body,
        (tf.constant(0), tokens, state, scores, finished, lengths, seqs),
    )
    penalty = tf.pow((5.0 + tf.cast(lengths, tf.float32)) / 6.0, length_penalty)
    best = tf.argmax(scores / penalty, axis=-1, output_type=tf.int32)
    return tf.gather(seqs, best, batch_dims=1)[:, :steps]


def reference_search(search, inputs, beam_width: int):
    """(batch, steps) output ids of ``search`` (a ``seq2seq.AttentionSearch``), the old way."""
    memory, mask, states = search.start(inputs)
    max_length = search._max_length
    if callable(max_length):
        max_length = max_length(mask)
    decoder = search.decoder
    keys = decoder.attention.keys(memory)

    def step(tokens, states, constants):
        return _step(decoder, tokens, states, *constants)

    start = tf.fill([tf.shape(memory)[0]], START)
    return _beam_search(
        step, states, (memory, keys, mask), start, END, max_length, beam_width,
        search.length_penalty,
    )  # fmt: skip


__all__ = ["reference_search", "decoding"]
