"""Recurrent cells: the LSTM variants of Greff et al. 2015, "LSTM: A Search Space Odyssey"
(arXiv 1503.04069), plus GRU and simple-RNN baselines, behind one name per cell.

The paper's vanilla LSTM (Section 2), with block input ``z``, gates ``i, f, o``, cell ``c``,
output ``y`` and peepholes ``p``::

    z = g(W_z x + R_z y' + b_z)
    i = sigmoid(W_i x + R_i y' + p_i * c' + b_i)
    f = sigmoid(W_f x + R_f y' + p_f * c' + b_f)
    c = z * i + c' * f
    o = sigmoid(W_o x + R_o y' + p_o * c + b_o)
    y = h(c) * o

with ``g = h = tanh`` and primes marking the previous step. The variants change one thing each:
``nig`` i = 1, ``nfg`` f = 1, ``nog`` o = 1, ``niaf`` g = identity, ``noaf`` h = identity,
``np`` no peepholes, ``cifg`` f = 1 - i, ``fgr`` every gate also sees the previous step's
three gates (``+ R_*i i' + R_*f f' + R_*o o'``).

``lstm`` (the default) and ``np`` are ``fused.LSTM`` (no peepholes): ``keras.layers.LSTM`` with
its cuDNN kernel on a GPU and this package's fused step loop on a CPU (``lstm_recipes.fused``:
a training step 1.1-1.4x Keras's own CPU loop, the IMDB recipe 1.56x; benchmarks/RESULTS.md).
``gru`` and ``simple_rnn`` are Keras's own layers. The other variants are ``LSTMVariantCell`` in ``keras.layers.RNN``: a generic step loop, slower
on a GPU (training warns: ``fastpath.check_model``) and as fast as Keras's LSTM on a CPU.
"""

from __future__ import annotations

import typing

import keras
from keras import layers, ops

from lstm_recipes import fused

# The type of every recipe's ``cell`` config field (checked by ``--set cell=...``).
Cell = typing.Literal[
    "lstm", "vanilla", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr", "gru", "simple_rnn"
]
CELLS = typing.get_args(Cell)
VARIANTS = CELLS[1:10]


def check_cell(cell: str) -> str:
    """The cell name, lowercased, or a ValueError naming the choices.

    Args:
        cell: a name from ``CELLS``.
    """
    name = str(cell).lower()
    if name not in CELLS:
        raise ValueError(f"expected cell in {', '.join(CELLS)}; found {cell!r}")
    return name


def num_states(cell: str) -> int:
    """How many state tensors one layer of ``cell`` carries: 1 (GRU, simple RNN), 2 ([h, c]),
    5 (``fgr``: [h, c] and the previous step's gates i, f, o)."""
    cell = check_cell(cell)
    if cell in ("gru", "simple_rnn"):
        return 1
    return 5 if cell == "fgr" else 2


def full_states(cell: str, given: list) -> list:
    """A layer's complete initial state from ``[h, c]`` (or ``[h]``): GRU and simple RNN keep
    ``h``; ``fgr`` starts its previous-step gates at zero; a complete state passes through.

    Args:
        cell: the cell name.
        given: ``[h, c]``, ``[h]`` or already the complete state.
    """
    n = num_states(cell)
    given = list(given)
    if len(given) >= n:
        return given[:n]
    if len(given) == 1:
        given = [given[0], ops.zeros_like(given[0])]
    return given + [ops.zeros_like(given[0]) for _ in range(n - len(given))]


def recurrent_layer(
    cell: str,
    units: int,
    return_sequences: bool,
    return_state: bool,
    recurrent_dropout: float = 0.0,
    stateful: bool = False,
    name: str | None = None,
    parallel_loops: int = 1,
) -> layers.Layer:
    """One recurrent layer of the named cell (``fused.LSTM`` for ``lstm``/``np``).

    Args:
        cell: a name from ``CELLS``.
        units: state width.
        return_sequences: every step's output, or only the last.
        return_state: also return the final state tensors (see ``num_states``).
        recurrent_dropout: dropout on the recurrent input (Keras's layers only; off the fast path).
        stateful: carry the final state over to the next batch.
        name: layer name.
        parallel_loops: for ``lstm``/``np`` on a CPU, train the batch as this many slices side
            by side (``fused.LSTM``); 2 suits a unidirectional layer on a multi-core machine.
    """
    cell = check_cell(cell)
    common = dict(
        return_sequences=return_sequences, return_state=return_state, stateful=stateful, name=name
    )
    if cell in ("lstm", "np"):
        return fused.LSTM(
            units, recurrent_dropout=recurrent_dropout, parallel_loops=parallel_loops, **common
        )
    if cell == "gru":
        return layers.GRU(units, recurrent_dropout=recurrent_dropout, **common)
    if cell == "simple_rnn":
        return layers.SimpleRNN(units, recurrent_dropout=recurrent_dropout, **common)
    if recurrent_dropout:
        raise ValueError(f"recurrent_dropout is not supported by cell={cell}; use cell=lstm")
    return layers.RNN(LSTMVariantCell(units, cell), **common)


