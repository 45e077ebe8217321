"""The values inside a trained recurrent stack at every step: each unit's cell state and gates.

Keras's recurrent layers return only their outputs. ``trace_stack`` runs every layer of a
``blocks.StackedLSTM`` again in NumPy, one step at a time from the layer's own weights, and
compares the outputs it computed with the layer's own: a transcription that does not match the
layer raises instead of returning made-up values. What each cell reports, per unit and step:

- LSTM (``lstm``, ``np`` and the Greff et al. variants of ``cells``): ``cell`` (c), ``output``
  (h) and the ``input_gate``, ``forget_gate`` and ``output_gate`` values (a variant without a
  gate has no entry for it: its value is 1 everywhere);
- GRU: ``output`` (h, which is also its state), ``update_gate`` and ``reset_gate``;
- simple RNN: ``output``.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from lstm_recipes import blocks, cells
from lstm_recipes.errors import UserError

# Largest difference allowed between the traced outputs and the layer's own (float32 arithmetic
# in another order, over thousands of steps).
TOLERANCE = 2e-3
GATES = ("input_gate", "forget_gate", "output_gate", "update_gate", "reset_gate")


@dataclasses.dataclass
class LayerTrace:
    """One direction of one recurrent layer over one sequence.

    Args:
        layer: the layer's number in the stack, from 1 (next to the input).
        direction: ``forward``, or ``backward`` for the second half of a bidirectional layer.
        cell: ``lstm``, ``gru`` or ``simple_rnn``.
        values: name -> (steps, units) float32 array, in the sequence's own step order.
    """

    layer: int
    direction: str
    cell: str
    values: dict[str, np.ndarray]

    @property
    def state(self) -> np.ndarray:
        """What a unit holds: the cell state where there is one, else the output."""
        return self.values.get("cell", self.values["output"])


def find_stack(model: keras.Model) -> blocks.StackedLSTM:
    """The model's recurrent stack: its last ``blocks.StackedLSTM`` (the word-level one when
    a character encoder comes first).

    Args:
        model: a recipe's trained model.
    """
    stacks = [layer for layer in model.layers if isinstance(layer, blocks.StackedLSTM)]
    if not stacks:
        kinds = sorted({type(layer).__name__ for layer in model.layers})
        raise UserError(
            f"expected a model with recurrent layers (a blocks.StackedLSTM) to inspect; model "
            f"{model.name!r} has none (its layers: {', '.join(kinds)})"
        )
    return stacks[-1]


def stack_inputs(model: keras.Model, stack: blocks.StackedLSTM):
    """A function: the model's inputs for one sequence -> the stack's input (1, steps, features).

    Args:
        model: the trained model.
        stack: its recurrent stack (``find_stack``).
    """
    given = stack.input
    # A stack called with a mask has (steps, mask) as its input; the steps come first.
    probe = keras.Model(model.inputs, given[0] if isinstance(given, (list, tuple)) else given)
    fixed = model.inputs[0].shape[0]  # a stateful model's inputs have a fixed batch size

    def run(inputs):
        if not isinstance(inputs, dict):
            inputs = [inputs]  # the structure of model.inputs: a functional model warns otherwise
        if fixed:
            inputs = keras.tree.map_structure(lambda a: np.repeat(a, fixed, axis=0), inputs)
        return np.asarray(probe(inputs, training=False))[:1]

    return run


def trace_stack(stack: blocks.StackedLSTM, x: np.ndarray) -> list[LayerTrace]:
    """Every layer and direction of ``stack`` over one unpadded sequence.

    Args:
        stack: a trained stack.
        x: its input for one sequence, (1, steps, features).

    Returns:
        One ``LayerTrace`` per layer (two for a bidirectional layer: forward, then backward).
    """
    traces = []
    x = np.asarray(x, np.float32)
    for i, rnn in enumerate(stack.rnns):
        halves = (
            [("forward", rnn.forward_layer), ("backward", rnn.backward_layer)]
            if isinstance(rnn, keras.layers.Bidirectional)
            else [("forward", rnn)]
        )
        outputs = []
        for direction, layer in halves:
            backwards = bool(getattr(layer, "go_backwards", False))
            steps = x[0, ::-1] if backwards else x[0]
            cell, values = _trace_cell(layer.cell, steps)
            # In a graph: eager, the layer's step loop runs op by op (10x slower).
            own = np.asarray(tf.function(_stateless_copy(layer, x.shape[-1]))(x))[0]
            gap = float(np.max(np.abs(own - values["output"]))) if len(own) else 0.0
            if not gap <= TOLERANCE:
                raise RuntimeError(
                    f"inspect's step-by-step transcription of layer {i + 1} ({direction}, "
                    f"{type(layer.cell).__name__}) differs from the layer's own output by "
                    f"{gap:.3g}; the layer computes something celltrace does not know"
                )
            if backwards:
                values = {name: v[::-1] for name, v in values.items()}
            traces.append(LayerTrace(i + 1, direction, cell, values))
            outputs.append(values["output"])
        out = np.concatenate(outputs, -1)[None]
        if stack.adds_residual(i):
            out = out + x
        x = out
    return traces


def _stateless_copy(layer, features: int):
    """The layer with its weights, returning every step, and carrying no state between calls (a
    stateful layer's batch size is fixed, and calling it would change its state)."""
    config = {
        **layer.get_config(),
        "stateful": False,
        "return_sequences": True,
        "return_state": False,
    }
    copy = type(layer).from_config(config)
    copy.build((1, None, features))
    copy.set_weights(layer.get_weights())
    return copy


def _fn(activation):
    name = getattr(activation, "__name__", "")
    known = {"tanh": np.tanh, "sigmoid": _sigmoid, "linear": lambda v: v}
    if name not in known:
        raise UserError(f"expected tanh, sigmoid or linear activations to inspect, found {name!r}")
    return known[name]


def _sigmoid(v):
    return 0.5 * (np.tanh(0.5 * v) + 1.0)


def _weights(cell, width: int):
    """(kernel, recurrent kernel transposed, bias) as float64: ``recurrent @ h`` on a
    contiguous transposed matrix is several times faster than ``h @ recurrent`` per step."""
    kernel = np.asarray(cell.kernel, np.float64)
    recurrent = np.ascontiguousarray(np.asarray(cell.recurrent_kernel, np.float64).T)
    bias = cell.bias if getattr(cell, "use_bias", True) and cell.bias is not None else None
    bias = np.zeros(width) if bias is None else np.asarray(bias, np.float64)
    return kernel, recurrent, bias


def _trace_cell(cell, x: np.ndarray) -> tuple[str, dict[str, np.ndarray]]:
    x = np.asarray(x, np.float64)
    if isinstance(cell, cells.LSTMVariantCell):
        return "lstm", _variant(cell, x)
    if isinstance(cell, keras.layers.LSTMCell):
        return "lstm", _lstm(cell, x)
    if isinstance(cell, keras.layers.GRUCell):
        return "gru", _gru(cell, x)
    if isinstance(cell, keras.layers.SimpleRNNCell):
        return "simple_rnn", _simple(cell, x)
    raise UserError(
        f"expected an LSTM, GRU or simple RNN cell to inspect, found {type(cell).__name__}"
    )


def _projected(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray):
    """``x @ kernel + bias`` row by row, computed a block at a time: memory stays bounded on
    long texts (50,000 steps x 2,048 columns would be 800 MB at once)."""
    for start in range(0, len(x), 1024):
        yield from x[start : start + 1024] @ kernel + bias


def _record(names, steps: int, units: int) -> dict[str, np.ndarray]:
    return {name: np.zeros((steps, units), np.float32) for name in names}


def _lstm(cell, x):
    u = cell.units
    kernel, recurrent, bias = _weights(cell, 4 * u)
    act, gate = _fn(cell.activation), _fn(cell.recurrent_activation)
    names = ("cell", "output", "input_gate", "forget_gate", "output_gate")
    out = _record(names, len(x), u)
    h, c = np.zeros(u), np.zeros(u)
    for t, p in enumerate(_projected(x, kernel, bias)):
        z = p + recurrent @ h
        i, f, o = gate(z[:u]), gate(z[u : 2 * u]), gate(z[3 * u :])
        c = f * c + i * act(z[2 * u : 3 * u])
        h = o * act(c)
        for name, v in zip(names, (c, h, i, f, o)):
            out[name][t] = v
    return out


def _variant(cell, x):
    u, variant = cell.units, cell.variant
    kernel, recurrent, bias = _weights(cell, len(cell.gates) * u)
    peep = {g: np.asarray(w, np.float64) for g, w in cell.peephole.items()}
    names = ["cell", "output"]
    names += [f"{g}_gate" for g in ("input", "forget", "output") if g[0] in cell.gates]
    names += ["forget_gate"] if variant == "cifg" else []
    out = _record(names, len(x), u)
    h, c = np.zeros(u), np.zeros(u)
    previous = np.zeros(3 * u)  # fgr: the last step's i, f, o
    if variant == "fgr":
        gate_kernel = np.ascontiguousarray(np.asarray(cell.gate_kernel, np.float64).T)
    for t, p in enumerate(_projected(x, kernel, bias)):
        pre = p + recurrent @ h
        part = {g: pre[n * u : (n + 1) * u] for n, g in enumerate(cell.gates)}
        if variant == "fgr":
            fed = gate_kernel @ previous
            for n, g in enumerate("ifo"):
                part[g] = part[g] + fed[n * u : (n + 1) * u]
        z = part["z"] if variant == "niaf" else np.tanh(part["z"])
        i = _sigmoid(part["i"] + peep.get("i", 0) * c) if "i" in part else np.ones(u)
        if variant == "cifg":
            f = 1.0 - i
        else:
            f = _sigmoid(part["f"] + peep.get("f", 0) * c) if "f" in part else np.ones(u)
        c = z * i + c * f
        o = _sigmoid(part["o"] + peep.get("o", 0) * c) if "o" in part else np.ones(u)
        h = (c if variant == "noaf" else np.tanh(c)) * o
        previous = np.concatenate([i, f, o])
        now = {"cell": c, "output": h, "input_gate": i, "forget_gate": f, "output_gate": o}
        for name in names:
            out[name][t] = now[name]
    return out


def _gru(cell, x):
    u = cell.units
    kernel, recurrent, bias = _weights(cell, 6 * u if cell.reset_after else 3 * u)
    act, gate = _fn(cell.activation), _fn(cell.recurrent_activation)
    bias = bias.reshape(2, 3 * u) if cell.reset_after else np.stack([bias, np.zeros(3 * u)])
    out = _record(("output", "update_gate", "reset_gate"), len(x), u)
    h = np.zeros(u)
    for t, p in enumerate(_projected(x, kernel, bias[0])):
        if cell.reset_after:
            rec = recurrent @ h + bias[1]
            z, r = gate(p[:u] + rec[:u]), gate(p[u : 2 * u] + rec[u : 2 * u])
            candidate = act(p[2 * u :] + r * rec[2 * u :])
        else:
            rec = recurrent[: 2 * u] @ h
            z, r = gate(p[:u] + rec[:u]), gate(p[u : 2 * u] + rec[u:])
            candidate = act(p[2 * u :] + recurrent[2 * u :] @ (r * h))
        h = z * h + (1.0 - z) * candidate
        out["output"][t], out["update_gate"][t], out["reset_gate"][t] = h, z, r
    return out


def _simple(cell, x):
    u = cell.units
    kernel, recurrent, bias = _weights(cell, u)
    act = _fn(cell.activation)
    out = _record(("output",), len(x), u)
    h = np.zeros(u)
    for t, p in enumerate(_projected(x, kernel, bias)):
        h = act(p + recurrent @ h)
        out["output"][t] = h
    return out
