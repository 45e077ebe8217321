"""Model building blocks shared by the recipes: stacked LSTM encoders and masked pooling.

Every LSTM here is ``fused.LSTM`` (Keras's LSTM layer, with a fused step loop on a CPU) with
default activations, ``recurrent_dropout=0`` and ``unroll=False`` unless a caller asks otherwise,
so it runs on cuDNN when a GPU is visible; inputs are right-padded and masked.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from lstm_recipes import cells, fused


@keras.saving.register_keras_serializable(package="lstm_recipes")
class StackedLSTM(layers.Layer):
    """A stack of (bi)LSTM layers with dropout between them and optional residual connections.

    Args:
        units: LSTM units per direction.
        num_layers: number of stacked LSTM layers.
        bidirectional: wrap each LSTM in ``Bidirectional`` (outputs concatenated).
        dropout: dropout rate on the outputs of each layer (not recurrent; keeps cuDNN).
        residual: add each layer's input to its output from the second layer on.
        return_sequences: return every step of the last layer (masked) instead of its final output.
        return_state: also return the final ``[h, c]`` state of the last layer (both directions'
            states concatenated when bidirectional), e.g. to start a decoder.
        recurrent_dropout: dropout on the recurrent state; leaves the fast kernel (training warns:
            ``fastpath.check_model``).
        stateful: keep each layer's final state as the next batch's initial state (truncated
            backpropagation over consecutive windows; needs a fixed batch size).
        cell: the recurrent cell, a name from ``cells.CELLS`` (default ``lstm``: Keras's LSTM).

    ``call(..., initial_states=[[h, c], ...])`` starts each layer from given states, and
    ``run(x, initial_states)`` also returns every layer's final states: samplers and decoders
    feed one step at a time through the same layers (unidirectional stacks only).
    """

    def __init__(
        self,
        units: int,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        residual: bool = False,
        return_sequences: bool = True,
        return_state: bool = False,
        recurrent_dropout: float = 0.0,
        stateful: bool = False,
        cell: str = "lstm",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"expected num_layers >= 1, got {num_layers}")
        self.cell = cells.check_cell(cell)
        self.units = units
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout_rate = dropout
        self.residual = residual
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.recurrent_dropout = recurrent_dropout
        self.stateful = stateful
        self.supports_masking = True
        self.rnns = []
        for i in range(num_layers):
            last = i == num_layers - 1
            rnn = cells.recurrent_layer(
                self.cell,
                units,
                return_sequences=return_sequences or not last,
                # Unidirectional layers always hand back their states, for step-wise callers.
                return_state=not bidirectional or (return_state and last),
                recurrent_dropout=recurrent_dropout,
                stateful=stateful,
                name=f"lstm_{i}",
                # a BiLSTM's two directions already keep two cores busy
                parallel_loops=1 if bidirectional else 2,
            )
            if bidirectional:
                rnn = layers.Bidirectional(rnn, name=f"bilstm_{i}")
            self.rnns.append(rnn)
        self.drop = layers.Dropout(dropout)

    def run(self, inputs, mask=None, training=None, initial_state=None, initial_states=None):
        """(outputs of the last layer, [[h, c] of each layer]).

        Args:
            inputs: (batch, time, features).
            mask: (batch, time) booleans, True on real steps.
            training: dropout on or off.
            initial_state: ``[h, c]`` for the first layer only (e.g. from an encoder).
            initial_states: ``[h, c]`` for every layer (step-wise decoding), or the complete
                states ``run`` returned (``cells.num_states`` tensors per layer).
        """
        x = inputs
        all_states = []
        for i, rnn in enumerate(self.rnns):
            kwargs = {}
            if initial_states is not None:
                kwargs["initial_state"] = cells.full_states(self.cell, initial_states[i])
            elif i == 0 and initial_state is not None:
                kwargs["initial_state"] = cells.full_states(self.cell, initial_state)
            out = rnn(x, mask=mask, training=training, **kwargs)
            states = None
            if isinstance(out, (list, tuple)):
                out, *states = out
            all_states.append(states)
            if self.adds_residual(i):
                out = out + x
            x = self.drop(out, training=training)
        return x, all_states

    def step(self, inputs, states: list, weights: list | None = None) -> tuple:
        """(output of the last layer, [states of each layer]) for one step of inference:
        what ``run`` gives for a sequence of one step, without a step loop per layer.

        Args:
            inputs: (batch, features), one step.
            states: every layer's states, as ``run`` takes them in ``initial_states``.
            weights: ``step_weights(inputs.dtype)``, made once before a loop of steps.
        """
        if self.bidirectional:
            raise ValueError("a bidirectional stack has no step; it reads whole sequences")
        x = inputs
        all_states = []
        weights = weights or [None] * len(self.rnns)
        for i, rnn in enumerate(self.rnns):
            given = cells.full_states(self.cell, states[i])
            if isinstance(rnn, fused.LSTM):
                out, new = rnn.step(x, given, weights[i])
            else:
                out, new = rnn.cell(x, given, training=False)
                new = list(new) if isinstance(new, (list, tuple)) else [new]
            all_states.append(new)
            x = out + x if self.adds_residual(i) else out
        return x, all_states

    def step_weights(self, dtype) -> list:
        """Each layer's ``fused.LSTM.step_weights`` (None for other layers), for ``step``.

        Args:
            dtype: the inputs' dtype.
        """
        return [r.step_weights(dtype) if isinstance(r, fused.LSTM) else None for r in self.rnns]

    def adds_residual(self, i: int) -> bool:
        """Whether layer ``i``'s input is added to its output (``inspect`` retraces the stack)."""
        last = i == self.num_layers - 1
        return self.residual and i > 0 and (not last or self.return_sequences)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for rnn in self.rnns:
            rnn.build(shape)
            shape = (*shape[:-1], self.units * (2 if self.bidirectional else 1))
        self.built = True

    def reset_states(self):
        """Zero the carried states of a stateful stack."""
        for rnn in self.rnns:
            rnn.reset_states()

    def call(self, inputs, mask=None, training=None, initial_state=None, initial_states=None):
        x, all_states = self.run(inputs, mask, training, initial_state, initial_states)
        if not self.return_state:
            return x
        states = all_states[-1]
        n = cells.num_states(self.cell)
        if self.bidirectional:
            # Bidirectional returns the forward then the backward states; a decoder wants one h
            # and one c.
            states = [ops.concatenate([a, b], -1) for a, b in zip(states[:n], states[n:])]
        # Callers get [h, c] whatever the cell: c is h for cells without a cell state.
        return [x, states[0], states[1] if n > 1 else states[0]]

    def compute_mask(self, inputs, mask=None):
        if not self.return_sequences:
            return None
        return [mask, None, None] if self.return_state else mask

    def compute_output_shape(self, input_shape):
        width = self.units * (2 if self.bidirectional else 1)
        seq = (
            (input_shape[0], input_shape[1], width)
            if self.return_sequences
            else (input_shape[0], width)
        )
        if self.return_state:
            return [seq, (input_shape[0], width), (input_shape[0], width)]
        return seq

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "dropout": self.dropout_rate,
            "residual": self.residual,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "recurrent_dropout": self.recurrent_dropout,
            "stateful": self.stateful,
            "cell": self.cell,
        }