@keras.saving.register_keras_serializable(package="lstm_recipes")
class LSTMVariantCell(layers.Layer):
    """One step of the paper's vanilla LSTM or one of its variants (see the module docstring).

    State: ``[y, c]``, and for ``fgr`` also the previous gates ``[i, f, o]``. Forget-gate biases
    start at 1 (as Keras's LSTM), peepholes at 0.

    Args:
        units: cell width.
        variant: one of ``VARIANTS``.
    """

    def __init__(self, units: int, variant: str = "vanilla", **kwargs):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"expected variant in {VARIANTS}; found {variant!r}")
        self.units, self.variant = units, variant
        self.gates = ["z"]
        self.gates += [] if variant == "nig" else ["i"]
        self.gates += [] if variant in ("nfg", "cifg") else ["f"]
        self.gates += [] if variant == "nog" else ["o"]
        self.peepholes = [] if variant == "np" else [g for g in self.gates if g != "z"]
        n = 5 if variant == "fgr" else 2
        self.state_size = [units] * n
        self.output_size = units

    def build(self, input_shape):
        k, u = len(self.gates), self.units
        self.kernel = self.add_weight((input_shape[-1], k * u), "glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight((u, k * u), "orthogonal", name="recurrent_kernel")

        def bias_init(shape, dtype=None):
            parts = [ops.ones((u,)) if g == "f" else ops.zeros((u,)) for g in self.gates]
            return ops.cast(ops.concatenate(parts), dtype or "float32")

        self.bias = self.add_weight((k * u,), bias_init, name="bias")
        self.peephole = {
            g: self.add_weight((u,), "zeros", name=f"peephole_{g}") for g in self.peepholes
        }
        if self.variant == "fgr":
            # Rows: previous i, f, o; columns: current i, f, o.
            self.gate_kernel = self.add_weight((3 * u, 3 * u), "orthogonal", name="gate_kernel")
        self.built = True

    def call(self, inputs, states, training=None):
        y_prev, c_prev = states[0], states[1]
        u = self.units
        pre = ops.matmul(inputs, self.kernel) + ops.matmul(y_prev, self.recurrent_kernel)
        pre = pre + self.bias
        parts = {g: pre[:, n * u : (n + 1) * u] for n, g in enumerate(self.gates)}
        if self.variant == "fgr":
            gate_rec = ops.matmul(ops.concatenate(states[2:5], -1), self.gate_kernel)
            for n, g in enumerate("ifo"):
                parts[g] = parts[g] + gate_rec[:, n * u : (n + 1) * u]
        z = parts["z"] if self.variant == "niaf" else ops.tanh(parts["z"])
        one = ops.ones_like(c_prev)
        i = one
        if "i" in parts:
            i = ops.sigmoid(parts["i"] + self._peep("i", c_prev))
        if self.variant == "cifg":
            f = one - i
        elif "f" in parts:
            f = ops.sigmoid(parts["f"] + self._peep("f", c_prev))
        else:
            f = one
        c = z * i + c_prev * f
        o = ops.sigmoid(parts["o"] + self._peep("o", c)) if "o" in parts else one
        y = (c if self.variant == "noaf" else ops.tanh(c)) * o
        new = [y, c, i, f, o] if self.variant == "fgr" else [y, c]
        return y, new

    def _peep(self, gate, c):
        return self.peephole[gate] * c if gate in self.peephole else 0.0

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype)] * len(
            self.state_size
        )

    def get_config(self):
        return {**super().get_config(), "units": self.units, "variant": self.variant}
