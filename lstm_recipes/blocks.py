"""Model building blocks shared by the recipes: stacked LSTM encoders and masked pooling.

Every LSTM here is ``keras.layers.LSTM`` with default activations, ``recurrent_dropout=0`` and
``unroll=False`` unless a caller asks otherwise, so it runs on cuDNN when a GPU is visible;
inputs are right-padded and masked.
"""

from __future__ import annotations

import warnings

import keras
from keras import layers, ops


def warn_slow_path(reason: str) -> None:
    """Say once, in one line, that a config leaves the fast (cuDNN) LSTM kernel."""
    warnings.warn(
        f"{reason}: this leaves the fast cuDNN LSTM kernel (10-25x slower on GPU)", stacklevel=3
    )


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
        recurrent_dropout: dropout on the recurrent state; leaves the fast kernel (warns).
        stateful: keep each layer's final state as the next batch's initial state (truncated
            backpropagation over consecutive windows; needs a fixed batch size).

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
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"expected num_layers >= 1, got {num_layers}")
        if recurrent_dropout:
            warn_slow_path(f"recurrent_dropout={recurrent_dropout}")
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
            rnn = layers.LSTM(
                units,
                return_sequences=return_sequences or not last,
                # Unidirectional layers always hand back their states, for step-wise callers.
                return_state=not bidirectional or (return_state and last),
                recurrent_dropout=recurrent_dropout,
                stateful=stateful,
                name=f"lstm_{i}",
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
            initial_states: ``[h, c]`` for every layer (step-wise decoding).
        """
        x = inputs
        all_states = []
        for i, rnn in enumerate(self.rnns):
            kwargs = {}
            if initial_states is not None:
                kwargs["initial_state"] = initial_states[i]
            elif i == 0 and initial_state is not None:
                kwargs["initial_state"] = initial_state
            out = rnn(x, mask=mask, training=training, **kwargs)
            states = None
            if isinstance(out, (list, tuple)):
                out, *states = out
            all_states.append(states)
            last = i == self.num_layers - 1
            if self.residual and i > 0 and (not last or self.return_sequences):
                out = out + x
            x = self.drop(out, training=training)
        return x, all_states

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
        if self.bidirectional:
            # Bidirectional returns [h_fw, c_fw, h_bw, c_bw]; a decoder wants one h and one c.
            states = [
                ops.concatenate([states[0], states[2]], -1),
                ops.concatenate([states[1], states[3]], -1),
            ]
        return [x, *states]

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
        }


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


keras.saving.register_keras_serializable(package="lstm_recipes")(StackedLSTM)
keras.saving.register_keras_serializable(package="lstm_recipes")(MaskedPooling)
keras.saving.register_keras_serializable(package="lstm_recipes")(TokenDropout)
