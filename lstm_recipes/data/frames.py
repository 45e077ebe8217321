"""Float frame sequences with one label per frame: sensor recordings, video features.

A sequence is ``Recording(frames (T, F) float32, labels (T,) str, name, group)``; ``group`` (a
subject, a session) keeps related sequences in the same split. Readers are NumPy and Python
only, so bad input is reported before TensorFlow starts.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.resources
import io
import math
import random
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lstm_recipes.data import files, reading
from lstm_recipes.errors import UserError


@dataclasses.dataclass
class Recording:
    """One sequence of frames and its per-frame labels.

    Args:
        frames: (steps, features) float32.
        labels: (steps,) label strings.
        name: where it came from.
        group: sequences of one group share a split (e.g. one subject's recordings).
    """

    frames: np.ndarray
    labels: np.ndarray
    name: str
    group: str


def builtin_watch(seed: int = 0) -> tuple[list[Recording], list[str]]:
    """The bundled smartwatch recordings, each subject's 14 joined in a seeded random order.

    One long sequence per subject (about 12,000 frames at 25 Hz), in which the exercise changes
    every 30-100 seconds; 6 channels. Returns (recordings, channel names).

    Args:
        seed: order of the recordings within each subject's sequence.
    """
    resource = importlib.resources.files("lstm_recipes.recipes") / "data/watch.npz"
    with importlib.resources.as_file(resource) as path, np.load(path) as data:
        frames = data["frames"].astype(np.float32)
        ends = np.cumsum(data["lengths"])
        parts = np.split(frames, ends[:-1])
        names = [str(n) for n in data["label_names"]]
        labels, subjects = data["label"], data["subject"]
        channels = [str(c) for c in data["channel_names"]]
    rng = random.Random(seed)
    recordings = []
    for subject in sorted(set(subjects.tolist())):
        order = [i for i in range(len(parts)) if subjects[i] == subject]
        rng.shuffle(order)
        x = np.concatenate([parts[i] for i in order])
        y = np.concatenate([np.full(len(parts[i]), names[labels[i]]) for i in order])
        recordings.append(Recording(x, y, f"subject {subject}", f"subject {subject}"))
    return recordings, channels


def _floats(values: list, where: str) -> list[float] | None:
    # None: the row was bad and is skipped (reading.bad_row refuses past the bound).
    try:
        return [float(v) for v in values]
    except (ValueError, TypeError):
        bad = next(v for v in values if not is_number(v))
        reading.bad_row(where, f"expected a number, found {bad!r}")
        return None


def is_number(value) -> bool:
    """True when ``float(value)`` reads it (a number, "nan", "inf", "1e3"...)."""
    try:
        float(value)
    except (ValueError, TypeError):
        return False
    return True


def read_long_csv(
    path: Path,
    sequence_column: str = "sequence_id",
    step_column: str = "step",
    label_column: str = "label",
    group_column: str = "",
) -> tuple[list[Recording], list[str]]:
    """Sequences from one long CSV: ``sequence_id, step, feature..., label`` per frame.

    Every other column is a feature. Rows may come in any order; steps are sorted within each
    sequence. Returns (recordings, feature names).

    Args:
        path: the file (``.gz`` too).
        sequence_column: the column naming each frame's sequence.
        step_column: the column ordering frames within a sequence.
        label_column: the column of frame labels.
        group_column: optional column that groups sequences for splitting (default: none).
    """
    text = files.read_text(path)
    reader = csv.reader(io.StringIO(text))
    try:
        return _long_csv_recordings(
            path, reader, sequence_column, step_column, label_column, group_column
        )
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: expected well-formed CSV, found: {e}") from None


def long_csv_features(
    path: Path,
    header: list[str],
    sequence_column: str,
    step_column: str,
    label_column: str,
    group_column: str = "",
) -> list[str]:
    """The feature columns of a long CSV's header (every column the config does not name),
    with a one-line error for a missing, repeated or absent column.

    Args:
        path: the file, for messages.
        header: its header's column names.
        sequence_column: the column naming each frame's sequence.
        step_column: the column ordering frames within a sequence.
        label_column: the column of frame labels.
        group_column: optional column grouping sequences for splitting.
    """
    needed = [sequence_column, step_column, label_column] + ([group_column] if group_column else [])
    missing = [c for c in needed if c not in header]
    if missing:
        raise UserError(
            f"expected columns {', '.join(needed)} in {path}; missing {', '.join(missing)}, "
            f"found {', '.join(header) or 'no header'} (choose others with --set)"
        )
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise UserError(
            f"expected each column once in the header of {path}, found {twice[0]!r} twice"
        )
    features = [c for c in header if c not in needed]
    if not features:
        raise UserError(f"{path}: expected at least one feature column besides {needed}")
    return features


def _long_csv_recordings(path, reader, sequence_column, step_column, label_column, group_column):
    header = next(reader, None)
    if not header:
        raise UserError(f"{path} is empty; expected a header and at least one row")
    features = long_csv_features(
        path, header, sequence_column, step_column, label_column, group_column
    )
    index = {c: header.index(c) for c in header}
    rows: dict[str, list] = {}
    groups: dict[str, str] = {}
    for row in reader:
        if not row:
            continue
        where = f"{path}:{reader.line_num}"
        if len(row) != len(header):
            reading.bad_row(
                where, f"expected {len(header)} fields like the header, found {len(row)}"
            )
            continue
        seq = row[index[sequence_column]]
        numbers = _floats([row[index[c]] for c in (step_column, *features)], where)
        if numbers is None:
            continue
        step, values = numbers[0], numbers[1:]
        rows.setdefault(seq, []).append((step, values, row[index[label_column]]))
        groups[seq] = row[index[group_column]] if group_column else seq
    if not rows:
        raise UserError(f"{path} has a header but no rows")
    recordings = []
    for seq, items in rows.items():
        items.sort(key=lambda item: item[0])
        x = np.array([v for _, v, _ in items], np.float32)
        y = np.array([label for _, _, label in items])
        recordings.append(Recording(x, y, f"{path.name}:{seq}", groups[seq]))
    return recordings, features


def read_sequence_file(path: Path, label_column: str = "label") -> tuple[Recording, list[str]]:
    """One sequence from a ``.npz`` (arrays ``frames`` (T, F) and ``labels`` (T,)) or a
    ``.csv[.gz]`` (``feature..., label``, optional ``step``) file; returns (recording, feature
    names). Its group is the file's name without suffixes.

    Args:
        path: the file.
        label_column: the label column of a CSV file.
    """
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                if "frames" not in data or "labels" not in data:
                    raise UserError(
                        f"expected arrays 'frames' and 'labels' in {path}, found "
                        f"{', '.join(data.files) or 'none'}"
                    )
                x = np.asarray(data["frames"], np.float32)
                y = np.asarray(data["labels"]).astype(str)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise UserError(f"cannot read {path} as NumPy .npz: {e}") from None
        if x.ndim != 2 or y.shape != (len(x),) or not len(x) or not x.shape[1]:
            raise UserError(
                f"{path}: expected frames (steps, features) and labels (steps,) with at least one "
                f"step and feature, found {x.shape} and {y.shape}"
            )
        names = [f"f{i}" for i in range(x.shape[1])]
    else:
        rows = files.read_rows(path, [label_column])
        names = [c for c in rows[0][1] if c not in (label_column, "step")]
        if not names:
            raise UserError(f"{path}: expected feature columns besides {label_column!r}")
        frames = []  # (step, values, label) of the rows that read as numbers
        for n, row in rows:
            stepped = ["step"] if "step" in row else []
            numbers = _floats([row[c] for c in (*stepped, *names)], f"{path}:{n}")
            if numbers is not None:
                step = numbers[0] if stepped else n
                frames.append((step, numbers[len(stepped) :], row[label_column]))
        if not frames:
            raise UserError(f"{path} has no frames that read as numbers")
        frames.sort(key=lambda frame: frame[0])
        x = np.array([v for _, v, _ in frames], np.float32)
        y = np.array([label for _, _, label in frames])
    return Recording(x, y, path.name, Path(path.name.removesuffix(".gz")).stem), names


def read_sequence_folder(path: Path, label_column: str = "label") -> tuple[list[Recording], list]:
    """One sequence per ``.csv`` (``feature..., label``, optional ``step``) or ``.npz``
    (arrays ``frames`` (T, F) and ``labels`` (T,)) file in a folder.

    Args:
        path: the folder.
        label_column: the label column of the CSV files.
    """
    found = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".npz"))
    if not found:
        raise UserError(f"expected .csv or .npz sequence files in {path}, found none")
    recordings, names = [], None
    for file in found:
        recording, file_names = read_sequence_file(file, label_column)
        if names is not None and len(file_names) != len(names):
            raise UserError(
                f"{file}: expected {len(names)} features like {found[0].name}, found "
                f"{len(file_names)}"
            )
        names = names or file_names
        recordings.append(recording)
    return recordings, names


def split_groups(recordings: list[Recording], fractions: tuple, seed: int) -> list[list]:
    """Recordings split by group with a fixed seed: no group is in two splits.

    Args:
        recordings: all recordings.
        fractions: share of groups for each split but the last (e.g. test, validation).
        seed: the same seed gives the same split.
    """
    groups = sorted({r.group for r in recordings})
    random.Random(seed).shuffle(groups)
    parts, start = [], 0
    for fraction in fractions:
        take = max(1, math.floor(fraction * len(groups) + 0.5)) if fraction > 0 else 0
        parts.append(set(groups[start : start + take]))
        start += take
    parts.append(set(groups[start:]))
    return [[r for r in recordings if r.group in part] for part in parts]


def windows(x: np.ndarray, length: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) of windows of ``length`` every ``stride`` steps covering all of ``x``."""
    if len(x) <= length:
        return [(0, len(x))]
    starts = list(range(0, len(x) - length + 1, stride))
    if starts[-1] + length < len(x):
        starts.append(len(x) - length)
    return [(s, s + length) for s in starts]


def window_pairs(
    frames: np.ndarray, ids: np.ndarray, length: int, stride: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frames, label ids) of each window of ``windows``, ``length`` steps each: frames past a
    sequence's end are NaN and their label id is 0 (padding).

    Args:
        frames: one sequence's (steps, features) frames.
        ids: its label ids (steps,).
        length: the window length.
        stride: steps between window starts.
    """
    for start, end in windows(frames, length, stride):
        x = np.full((length, frames.shape[1]), np.nan, np.float32)
        y = np.zeros(length, np.int32)
        x[: end - start], y[: end - start] = frames[start:end], ids[start:end]
        yield x, y
