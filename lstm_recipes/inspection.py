"""``lstm-recipes inspect``: what the trained cells of a run hold, step by step.

For each input sequence, every recurrent layer's unit activations and gate values
(``celltrace``); the built-in and user probes (``probes``) and the unit that follows each best;
how often each gate is saturated; and the most interesting units drawn over the text
(``inspect_report``). A unit's activation is tanh of its cell state (the output of a GRU or
simple RNN, which have no cell state), as in Karpathy, Johnson & Fei-Fei 2015.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lstm_recipes import celltrace, probes
from lstm_recipes.errors import UserError

SATURATED = (0.1, 0.9)  # a gate value below the first is left-, above the second right-saturated
Unit = tuple[int, str, int]  # (layer from 1, direction, index)


@dataclasses.dataclass
class Sequence:
    """One input to inspect, as a recipe's ``inspect_sequences`` makes it.

    Args:
        inputs: the model's inputs for this one sequence, as the model takes them (arrays with a
            batch axis of 1, or a dict of them).
        steps: what each step shows: a character, a token, or a frame's label.
        kind: ``chars``, ``tokens`` or ``frames``.
        labels: each step's tag or label where the data has them, else None.
    """

    inputs: object
    steps: list[str]
    kind: str
    labels: list[str] | None = None


@dataclasses.dataclass
class Inspection:
    """What ``inspect_model`` found.

    Args:
        sequences: the inputs.
        traces: per sequence, one ``celltrace.LayerTrace`` per layer and direction.
        best: the best unit per probe (``probes.Best``), strongest first.
        constant: probes that never change in the input (no quotes in it, say): not ranked.
        units: the units to draw, most interesting first.
        saturation: ``(layer, direction)`` -> gate -> (left, right) fractions per unit.
    """

    sequences: list[Sequence]
    traces: list[list[celltrace.LayerTrace]]
    best: list[probes.Best]
    constant: list[str]
    units: list[Unit]
    saturation: dict[tuple[int, str], dict[str, tuple[np.ndarray, np.ndarray]]]

    def activation(self, unit: Unit, sequence: int) -> np.ndarray:
        """One unit's activation at every step of one sequence."""
        layer, direction, index = unit
        for trace in self.traces[sequence]:
            if (trace.layer, trace.direction) == (layer, direction):
                return _activation(trace)[:, index]
        raise KeyError(unit)


def _activation(trace: celltrace.LayerTrace) -> np.ndarray:
    return np.tanh(trace.state) if "cell" in trace.values else trace.values["output"]


def check_texts(texts: list[str]) -> None:
    """A one-line error for an empty input."""
    if not texts:
        raise UserError("expected text to inspect, found none")
    for n, text in enumerate(texts, 1):
        if not text.strip():
            raise UserError(f"expected text to inspect, found an empty input (number {n})")


def sequence_probes(sequences: list[Sequence], regexes: dict) -> dict[str, np.ndarray]:
    """Every probe's values over all steps of all sequences, in order.

    Args:
        sequences: the inputs (all of one kind).
        regexes: user probes, name -> compiled pattern.
    """
    kind = sequences[0].kind
    if regexes and kind == "frames":
        raise UserError("expected --probe only for text (characters or tokens), found frames")
    parts: dict[str, list[np.ndarray]] = {}
    for seq in sequences:
        if kind == "chars":
            found = probes.char_probes("".join(seq.steps), regexes)
        elif kind == "tokens":
            found = probes.token_probes(seq.steps, regexes)
        else:
            found = {"position in the sequence": np.arange(len(seq.steps), dtype=np.float32)}
        for name, values in found.items():
            parts.setdefault(name, []).append(values)
    if all(seq.labels is not None for seq in sequences):
        labels = [seq.labels for seq in sequences]
        chunks = kind == "tokens" and probes.is_iob(labels)
        parts.update(probes.label_probes(labels, chunks))
    return {name: np.concatenate(values) for name, values in parts.items()}


def inspect_model(
    model,
    sequences: list[Sequence],
    regexes: dict | None = None,
    layer: int | None = None,
    cells: int = 8,
) -> Inspection:
    """Trace, probe and rank the units of ``model``'s recurrent stack over ``sequences``.

    Args:
        model: a trained recipe model with a ``blocks.StackedLSTM``.
        sequences: the inputs (``Sequence``), all of one kind.
        regexes: user probes, name -> compiled pattern.
        layer: draw and rank units of this layer only (from 1); None: every layer.
        cells: how many units to draw.
    """
    stack = celltrace.find_stack(model)
    if layer is not None and not 1 <= layer <= stack.num_layers:
        raise UserError(
            f"expected --layer between 1 and {stack.num_layers} (the run's recurrent layers), "
            f"found {layer}"
        )
    if not sequences or not all(seq.steps for seq in sequences):
        raise UserError("expected input with at least one step to inspect, found an empty one")
    to_stack = celltrace.stack_inputs(model, stack)
    traces = []
    for seq in sequences:
        x = to_stack(seq.inputs)[:, : len(seq.steps)]
        traces.append(celltrace.trace_stack(stack, x))
    acts = {
        (t.layer, t.direction): np.concatenate([_activation(ts[k]) for ts in traces])
        for k, t in enumerate(traces[0])
        if layer is None or t.layer == layer
    }
    values = sequence_probes(sequences, regexes or {})
    best, constant = probes.rank(acts, values)
    best.sort(key=lambda b: -abs(b.r))
    saturation = {}
    for k, t in enumerate(traces[0]):
        gates = {}
        for gate in celltrace.GATES:
            if gate in t.values:
                v = np.concatenate([ts[k].values[gate] for ts in traces])
                gates[gate] = ((v < SATURATED[0]).mean(0), (v > SATURATED[1]).mean(0))
        saturation[(t.layer, t.direction)] = gates
    units = _choose(acts, values, best, cells)
    return Inspection(sequences, traces, best, constant, units, saturation)


def _choose(acts, values, best: list[probes.Best], cells: int) -> list[Unit]:
    """The best unit of each probe, then the units most correlated with any probe (or, with no
    probe that varies, the units that vary most)."""
    chosen = []
    for b in best:
        if b.unit not in chosen:
            chosen.append(b.unit)
    scored = []
    varying = [v for v in values.values() if np.std(v) > 0]
    for (layer, direction), a in acts.items():
        if varying:
            score = np.max([np.abs(probes.correlations(a, v)) for v in varying], axis=0)
        else:
            score = a.std(0)
        scored += [(float(s), (layer, direction, i)) for i, s in enumerate(score)]
    for _, unit in sorted(scored, key=lambda pair: -pair[0]):
        if len(chosen) >= cells:
            break
        if unit not in chosen:
            chosen.append(unit)
    return chosen[:cells]
