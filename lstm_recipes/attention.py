"""Attention layers of the encoder-decoder recipes: Luong/Bahdanau scores and an LSTM decoder.

``AttentionDecoder`` runs teacher-forced over whole targets in training (so its LSTM stays on
the fast kernel) and one step at a time in search (``seq2seq.AttentionSearch``).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers, ops

from lstm_recipes import cells
from lstm_recipes.blocks import StackedLSTM


@keras.saving.register_keras_serializable(package="lstm_recipes")
class Attention(layers.Layer):
    """Attention of decoder outputs (queries) over an encoder memory, with padding masked out.

    Args:
        kind: ``dot`` (Luong: ``q . m``; query and memory widths must match), ``general``
            (Luong: ``q W m``) or ``additive`` (Bahdanau: ``v . tanh(W q + U m)``).
        units: width of the additive score's hidden layer (``additive`` only; default: the
            query width).
        scale: divide ``dot``/``general`` scores by sqrt(width), as in scaled dot-product
            attention, so the softmax does not saturate onto one source step early in training.
    """

    KINDS = ("dot", "general", "additive")

    def __init__(
        self, kind: str = "general", units: int | None = None, scale: bool = True, **kwargs
    ):
        super().__init__(**kwargs)
        if kind not in self.KINDS:
            raise ValueError(f"expected attention in {self.KINDS}, got {kind!r}")
        self.kind, self.units, self.scale = kind, units, scale
        # The memory arrives masked; the mask is taken as the explicit memory_mask argument.
        self.supports_masking = True

    def build(self, query_shape, memory_shape):
        query_dim, memory_dim = query_shape[-1], memory_shape[-1]
        if self.kind == "dot" and query_dim != memory_dim:
            raise ValueError(
                f"dot attention needs equal query and memory widths, got {query_dim} and "
                f"{memory_dim}; use general or additive attention"
            )
        if self.kind == "general":
            self.memory_proj = layers.Dense(query_dim, use_bias=False, name="memory_proj")
            self.memory_proj.build(memory_shape)
        elif self.kind == "additive":
            units = self.units or query_dim
            self.memory_proj = layers.Dense(units, use_bias=False, name="memory_proj")
            self.memory_proj.build(memory_shape)
            self.query_proj = layers.Dense(units, name="query_proj")
            self.query_proj.build(query_shape)
            self.score_proj = layers.Dense(1, use_bias=False, name="score_proj")
            self.score_proj.build((*query_shape[:-1], units))

    def keys(self, memory):
        """What the scores compare queries with, computed once per source (not per step)."""
        return memory if self.kind == "dot" else self.memory_proj(memory)

    def call(self, query, memory, memory_mask=None, keys=None):
        """(context (batch, T, memory width), weights (batch, T, S)) for queries (batch, T, d)."""
        keys = self.keys(memory) if keys is None else keys
        if self.kind == "additive":
            hidden = ops.tanh(ops.expand_dims(self.query_proj(query), 2) + ops.expand_dims(keys, 1))
            scores = ops.squeeze(self.score_proj(hidden), -1)
        else:
            scores = ops.einsum("btd,bsd->bts", query, keys)
            if self.scale:
                scores = scores / ops.sqrt(ops.cast(ops.shape(keys)[-1], scores.dtype))
        if memory_mask is not None:
            keep = ops.expand_dims(ops.cast(memory_mask, "bool"), 1)
            scores = ops.where(keep, scores, ops.cast(-1e9, scores.dtype))
        weights = ops.softmax(scores, axis=-1)
        return ops.einsum("bts,bsd->btd", weights, memory), weights

    def compute_mask(self, query, memory, memory_mask=None, keys=None, mask=None):
        return None

    def compute_output_spec(self, query, memory, memory_mask=None, keys=None):
        batch, steps = query.shape[0], query.shape[1]
        return (
            keras.KerasTensor((batch, steps, memory.shape[-1]), dtype=query.dtype),
            keras.KerasTensor((batch, steps, memory.shape[1]), dtype=query.dtype),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "kind": self.kind,
            "units": self.units,
            "scale": self.scale,
        }


@keras.saving.register_keras_serializable(package="lstm_recipes")
class AttentionDecoder(layers.Layer):
    """An LSTM decoder with attention after the LSTM (Luong et al. 2015), step-able for search.

    target embedding -> stacked unidirectional LSTM (the fast kernel: no input feeding) ->
    attention over the memory -> ``W [h; context]`` (Luong's attentional vector; ``tanh`` of it
    as an option) -> dropout -> vocabulary logits.

    ``call([target_in, memory, memory_mask, h, c])`` runs teacher-forced over whole target
    sequences (every layer starts from ``[h, c]``); ``decode`` also returns the attention weights
    and final states; ``step`` feeds one token per row, for ``decoding.greedy``/``beam_search``.

    Args:
        vocab_size: target vocabulary size (id 0 pads).
        embedding_dim: target embedding width.
        units: LSTM units (and width of the attentional vector).
        num_layers: stacked LSTM layers.
        attention: ``dot``, ``general`` or ``additive`` (see ``Attention``).
        dropout: dropout on embeddings, between layers and before the logits.
        cell: the recurrent cell (``cells.CELLS``).
        attentional_activation: ``linear`` (default) or ``tanh`` (Luong et al.'s equation 5).
            Measured on Tatoeba spa-eng (12k-word vocabularies): with ``tanh``, Adam drove 99%
            of the attentional units into saturation within 100 steps and the model sat at
            unigram accuracy for hundreds to thousands of steps; ``linear`` learned at once.
        embedding: an ``Embedding`` layer to use (and share, e.g. with the encoder over one
            vocabulary) instead of a new one; its width must be ``embedding_dim``.
        copy: a pointer-generator (See et al. 2017): a gate mixes the vocabulary distribution
            with the attention weights scattered onto the source's own ids, so a source piece
            can be copied even where the vocabulary layer gives it no weight. The source and
            target must share one vocabulary; the decoder then takes the source ids as a sixth
            input and gives log-probabilities where it gave logits (the same softmax).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        units: int,
        num_layers: int = 1,
        attention: str = "general",
        dropout: float = 0.0,
        cell: str = "lstm",
        attentional_activation: str = "linear",
        embedding: layers.Layer | None = None,
        copy: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if attentional_activation not in ("linear", "tanh"):
            raise ValueError(
                f"expected attentional_activation linear or tanh, got {attentional_activation!r}"
            )
        self.attentional_activation = attentional_activation
        self.vocab_size, self.embedding_dim, self.units = vocab_size, embedding_dim, units
        self.num_layers, self.attention_kind, self.dropout_rate = num_layers, attention, dropout
        self.embedding = embedding or layers.Embedding(vocab_size, embedding_dim, name="embedding")
        self.cell = cell
        self.lstm = StackedLSTM(
            units, num_layers, bidirectional=False, dropout=dropout, cell=cell, name="lstm"
        )
        self.attention = Attention(attention, name="attention")
        self.combine = layers.Dense(units, activation=attentional_activation, name="attentional")
        self.drop = layers.Dropout(dropout)
        self.logits = layers.Dense(vocab_size, name="logits")
        self.copy = copy
        if copy:
            self.copy_gate = layers.Dense(1, name="copy_gate")
        # The memory arrives masked; the masks used are the explicit memory_mask and target ids.
        self.supports_masking = True

    def build(self, input_shapes):
        target_shape, memory_shape = input_shapes[0], input_shapes[1]
        if not self.embedding.built:  # a shared one is built by its first caller
            self.embedding.build(target_shape)
        self.lstm.build((*target_shape, self.embedding_dim))
        query_shape = (*target_shape, self.units)
        self.attention.build(query_shape, memory_shape)
        self.combine.build((*target_shape, self.units + memory_shape[-1]))
        if self.copy:
            self.copy_gate.build((*target_shape, self.units + memory_shape[-1]))
        self.logits.build(query_shape)
        self.built = True

    def decode(self, target_in, memory, memory_mask, states, training=None, keys=None, source=None):
        """(logits, attention weights, final per-layer states) for teacher-forced targets.

        Args:
            target_in: (batch, T) int target ids, 0 padding.
            memory: (batch, S, d) encoder outputs.
            memory_mask: (batch, S) True on real source steps.
            states: ``[[h, c], ...]``, one pair per layer.
            training: dropout on or off.
            keys: ``attention.keys(memory)`` when already computed.
            source: (batch, S) the source ids, with ``copy``.
        """
        mask = ops.not_equal(target_in, 0)
        x = self.drop(self.embedding(target_in), training=training)
        out, states = self.lstm.run(x, mask=mask, training=training, initial_states=states)
        context, weights = self.attention(out, memory, memory_mask, keys=keys)
        joined = ops.concatenate([out, context], -1)
        logits = self.logits(self.drop(self.combine(joined), training=training))
        if self.copy:
            logits = self._mix(logits, self.copy_gate(joined), weights, source)
        return logits, weights, states

    def _mix(self, logits, gate, weights, source):
        # log(g p_vocab + (1 - g) p_copy). p_copy is zero but at the source's ids, so the dense
        # part is log g + log p_vocab and only those S ids get a correction: their summed
        # attention (equal ids pooled, padding never) mixed in, added once per distinct id.
        # Three passes over (batch, T, V) where a dense mixture took eight: the vocabulary is
        # most of a training step's memory traffic. p_copy is floored at 1e-30 before its log
        # so that an id with no weight left has a finite gradient.
        logits, gate, weights = (tf.cast(x, tf.float32) for x in (logits, gate, weights))
        source = tf.cast(source, tf.int32)
        real = tf.not_equal(source, 0)
        same = tf.equal(source[:, :, None], source[:, None, :]) & real[:, None, :]
        # (batch, T, S): at each source position, the weight of every position with its id.
        pooled = tf.einsum("bts,bus->btu", weights, tf.cast(same, tf.float32))
        positions = tf.range(tf.shape(source)[1])
        before = positions[:, None] < positions[None, :]
        repeated = tf.reduce_any(same & before, 1)  # its id is at an earlier position too
        first = tf.cast(real & ~repeated, tf.float32)[:, None]
        dense = tf.nn.log_softmax(logits) + tf.math.log_sigmoid(gate)
        ids = tf.broadcast_to(source[:, None], tf.shape(weights))
        generated = tf.gather(dense, ids, batch_dims=2)
        copied = tf.math.log(tf.maximum(pooled, 1e-30)) + tf.math.log_sigmoid(-gate)
        correction = (tf.experimental.numpy.logaddexp(generated, copied) - generated) * first
        shape = tf.shape(weights)
        at = tf.stack(
            [
                tf.broadcast_to(tf.range(shape[0])[:, None, None], shape),
                tf.broadcast_to(tf.range(shape[1])[None, :, None], shape),
                ids,
            ],
            -1,
        )
        return tf.tensor_scatter_nd_add(dense, at, correction)

    def start_states(self, h, c):
        """Every layer's complete initial state from one ``[h, c]`` (e.g. an encoder's bridge);
        a fixed structure, as search loops need."""
        return [cells.full_states(self.cell, [h, c]) for _ in range(self.num_layers)]

    def call(self, inputs, training=None):
        target_in, memory, memory_mask, h, c, *source = inputs
        states = self.start_states(h, c)
        source = source[0] if source else None
        return self.decode(target_in, memory, memory_mask, states, training, source=source)[0]

    def step(self, tokens, states, memory, keys, memory_mask, source=None):
        """(logits (batch, V), new states) for one input token per row.

        Args:
            tokens: (batch,) int token ids.
            states: ``[[h, c], ...]``.
            memory, keys, memory_mask: from the encoder (``keys = attention.keys(memory)``).
            source: (batch, S) source ids, with ``copy``.
        """
        features, states = self.step_features(tokens, states, memory, keys, memory_mask, source)
        return self.project(features), states

    def step_features(
        self, tokens, states, memory, keys, memory_mask, source=None, lstm_weights=None
    ):
        """(attentional vectors (batch, 1, units), new states): ``step`` before the
        vocabulary projection, which a beam search skips for hypotheses that have ended.
        With ``copy`` a feature row also holds what ``project`` mixes in: the gate's logit,
        the attention weights and the source ids (as float32: exact below 2**24).
        ``lstm_weights``: ``lstm.step_weights(...)``, made once before a search loop."""
        # The stack's own step, not a sequence of one: a step loop per layer and token costs
        # as much as the LSTM's arithmetic at search batch sizes.
        out, states = self.lstm.step(self.embedding(tokens), states, lstm_weights)
        out = ops.expand_dims(out, 1)
        context, weights = self.attention(out, memory, memory_mask, keys=keys)
        joined = ops.concatenate([out, context], -1)
        features = self.combine(joined)
        if not self.copy:
            return features, states
        parts = [features, self.copy_gate(joined), weights, tf.cast(source, tf.float32)[:, None]]
        return tf.concat([tf.cast(x, tf.float32) for x in parts], -1), states

    def project(self, features, kernel=None):
        """(batch, V) logits (log-probabilities with ``copy``) of ``step_features``' rows.

        Args:
            features: ``step_features``' first output.
            kernel: the vocabulary layer's kernel cast to ``bfloat16`` (``bfloat16_kernel``)
                for a bfloat16 product, or None for the layer as it is.
        """
        if not self.copy:
            return self._vocabulary(features, kernel)[:, 0]
        units, width = self.units, (tf.shape(features)[-1] - self.units - 1) // 2
        attentional = tf.cast(features[..., :units], self.compute_dtype)
        gate, weights = features[..., units : units + 1], features[..., units + 1 : -width]
        source = tf.cast(features[:, 0, -width:], tf.int32)
        return self._mix(self._vocabulary(attentional, kernel), gate, weights, source)[:, 0]

    def bfloat16_kernel(self):
        """The vocabulary layer's kernel in bfloat16, cast once before a search loop."""
        return tf.cast(self.logits.kernel, tf.bfloat16)

    def _vocabulary(self, x, kernel):
        # (batch, 1, units) -> (batch, 1, V). The bfloat16 product rounds each logit to
        # bfloat16 (TensorFlow's CPU kernel has no float32 output for it); the bias and all
        # that follows stay float32.
        if kernel is None:
            return self.logits(x)
        product = tf.matmul(tf.cast(x[:, 0], tf.bfloat16), kernel)
        return (tf.cast(product, tf.float32) + tf.cast(self.logits.bias, tf.float32))[:, None]

    def compute_output_shape(self, input_shapes):
        return (*input_shapes[0], self.vocab_size)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "num_layers": self.num_layers,
            "attention": self.attention_kind,
            "dropout": self.dropout_rate,
            "cell": self.cell,
            "attentional_activation": self.attentional_activation,
            "copy": self.copy,
        }