@keras.saving.register_keras_serializable(package="lstm_recipes")
class MaskedPooling(layers.Layer):
    """Pool a masked sequence over time: ``max``, ``mean`` or both concatenated (``max_mean``).

    Padding steps never count: they are excluded from the max and the mean.

    Args:
        mode: ``max``, ``mean`` or ``max_mean``.
    """

    MODES = ("max", "mean", "max_mean")

    def __init__(self, mode: str = "max_mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"expected pooling mode in {self.MODES}, got {mode!r}")
        self.mode = mode
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        m = ops.expand_dims(ops.cast(mask, inputs.dtype), -1)
        count = ops.maximum(ops.sum(m, axis=1), 1.0)
        mean = ops.sum(inputs * m, axis=1) / count
        # An all-padding row (empty text) gets 0 rather than -inf.
        maxed = ops.max(ops.where(m > 0, inputs, -1e9), axis=1)
        maxed = ops.where(ops.sum(m, axis=1) > 0, maxed, 0.0)
        if self.mode == "max":
            return maxed
        if self.mode == "mean":
            return mean
        return ops.concatenate([maxed, mean], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        width = input_shape[-1] * (2 if self.mode == "max_mean" else 1)
        return (input_shape[0], width)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="lstm_recipes")
class TokenDropout(layers.Layer):
    """During training, replace each real token id with the out-of-vocabulary id at ``rate``.

    Word dropout: the model cannot lean on any single word (a name, a title) and learns from
    the rest of the text. Padding (id 0) is never touched, so masks are unchanged.

    Args:
        rate: probability of replacing a token.
        oov_id: the id to replace it with.
        seed: seed of the layer's random draws.
    """

    def __init__(self, rate: float, oov_id: int = 1, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.oov_id, self.seed = rate, oov_id, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, ids, training=None):
        if not training or not self.rate:
            return ids
        drop = keras.random.uniform(ops.shape(ids), seed=self.seed_generator) < self.rate
        return ops.where(ops.logical_and(drop, ids > 0), ops.cast(self.oov_id, ids.dtype), ids)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "oov_id": self.oov_id, "seed": self.seed}


