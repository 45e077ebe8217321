"""Simple facts about each input step, and the units whose activation follows them best.

The probes of Karpathy, Johnson & Fei-Fei 2015 ("Visualizing and Understanding Recurrent
Networks") for characters: inside quotes, inside brackets, position in the line, start of a
word. Tokens get position in the sentence, inside quotes or brackets, and, when the data has
tags, inside a chunk (IOB tags) or one probe per frequent tag; frames get position in the
sequence and one probe per frequent label. A user adds a probe as a regular expression: 1 on the
characters a match covers, or on the tokens it matches. ``rank`` correlates every unit with
every probe over all steps.
"""

from __future__ import annotations

import collections
import dataclasses
import re

import numpy as np

from lstm_recipes.errors import UserError

QUOTES = {'"': None, "\u201c": "\u201d", "``": "''"}  # opening -> closing (None: the same)
OPEN_BRACKETS = {"(": ")", "[": "]", "{": "}", "-LRB-": "-RRB-", "-LSB-": "-RSB-"}
CLOSE_BRACKETS = set(OPEN_BRACKETS.values())
TOP_LABELS = 6  # label and tag probes for the most frequent values only


@dataclasses.dataclass
class Best:
    """The unit that follows one probe best.

    Args:
        probe: the probe's name.
        unit: ``(layer, direction, index)``.
        r: Pearson correlation of the unit's activation with the probe, over all steps.
        active: steps where the probe is non-zero, of ``steps``.
        steps: steps measured.
    """

    probe: str
    unit: tuple[int, str, int]
    r: float
    active: int
    steps: int


def parse_regex(spec: str) -> tuple[str, re.Pattern]:
    """``NAME=REGEX`` (or a bare REGEX, named by itself) -> (name, compiled pattern).

    Args:
        spec: the ``--probe`` value.
    """
    name, sep, pattern = spec.partition("=")
    if not sep or not name.strip():
        name, pattern = spec, spec
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise UserError(
            f"expected --probe NAME=REGEX with a valid regex, found {spec!r}: {e}"
        ) from None
    if compiled.match(""):
        raise UserError(f"expected a --probe regex that does not match the empty string: {spec!r}")
    return name.strip(), compiled


def char_probes(text: str, regexes: dict[str, re.Pattern]) -> dict[str, np.ndarray]:
    """One value per character of ``text`` for each built-in probe and each regex."""
    n = len(text)
    quote, bracket, column, word = (np.zeros(n, np.float32) for _ in range(4))
    closing, depth, col = None, 0, 0
    for t, ch in enumerate(text):
        closing = _quote_after(ch, closing)
        depth = _depth_after(ch, depth)
        quote[t], bracket[t], column[t] = closing is not None, depth > 0, col
        col = 0 if ch == "\n" else col + 1
        word[t] = ch.isalnum() and (t == 0 or not text[t - 1].isalnum())
    probes = {
        "inside quotes": quote,
        "inside brackets": bracket,
        "position in the line": column,
        "start of a word": word,
    }
    for name, pattern in regexes.items():
        hit = np.zeros(n, np.float32)
        for m in pattern.finditer(text):
            hit[m.start() : m.end()] = 1.0
        probes[name] = hit
    return probes


def token_probes(tokens: list[str], regexes: dict[str, re.Pattern]) -> dict[str, np.ndarray]:
    """One value per token for position, quotes, brackets and each regex."""
    n = len(tokens)
    quote, bracket = np.zeros(n, np.float32), np.zeros(n, np.float32)
    closing, depth = None, 0
    for t, token in enumerate(tokens):
        closing = _quote_after(token, closing)
        depth = _depth_after(token, depth)
        quote[t], bracket[t] = closing is not None, depth > 0
    probes = {
        "position in the sentence": np.arange(n, dtype=np.float32),
        "inside quotes": quote,
        "inside brackets": bracket,
    }
    for name, pattern in regexes.items():
        probes[name] = np.array([bool(pattern.search(t)) for t in tokens], np.float32)
    return probes


def _quote_after(step: str, closing: str | None) -> str | None:
    """The closing quote awaited after reading ``step`` (None: outside quotes). Probes hold the
    state after each step: an opening quote is inside, a closing one outside."""
    if closing is None:
        return (QUOTES[step] or step) if step in QUOTES else None
    return None if step == closing else closing


def _depth_after(step: str, depth: int) -> int:
    if step in OPEN_BRACKETS:
        return depth + 1
    return max(0, depth - 1) if step in CLOSE_BRACKETS else depth


def label_probes(labels: list[list[str]], chunks: bool) -> dict[str, list[np.ndarray]]:
    """Per sequence: ``inside a chunk`` for IOB tags (``chunks``), else one 0/1 probe per
    frequent label (``label=walking``)."""
    if chunks:
        inside = [np.array([t not in ("O", "") for t in seq], np.float32) for seq in labels]
        return {"inside a chunk": inside}
    counts = collections.Counter(t for seq in labels for t in seq if t)
    return {
        f"label={value}": [np.array([t == value for t in seq], np.float32) for seq in labels]
        for value, _ in counts.most_common(TOP_LABELS)
    }


def is_iob(labels: list[list[str]]) -> bool:
    """Whether tags look like IOB chunk tags (``B-NP``, ``I-NP``, ``O``)."""
    tags = {t for seq in labels for t in seq if t}
    return bool(tags) and all(t == "O" or t[:2] in ("B-", "I-") for t in tags)


def rank(
    activations: dict[tuple[int, str], np.ndarray], probes: dict[str, np.ndarray]
) -> tuple[list[Best], list[str]]:
    """The unit with the largest absolute correlation for each probe.

    Args:
        activations: ``(layer, direction)`` -> (steps, units) activations over all sequences.
        probes: name -> (steps,) values over the same steps.

    Returns:
        (the best unit per probe, names of probes that are constant in the input and so say
        nothing: no quotes in the text, say).
    """
    best, constant = [], []
    for name, values in probes.items():
        values = np.asarray(values, np.float64)
        if values.std() == 0:
            constant.append(name)
            continue
        top = None
        for (layer, direction), acts in activations.items():
            r = correlations(acts, values)
            k = int(np.nanargmax(np.abs(np.nan_to_num(r, nan=0.0))))
            if top is None or abs(r[k]) > abs(top.r):
                active = int(np.count_nonzero(values))
                top = Best(name, (layer, direction, k), float(r[k]), active, len(values))
        best.append(top)
    return best, constant


def correlations(acts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``acts`` (steps, units) with ``values`` (steps,);
    0 for a unit that never changes.

    Args:
        acts: activations.
        values: one probe's values.
    """
    a = np.asarray(acts, np.float64)
    a = a - a.mean(0)
    v = np.asarray(values, np.float64) - np.mean(values)
    norms = np.sqrt((a * a).sum(0) * (v * v).sum())
    return np.divide(a.T @ v, norms, out=np.zeros(a.shape[1]), where=norms > 0)
