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


# A large finite negative: -inf would turn (-inf) - (-inf) into NaN in the score arithmetic.
_NEG = -1e9


def _gather_beams(value, parents, batch_size, beam_width):
    # value: (batch * beam, ...); parents: (batch, beam) beam indices to keep.
    flat = tf.reshape(parents + tf.range(batch_size)[:, tf.newaxis] * beam_width, [-1])
    return tf.gather(value, flat)


def _write(buffer, i, tokens):
    # buffer[:, ..., i] = tokens, as a graph op with a fixed buffer shape.
    hot = tf.one_hot(i, tf.shape(buffer)[-1], dtype=tf.int32)
    return buffer * (1 - hot) + tokens[..., tf.newaxis] * hot


def greedy(step_fn, state, constants, start_ids, end_id: int, max_length):
    """Greedy decoding: the likeliest token at every step, until ``end_id`` or ``max_length``.

    Args:
        step_fn: ``(tokens[B], state, constants) -> (logits[B, V], state)``.
        state: the decoder's initial state (any nest of tensors with batch first).
        constants: tensors the step reads but never changes (e.g. attention memory).
        start_ids: (batch,) int32, the first input token of every row.
        end_id: the token that ends a sentence.
        max_length: scalar int32, most tokens generated.

    Returns:
        (batch, steps) int32 tokens; a finished row repeats ``end_id`` (cut with ``until_end``).
    """
    return beam_search(step_fn, state, constants, start_ids, end_id, max_length, 1, 0.0)


def beam_search(
    step_fn,
    state,
    constants,
    start_ids,
    end_id: int,
    max_length,
    beam_width: int = 4,
    length_penalty: float = 0.6,
):
    """Beam search with the GNMT length penalty, as one graph loop.

    Every row keeps ``beam_width`` hypotheses; a finished hypothesis keeps its score and only
    extends with ``end_id``. The loop stops when all are finished or after ``max_length`` steps;
    the hypothesis with the best ``log_prob / ((5 + length) / 6) ** length_penalty`` wins. With
    ``beam_width=1`` this is exactly greedy decoding.

    Args:
        step_fn: ``(tokens[N], state, constants) -> (logits[N, V], state)``; it is called with
            ``N = batch * beam_width`` rows (each row's beams adjacent).
        state: the decoder's initial state for ``batch`` rows (a nest, batch first).
        constants: tensors read by the step, for ``batch`` rows; tiled once to the beams.
        start_ids: (batch,) int32 first tokens.
        end_id: the token that ends a sentence.
        max_length: scalar int32, most tokens generated.
        beam_width: hypotheses kept per row.
        length_penalty: alpha of the GNMT penalty (0: plain log-probability).

    Returns:
        (batch, steps) int32 tokens of the best hypothesis; finished rows repeat ``end_id``.
    """
    k = beam_width
    start_ids = tf.convert_to_tensor(start_ids, tf.int32)
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

    def body(i, tokens, state, scores, finished, lengths, seqs):
        logits, state = step_fn(tokens, state, constants)
        vocab = tf.shape(logits)[-1]
        log_probs = tf.reshape(tf.nn.log_softmax(tf.cast(logits, tf.float32)), [batch, k, vocab])
        # A finished hypothesis may only continue with end_id, at no cost.
        only_end = tf.where(tf.one_hot(end_id, vocab) > 0, 0.0, _NEG)
        log_probs = tf.where(finished[..., tf.newaxis], only_end, log_probs)
        total = tf.reshape(scores[..., tf.newaxis] + log_probs, [batch, k * vocab])
        scores, best = tf.math.top_k(total, k)
        parents, new = best // vocab, best % vocab
        state = tf.nest.map_structure(lambda s: _gather_beams(s, parents, batch, k), state)
        was_finished = tf.gather(finished, parents, batch_dims=1)
        lengths = tf.gather(lengths, parents, batch_dims=1) + tf.cast(~was_finished, tf.int32)
        finished = was_finished | tf.equal(new, end_id)
        seqs = _write(tf.gather(seqs, parents, batch_dims=1), i, new)
        return i + 1, tf.reshape(new, [-1]), state, scores, finished, lengths, seqs

    steps, _, _, scores, finished, lengths, seqs = tf.while_loop(
        lambda i, _t, _s, _sc, finished, *_: (i < max_length) & ~tf.reduce_all(finished),
        body,
        (tf.constant(0), tokens, state, scores, finished, lengths, seqs),
    )
    penalty = tf.pow((5.0 + tf.cast(lengths, tf.float32)) / 6.0, length_penalty)
    best = tf.argmax(scores / penalty, axis=-1, output_type=tf.int32)
    return tf.gather(seqs, best, batch_dims=1)[:, :steps]


def until_end(tokens, end_id: int):
    """A boolean mask of the tokens before the first ``end_id`` of each row.

    Args:
        tokens: (batch, steps) int tokens.
        end_id: the end token.
    """
    return tf.equal(tf.cumsum(tf.cast(tf.equal(tokens, end_id), tf.int32), axis=-1), 0)


def search_attention_decoder(
    decoder,
    states,
    memory,
    memory_mask,
    start_id: int,
    end_id: int,
    max_length,
    beam_width: int = 1,
    length_penalty: float = 0.6,
):
    """Greedy (``beam_width`` 1) or beam search through an ``attention.AttentionDecoder``.

    Returns (batch, steps) output ids, each row ending in ``end_id`` repeats.

    Args:
        decoder: the ``AttentionDecoder`` (its ``step`` and ``attention.keys`` are used).
        states: the decoder's start states (``decoder.start_states(h, c)``).
        memory: (batch, positions, width) what the decoder attends to.
        memory_mask: (batch, positions) True on real positions.
        start_id, end_id: the start and end marker ids.
        max_length: most output steps (an int or a scalar tensor).
        beam_width: 1 for greedy search.
        length_penalty: GNMT length-penalty alpha of the beam search.
    """
    keys = decoder.attention.keys(memory)

    def step(tokens, states, constants):
        return decoder.step(tokens, states, *constants)

    start = tf.fill([tf.shape(memory)[0]], start_id)
    constants = (memory, keys, memory_mask)
    if beam_width <= 1:
        return greedy(step, states, constants, start, end_id, max_length)
    return beam_search(
        step, states, constants, start, end_id, max_length, beam_width, length_penalty
    )


def output_words(words, out, start_id: int, end_id: int):
    """Ragged words of output ids: cut at the first ``end_id``, markers and padding removed.

    Args:
        words: (vocabulary,) string tensor indexed by id.
        out: (batch, steps) output ids.
        start_id, end_id: the markers.
    """
    keep = until_end(out, end_id) & (out != start_id) & (out != 0)
    return tf.ragged.boolean_mask(tf.gather(words, out), keep)
