"""A linear-chain CRF over per-step emissions: the layer, its loss, Viterbi and marginals.

A tagger's emissions arrive with a padding class at index 0 (as every tagger output here does);
the CRF runs over the real labels 1..C. ``viterbi`` and ``marginals`` are graph functions over
the real labels only, so they trace into an exported signature unchanged. Masks are True on
real steps, with padding last.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers, ops

_NEG = -1e9  # a score no allowed path can lose to; exp() of it is exactly 0 in float32


@keras.saving.register_keras_serializable(package="lstm_recipes")
class CRF(layers.Layer):
    """A linear-chain CRF's parameters over per-step emissions (Lafferty et al. 2001;
    BiLSTM-CRF: Huang et al. 2015, Lample et al. 2016).

    The layer passes its input (the emissions) through unchanged; ``loss`` is the negative
    log-likelihood of the gold label path with padding masked; ``viterbi`` and ``marginals``
    with ``transitions``, ``start`` and ``end`` give the best path and per-step probabilities.

    Args:
        num_labels: real labels (not counting the padding class).
    """

    def __init__(self, num_labels: int, **kwargs):
        super().__init__(**kwargs)
        self.num_labels = num_labels

    def build(self, input_shape):
        n = self.num_labels
        self.transitions = self.add_weight(shape=(n, n), initializer="zeros", name="transitions")
        self.start = self.add_weight(shape=(n,), initializer="zeros", name="start")
        self.end = self.add_weight(shape=(n,), initializer="zeros", name="end")
        self.built = True

    def call(self, emissions):
        return ops.copy(emissions)

    def compute_mask(self, inputs, mask=None):
        return None

    def loss(self, y_true, y_pred):
        """Mean negative log-likelihood per sequence; ``y_true`` 0 marks padding."""
        y_true = ops.cast(y_true, "int32")
        mask = ops.not_equal(y_true, 0)
        tags = ops.maximum(y_true - 1, 0)
        emissions = ops.cast(y_pred[..., 1:], "float32")
        maskf = ops.cast(mask, "float32")
        # Score of the gold path.
        emit = ops.take_along_axis(emissions, ops.expand_dims(tags, -1), axis=-1)[..., 0]
        gold = ops.sum(emit * maskf, axis=1)
        pair = ops.take(
            ops.reshape(self.transitions, (-1,)), tags[:, :-1] * self.num_labels + tags[:, 1:]
        )
        gold = gold + ops.sum(pair * maskf[:, 1:], axis=1)
        lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
        last = ops.take_along_axis(tags, ops.expand_dims(ops.maximum(lengths - 1, 0), 1), 1)
        gold = gold + ops.take(self.start, tags[:, 0]) + ops.take(self.end, last[:, 0])
        # Partition function by the forward algorithm (padding steps leave alpha unchanged).
        alpha = self.start + emissions[:, 0]
        steps = ops.shape(emissions)[1]

        def body(t, alpha):
            scores = ops.expand_dims(alpha, 2) + ops.expand_dims(self.transitions, 0)
            new = ops.logsumexp(scores, axis=1) + emissions[:, t]
            return t + 1, ops.where(ops.expand_dims(mask[:, t], 1), new, alpha)

        _, alpha = ops.while_loop(lambda t, a: t < steps, body, (1, alpha))
        log_z = ops.logsumexp(alpha + self.end, axis=1)
        return ops.mean(log_z - gold)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_labels": self.num_labels}


def _scores(emissions, allowed, start_allowed, transitions, start, end):
    """Emissions as float32 and the (pair, first, last) scores: learned plus hard limits."""
    emissions = tf.convert_to_tensor(emissions, tf.float32)
    n = tf.shape(emissions)[-1]
    pair = tf.zeros([n, n]) if allowed is None else tf.where(tf.constant(allowed), 0.0, _NEG)
    first = (
        tf.zeros([n]) if start_allowed is None else tf.where(tf.constant(start_allowed), 0.0, _NEG)
    )
    pair = pair if transitions is None else pair + tf.cast(transitions, tf.float32)
    first = first if start is None else first + tf.cast(start, tf.float32)
    last = tf.zeros([n]) if end is None else tf.cast(end, tf.float32)
    return emissions, pair, first, last


def viterbi(
    emissions, mask, allowed=None, start_allowed=None, transitions=None, start=None, end=None
):
    """The best label path under hard transition limits and learned scores, as a graph function.

    Args:
        emissions: (batch, steps, labels) per-step label scores (log-probabilities, or a CRF's
            emissions).
        mask: (batch, steps) True on real steps (padding comes last).
        allowed: optional (labels, labels) bool, allowed[i][j]: label j may follow label i.
        start_allowed: optional (labels,) bool, labels a sequence may start with.
        transitions: optional (labels, labels) learned transition scores (a CRF's).
        start: optional (labels,) learned scores of the first label.
        end: optional (labels,) learned scores of the last label.

    Returns:
        (batch, steps) int32 label ids maximizing the summed scores among allowed paths
        (padding steps repeat the last real label).
    """
    emissions, pair, first, last = _scores(
        emissions, allowed, start_allowed, transitions, start, end
    )
    first = emissions[:, 0] + first
    identity = tf.broadcast_to(tf.range(tf.shape(emissions)[-1]), tf.shape(first))

    def forward(carry, inputs):
        score, _ = carry
        emission, real = inputs
        candidates = score[:, :, tf.newaxis] + pair[tf.newaxis]
        best_prev = tf.argmax(candidates, axis=1, output_type=tf.int32)
        new = tf.reduce_max(candidates, axis=1) + emission
        keep = real[:, tf.newaxis]
        return tf.where(keep, new, score), tf.where(keep, best_prev, identity)

    rest = (tf.transpose(emissions[:, 1:], [1, 0, 2]), tf.transpose(mask[:, 1:]))
    scores, pointers = tf.scan(forward, rest, initializer=(first, identity))
    final = tf.concat([first[tf.newaxis], scores], 0)[-1] + last
    best_last = tf.argmax(final, axis=-1, output_type=tf.int32)

    def backward(label, pointer):
        return tf.gather(pointer, label, batch_dims=1)

    earlier = tf.scan(backward, pointers, initializer=best_last, reverse=True)
    return tf.transpose(tf.concat([earlier, best_last[tf.newaxis]], 0))


def marginals(
    emissions, mask, allowed=None, start_allowed=None, transitions=None, start=None, end=None
):
    """P(label at step t | whole sequence) under the CRF, by the forward-backward algorithm.

    The probabilities a CRF tagger should report: a softmax of the emissions alone ignores the
    learned transitions the Viterbi path depends on.

    Args:
        emissions: (batch, steps, labels) per-step label scores.
        mask: (batch, steps) True on real steps (padding comes last).
        allowed: optional (labels, labels) bool, allowed[i][j]: label j may follow label i.
        start_allowed: optional (labels,) bool, labels a sequence may start with.
        transitions: optional (labels, labels) learned transition scores.
        start: optional (labels,) learned scores of the first label.
        end: optional (labels,) learned scores of the last label.

    Returns:
        (batch, steps, labels) float32 marginals; each row sums to 1 (padding steps repeat the
        last real step's marginals).
    """
    emissions, pair, first, last = _scores(
        emissions, allowed, start_allowed, transitions, start, end
    )
    mask = tf.convert_to_tensor(mask, tf.bool)
    alpha0 = emissions[:, 0] + first

    def forward(alpha, inputs):
        emission, real = inputs
        new = tf.reduce_logsumexp(alpha[:, :, tf.newaxis] + pair[tf.newaxis], axis=1) + emission
        return tf.where(real[:, tf.newaxis], new, alpha)

    time_major = tf.transpose(emissions, [1, 0, 2])
    steps = tf.transpose(mask)
    alphas = tf.scan(forward, (time_major[1:], steps[1:]), initializer=alpha0)
    alphas = tf.concat([alpha0[tf.newaxis], alphas], 0)  # [T, B, C]

    # beta_t(i): log-sum of every continuation after step t given label i there; padding after
    # the last real step passes `end` down to it unchanged.
    beta_last = tf.broadcast_to(last, tf.shape(alpha0))

    def backward(beta, inputs):
        emission, real = inputs  # of step t + 1
        new = tf.reduce_logsumexp(pair[tf.newaxis] + (emission + beta)[:, tf.newaxis], axis=2)
        return tf.where(real[:, tf.newaxis], new, beta)

    betas = tf.scan(backward, (time_major[1:], steps[1:]), initializer=beta_last, reverse=True)
    betas = tf.concat([betas, beta_last[tf.newaxis]], 0)
    return tf.transpose(tf.nn.softmax(alphas + betas, axis=-1), [1, 0, 2])


def chunk_constraints(labels: list[str]):
    """Hard transitions of a chunk tag set: (allowed, start_allowed) for ``viterbi``, or None.

    IOB2 (``I-X`` only after ``B-X``/``I-X``) and BIOES (also: ``B``/``I`` must continue with
    ``I``/``E`` of the same type) are constrained; other tag sets (IOB1, POS tags) get None.

    Args:
        labels: the label names in id order.
    """
    parts = [(t.split("-", 1) + [""])[:2] if t != "O" else ["O", ""] for t in labels]
    prefixes = {p for p, _ in parts}
    if not prefixes & {"B", "I", "E", "S"} or not prefixes <= {"B", "I", "E", "S", "O"}:
        return None
    bioes = bool(prefixes & {"E", "S"})
    n = len(labels)
    allowed = [[True] * n for _ in range(n)]
    start = [True] * n
    for j, (pj, tj) in enumerate(parts):
        if pj in ("I", "E"):
            start[j] = False
        for i, (pi, ti) in enumerate(parts):
            inside = pi in ("B", "I")  # the chunk of i is still open
            if pj in ("I", "E"):
                allowed[i][j] = inside and ti == tj
            elif bioes and inside:
                allowed[i][j] = False
    return allowed, start


def follows_constraints(labels: list[str], sequences: list[list[str]]) -> bool:
    """Whether every tag sequence obeys the ``chunk_constraints`` of ``labels`` (False if none).

    IOB1 data (``I-X`` after ``O`` is legal there) breaks IOB2's rules: decode it unconstrained.

    Args:
        labels: the label names in id order.
        sequences: tags, one list per sequence.
    """
    constraints = chunk_constraints(labels)
    if constraints is None:
        return False
    allowed, start = constraints
    index = {name: i for i, name in enumerate(labels)}
    for tags in sequences:
        ids = [index[t] for t in tags]
        if ids and not start[ids[0]]:
            return False
        if not all(allowed[a][b] for a, b in zip(ids, ids[1:])):
            return False
    return True
