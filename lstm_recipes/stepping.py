"""Step signatures: one step of input and a stacked LSTM's states in, the step's output and the
next states out, so that an app feeds a sequence as it comes, in constant memory.

The states travel as one tensor, ``float32[B, layers * n, units]`` with ``n =
cells.num_states(cell)``: layer i's states are ``states[:, i * n : (i + 1) * n]``, in the order
the layer returns them (``[h, c]`` for an LSTM). Zeros start a sequence.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lstm_recipes import cells


def state_shape(config, batch: int | None) -> list:
    """``[batch, layers * n, units]``.

    Args:
        config: a recipe config with ``cell``, ``layers`` and ``units``.
        batch: rows, or None for any.
    """
    return [batch, config.layers * cells.num_states(config.cell), config.units]


def unpack(states: tf.Tensor, config) -> list:
    """Packed states -> ``[[n tensors of (B, units)], ...]`` per layer (``StackedLSTM.run``'s
    ``initial_states``)."""
    n = cells.num_states(config.cell)
    return [[states[:, i * n + j] for j in range(n)] for i in range(config.layers)]


def pack(states: list) -> tf.Tensor:
    """The per-layer states ``StackedLSTM.run`` returns, packed as ``float32[B, layers * n,
    units]``."""
    return tf.stack([s for layer in states for s in layer], 1)


def zeros(config, batch) -> list:
    """The states that start a sequence, unpacked for ``StackedLSTM.run``.

    Args:
        config: a recipe config with ``cell``, ``layers`` and ``units``.
        batch: rows (an int or a scalar tensor).
    """
    return unpack(tf.zeros(state_shape(config, batch)), config)


def function(fn, config, spec: tf.TensorSpec):
    """``fn(value, states)`` as a ``tf.function`` with the signature ``(spec, states)``.

    Args:
        fn: one step: ``(value, packed states) -> dict`` of outputs.
        config: a recipe config with ``cell``, ``layers`` and ``units``.
        spec: the step input's spec; its first dimension is the batch, the states' too.
    """
    states = tf.TensorSpec(state_shape(config, spec.shape[0]), tf.float32, name="states")
    return tf.function(fn, input_signature=[spec, states], autograph=False)


def sample_states(config, rows: int) -> list:
    """States to verify an export with, as nested lists: not zeros, so that a check also sees
    the given states reach the cells."""
    shape = state_shape(config, rows)
    return np.random.default_rng(0).uniform(-0.5, 0.5, shape).astype("float32").tolist()


def facts(config) -> dict:
    """What an app needs to carry the states between steps (for ``metadata.json``)."""
    return {
        "streaming": "step",
        "cell": config.cell,
        "layers": config.layers,
        "units": config.units,
        "num_states": cells.num_states(config.cell),
        "states": "float32[1, layers * num_states, units], zeros to start; layer i's are "
        "states[:, i * num_states : (i + 1) * num_states]",
    }
