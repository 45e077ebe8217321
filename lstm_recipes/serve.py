"""Calling an exported SavedModel the way a server would: only TensorFlow, raw inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from lstm_recipes.errors import UserError
from lstm_recipes.export import METADATA_FILE, latest_version


def load_saved(path: Path):
    """``tf.saved_model.load`` after importing what the model's metadata says it requires (the
    modules that register its custom ops, e.g. ``tensorflow_text`` for subword units).

    Args:
        path: one SavedModel version folder.
    """
    meta = path / METADATA_FILE
    for module in json.loads(meta.read_text()).get("requires", []) if meta.exists() else []:
        try:
            __import__(module)
        except ImportError as e:
            raise UserError(
                f"the model at {path} needs the {module} package (its ops are in the graph), "
                f"found: {e}"
            ) from None
    return tf.saved_model.load(str(path))


def _load(model_dir: Path, signature: str):
    path = latest_version(model_dir)
    loaded = load_saved(path)
    if signature not in loaded.signatures:
        raise UserError(
            f"expected a signature in {', '.join(loaded.signatures)}, got {signature!r}"
        )
    # Keep `loaded` alive beside the signature: a signature of a collected object can fail.
    return loaded, loaded.signatures[signature]


def generate(model_dir: Path, prompt: str, num_chars: int, temperature: float, seed: int) -> dict:
    """Text from a generator's ``generate`` signature: the prompt and ``num_chars`` more.

    Args:
        model_dir: a SavedModel, a folder of versions, or a run directory.
        prompt: text to continue (may be empty).
        num_chars: characters to add.
        temperature: sampling temperature; 0 is greedy.
        seed: sampling seed; the same seed gives the same text.
    """
    _loaded, fn = _load(model_dir, "generate")
    out = fn(
        prompt=tf.constant(prompt),
        num_chars=tf.constant(num_chars, tf.int32),
        temperature=tf.constant(temperature, tf.float32),
        seed=tf.constant(seed, tf.int32),
    )
    return {"prompt": prompt, "text": out["text"].numpy().decode("utf-8", "replace")}


def predict(model_dir: Path, inputs: list[str], signature: str = "serving_default") -> list[dict]:
    """One dict per input: the input and every output of the signature, as plain values.

    Args:
        model_dir: a SavedModel, a folder of versions, or a run directory.
        inputs: raw inputs for the signature's single string input; for a float frames input
            (frame labeling), one sequence per input as a JSON list of frames, e.g.
            ``[[0.1, 0.2], [0.3, 0.4]]``.
        signature: the signature to call.
    """
    path = latest_version(model_dir)
    loaded = load_saved(path)
    if signature not in loaded.signatures:
        raise UserError(
            f"expected a signature in {', '.join(loaded.signatures)}, got {signature!r}"
        )
    fn = loaded.signatures[signature]
    specs = fn.structured_input_signature[1]
    if not _takes_strings(specs) and signature == "serving_default":
        # A tagger's serving_default takes token grids; its text signature takes lines.
        for other in loaded.signatures.values():
            if _takes_strings(other.structured_input_signature[1]):
                fn, specs = other, other.structured_input_signature[1]
                break
    if _takes_frames(specs):
        return _predict_frames(fn, specs, inputs)
    if not _takes_strings(specs):
        wanted = ", ".join(f"{k}: {v.dtype.name}{list(v.shape)}" for k, v in specs.items())
        raise UserError(
            f"signature {signature!r} takes ({wanted}); predict feeds one string per input line"
        )
    (name,) = specs
    values = inputs
    if name.endswith("_bytes"):
        # A binary input (image_bytes): the inputs are files to read.
        values = []
        for item in inputs:
            try:
                values.append(Path(item).read_bytes())
            except OSError as e:
                raise UserError(
                    f"expected a readable file for {name}, got {item}: {e.strerror}"
                ) from None
    try:
        outputs = fn(**{name: tf.constant(values, tf.string)})
    except tf.errors.InvalidArgumentError as e:
        first = (e.message.strip().splitlines() or [""])[0]
        raise UserError(f"the model rejected the input ({name}): {first}") from None
    rows = [{name: text} for text in inputs]
    for key, value in outputs.items():
        array = value.numpy()
        for row, item in zip(rows, array):
            row[key] = _plain(item)
            if isinstance(row[key], list) and row[key] and isinstance(row[key][0], str):
                # Per-token outputs are padded to the longest line of the batch with "".
                while row[key] and row[key][-1] == "":
                    row[key].pop()
    return rows


def _takes_frames(specs: dict) -> bool:
    # One input, a batch of sequences of float frames: [batch, steps, features].
    if len(specs) != 1:
        return False
    spec = next(iter(specs.values()))
    return spec.dtype.is_floating and spec.shape.rank == 3


def _predict_frames(fn, specs: dict, inputs: list[str]) -> list[dict]:
    (name,) = specs
    width = specs[name].shape[-1]
    sequences = []
    for n, item in enumerate(inputs, 1):
        try:
            frames = np.asarray(json.loads(item), np.float32)
        except (ValueError, TypeError):
            raise UserError(
                f"input {n}: expected a JSON list of frames like [[0.1, 0.2], [0.3, 0.4]], "
                f"found {item[:60]!r}"
            ) from None
        if frames.ndim != 2 or (width is not None and frames.shape[1] != width):
            raise UserError(
                f"input {n}: expected a list of frames of {width} numbers each, found an array "
                f"of shape {list(frames.shape)}"
            )
        sequences.append(frames)
    # Rows of NaN pad, as the exported signature documents; each answer is cut back to its input.
    steps = max(len(f) for f in sequences)
    batch = np.full((len(sequences), steps, sequences[0].shape[1]), np.nan, np.float32)
    for i, frames in enumerate(sequences):
        batch[i, : len(frames)] = frames
    try:
        outputs = fn(**{name: tf.constant(batch)})
    except tf.errors.InvalidArgumentError as e:
        first = (e.message.strip().splitlines() or [""])[0]
        raise UserError(f"the model rejected the input ({name}): {first}") from None
    rows = [{name: text} for text in inputs]
    for key, value in outputs.items():
        for row, frames, item in zip(rows, sequences, value.numpy()):
            item = item[: len(frames)]
            if item.dtype.kind == "f":
                row[key] = np.round(item.astype(float), 4).tolist()
            else:
                row[key] = [_plain(x) for x in item]
    return rows


def _takes_strings(specs: dict) -> bool:
    # One input, a batch of strings: what predict can feed from arguments or lines.
    if len(specs) != 1:
        return False
    spec = next(iter(specs.values()))
    return spec.dtype == tf.string and spec.shape.rank == 1


def _plain(item):
    if isinstance(item, bytes):
        return item.decode("utf-8", "replace")
    if isinstance(item, np.ndarray):
        if item.dtype == object:
            return [_plain(x) for x in item]
        return (
            [round(float(x), 4) for x in item.ravel()] if item.dtype.kind == "f" else item.tolist()
        )
    return item.item() if hasattr(item, "item") else item


def format_row(row: dict) -> str:
    """``key=value`` pairs after the input, tab-separated, for people."""
    (first, *rest) = row.items()
    shown = first[1] if len(first[1]) <= 60 else first[1][:57] + "..."
    return "\t".join([repr(shown)] + [f"{k}={v}" for k, v in rest])