@keras.saving.register_keras_serializable(package="lstm_recipes")
class CharEncoder(layers.Layer):
    """One feature vector per word from its characters: a CNN with max pooling over the
    characters (Ma & Hovy 2016) or the final states of a BiLSTM (Lample et al. 2016).

    Input (batch, words, chars) int ids, 0 padding; output (batch, words, units) for ``cnn``,
    (batch, words, 2 * units) for ``lstm``. A padding word gets zeros (cnn).

    Args:
        vocab_size: character vocabulary size (0 pads).
        dim: character embedding width.
        units: CNN filters, or LSTM units per direction.
        kind: ``cnn`` or ``lstm``.
        kernel_size: CNN window in characters.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        units: int,
        kind: str = "cnn",
        kernel_size: int = 3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in ("cnn", "lstm"):
            raise ValueError(f"expected a char encoder in ('cnn', 'lstm'), got {kind!r}")
        self.vocab_size, self.dim, self.units = vocab_size, dim, units
        self.kind, self.kernel_size = kind, kernel_size
        self.embedding = layers.Embedding(vocab_size, dim, name="char_embedding")
        if kind == "cnn":
            self.encoder = layers.Conv1D(
                units, kernel_size, padding="same", activation="relu", name="char_cnn"
            )
        else:
            self.encoder = layers.Bidirectional(fused.LSTM(units), name="char_lstm")

    def build(self, input_shape):
        self.embedding.build((None, input_shape[-1]))
        self.encoder.build((None, input_shape[-1], self.dim))
        self.built = True

    def call(self, chars):
        shape = ops.shape(chars)
        flat = ops.reshape(chars, (-1, chars.shape[-1]))
        mask = ops.not_equal(flat, 0)
        x = self.embedding(flat)
        if self.kind == "cnn":
            h = self.encoder(x)
            m = ops.expand_dims(mask, -1)
            h = ops.max(ops.where(m, h, ops.cast(-1e9, h.dtype)), axis=1)
            h = ops.where(ops.any(m, axis=1), h, ops.zeros_like(h))
        else:
            # A padding word has no characters; one unmasked step keeps the kernel well-defined.
            first = ops.arange(ops.shape(mask)[1]) == 0
            h = self.encoder(x, mask=ops.logical_or(mask, first))
        return ops.reshape(h, (shape[0], shape[1], h.shape[-1]))

    def compute_output_shape(self, input_shape):
        width = self.units * (1 if self.kind == "cnn" else 2)
        return (*input_shape[:-1], width)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "dim": self.dim,
            "units": self.units,
            "kind": self.kind,
            "kernel_size": self.kernel_size,
        }


@keras.saving.register_keras_serializable(package="lstm_recipes")
class DropMask(layers.Layer):
    """Pass inputs through without their Keras mask.

    For outputs whose padding is handled by the loss (``ignore_class``): Keras would also turn
    a propagated mask into sample weights, and the two together fail to broadcast.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        # A new tensor: the input tensor object itself carries its mask as an attribute.
        return ops.copy(inputs)

    def compute_mask(self, inputs, mask=None):
        return None


def sequence_summary(x, mode: str, encoder_kwargs: dict):
    """Helper for many-to-one models: encode a masked sequence and pool it to one vector.

    ``mode="last"`` takes the final output of the last LSTM (both directions when bidirectional);
    the other modes pool every step of it with ``MaskedPooling``.

    Args:
        x: embedded, masked inputs (batch, time, features).
        mode: ``last``, ``max``, ``mean`` or ``max_mean``.
        encoder_kwargs: arguments of ``StackedLSTM``.
    """
    if mode == "last":
        return StackedLSTM(return_sequences=False, name="encoder", **encoder_kwargs)(x)
    seq = StackedLSTM(return_sequences=True, name="encoder", **encoder_kwargs)(x)
    return MaskedPooling(mode, name="pooling")(seq)
