"""The files of a glob of frame sequences, read as rows of a ``stream.Stream``: one row per
sequence.

Two forms, told apart by the first file (``frame_stream.source``):

- sequence files: one sequence per ``.npz`` (arrays ``frames`` (T, F), ``labels`` (T,)) or
  ``.csv[.gz]`` (``feature..., label``, optional ``step``) file, as in a folder
  (``SequenceFiles``);
- long-CSV shards: ``sequence_id, step, feature..., label`` rows, every sequence wholly inside
  one shard, in any order there (``LongCsvShards``; a shard is assembled whole).

A row's fields are ``FIELDS``: its group (the ``group_column``, else the sequence id or the
file's name), the sequence, its distinct labels as text (for the checking pass to count) and the
``frames.Recording`` itself. Only the group is hashed (``Fields.key``), so a subject's
sequences share a split on every rerun and every worker, and the recording is never read as
text. Bad rows go to the run's ``reading.Report``, with their file and line.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import io
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lstm_recipes.data import frames, reading, shards
from lstm_recipes.data.shards import Fields
from lstm_recipes.errors import UserError

FIELDS = Fields(("group", "sequence", "labels", "recording"), key=(0,))
SEQUENCE, LABELS, RECORDING = 1, 2, 3
_JOIN = "\x1f"  # between a sequence's distinct labels in its ``labels`` field
_YIELD = 256  # sequences per batch of rows


def kind(path: Path) -> str | None:
    """``npz``, ``csv`` (``.csv.gz`` too), ``parquet`` or ``tfrecord`` (``.tfrecord[s]``,
    ``.tfrec``, ``.gz`` too) from a file name, else None."""
    name = path.name.lower()
    if name.endswith(".npz"):
        return "npz"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.removesuffix(".gz").endswith((".tfrecord", ".tfrecords", ".tfrec")):
        return "tfrecord"
    return "csv" if name.removesuffix(".gz").endswith(".csv") else None


def is_long(path: Path) -> bool:
    """Whether a file can only hold long-format rows (Parquet, TFRecord)."""
    return kind(path) in ("parquet", "tfrecord")


def find(spec: str) -> list[Path]:
    """The files of a glob, sorted by name: ``.npz`` or ``.csv[.gz]``.

    Args:
        spec: the glob.
    """
    paths = [Path(p) for p in sorted(glob.glob(spec, recursive=True)) if Path(p).is_file()]
    if not paths:
        raise UserError(f"expected files matching {spec!r}, found none")
    odd = next((p for p in paths if kind(p) is None), None)
    if odd is not None:
        raise UserError(
            f"expected .npz, .csv[.gz], .parquet or .tfrecord[.gz] files matching {spec!r}, "
            f"found {odd.name}"
        )
    return paths


def header(path: Path, report: reading.Report) -> list[str]:
    """The column names on a CSV file's first line, in the run's encoding (a Parquet file's
    columns; the features of a TFRecord file's first ``tf.train.Example``, in natural order of
    their names: f2 before f10).

    Args:
        path: the file (``.gz`` too).
        report: the run's reading settings.
    """
    if kind(path) == "tfrecord":
        return _example_features(path)
    if kind(path) == "parquet":
        try:
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(path).schema_arrow.names)
        except ImportError:
            raise UserError(
                f"reading {path} needs pyarrow: pip install 'lstm-recipes[parquet]' (or pyarrow)"
            ) from None
        except Exception as e:  # pyarrow raises its own ArrowInvalid, OSError, ...
            raise UserError(f"expected a Parquet file at {path}, found: {e}") from None
    utf8 = report.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    try:
        with shards.open_shard(path) as f:
            # Undecodable bytes further on are for the full read to report, with their line.
            text = io.TextIOWrapper(f, "utf-8-sig" if utf8 else report.encoding, "replace")
            first = text.readline()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    return next(csv.reader([first]), [])


def _example_features(path: Path) -> list[str]:
    import tensorflow as tf

    compression = "GZIP" if path.name.lower().endswith(".gz") else ""
    try:
        first = next(iter(tf.data.TFRecordDataset(str(path), compression).take(1)), None)
        example = None if first is None else tf.train.Example.FromString(first.numpy())
    except Exception as e:  # a corrupt file or record: TensorFlow's or protobuf's own error
        raise UserError(
            f"expected TFRecord files of tf.train.Example at {path}, found: {e}"
        ) from None
    if example is None:
        raise UserError(f"expected at least one tf.train.Example in {path}, found none")
    return sorted(example.features.feature, key=_natural)


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def labels_text(recording: frames.Recording) -> str:
    """A sequence's distinct labels, sorted, as one text field (see ``labels_of``)."""
    return _JOIN.join(sorted({str(y) for y in recording.labels.tolist()}))


def labels_of(text: str) -> list[str]:
    """The labels of a ``labels_text`` field.

    Args:
        text: the field.
    """
    return text.split(_JOIN)


@dataclasses.dataclass(frozen=True)
class SequenceFiles:
    """Reads one sequence per file (``frames.read_sequence_file``); a ``stream.Reader``.

    Args:
        label_column: the label column of CSV files.
    """

    label_column: str = "label"

    def __call__(self, path, fields: Fields, report: reading.Report) -> Iterator[shards.Batch]:
        path = Path(path)
        with reading.using(report):
            recording, _ = frames.read_sequence_file(path, self.label_column)
        yield [[recording.group], [str(path)], [labels_text(recording)], [recording]], [1]

    def count(self, paths: list) -> int:
        """Sequences in the files: one each."""
        return len(paths)


@dataclasses.dataclass(frozen=True)
class LongCsvShards:
    """Reads long-CSV shards (``sequence_id, step, feature..., label`` rows); a
    ``stream.Reader``. A shard's sequences are assembled when it has been read (memory: one
    shard), each one's frames sorted by step, as ``frames.read_long_csv`` does for one file.

    Args:
        sequence_column: the column naming each frame's sequence.
        step_column: the column ordering frames within a sequence.
        label_column: the column of frame labels.
        group_column: a column grouping sequences for splitting ("": the sequence id).
    """

    sequence_column: str = "sequence_id"
    step_column: str = "step"
    label_column: str = "label"
    group_column: str = ""

    def columns(self, path: Path, report: reading.Report) -> tuple[list[str], list[str]]:
        """(the header, the feature columns) of a shard, checked.

        Args:
            path: the shard.
            report: the run's reading settings.
        """
        found = header(path, report)
        features = frames.long_csv_features(
            path,
            found,
            self.sequence_column,
            self.step_column,
            self.label_column,
            self.group_column,
        )
        return found, features

    def __call__(self, path, fields: Fields, report: reading.Report) -> Iterator[shards.Batch]:
        path = Path(path)
        found, features = self.columns(path, report)
        at = {c: i for i, c in enumerate(found)}
        numeric = [at[c] for c in (self.step_column, *features)]
        parts: dict[str, list] = {}  # sequence -> [(first line, steps and values, labels)]
        groups: dict[str, str] = {}
        for columns, lines in shards.read_batches(path, Fields(tuple(found)), report):
            numbers, kept = _numbers([columns[i] for i in numeric], lines, path, report)
            sequences, labels = (
                columns[at[self.sequence_column]],
                np.array(columns[at[self.label_column]]),
            )
            grouping = columns[at[self.group_column]] if self.group_column else sequences
            rows: dict[str, list[int]] = {}
            for i in np.flatnonzero(kept):
                rows.setdefault(sequences[i], []).append(i)
            for sequence, picked in rows.items():
                parts.setdefault(sequence, []).append(
                    (lines[picked[0]], numbers[picked], labels[picked])
                )
                groups[sequence] = grouping[picked[-1]]  # the last row's, as read_long_csv
        out: list[list] = [[] for _ in FIELDS.names]
        first_lines: list[int] = []
        for sequence in list(parts):
            pieces = parts.pop(sequence)  # freed as they become recordings
            numbers = np.concatenate([p[1] for p in pieces])
            order = np.argsort(numbers[:, 0], kind="stable")
            recording = frames.Recording(
                numbers[order, 1:].astype(np.float32),
                np.concatenate([p[2] for p in pieces])[order],
                f"{path.name}:{sequence}",
                groups[sequence],
            )
            row = (recording.group, sequence, labels_text(recording), recording)
            for column, value in zip(out, row):
                column.append(value)
            first_lines.append(pieces[0][0])
            if len(first_lines) == _YIELD:
                yield out, first_lines
                out, first_lines = [[] for _ in FIELDS.names], []
        if first_lines:
            yield out, first_lines

    def count(self, paths: list) -> int:
        """Sequences in the shards (distinct ids per shard), for a ``validation_size`` count."""
        run = reading.current()
        report = reading.Report(run.encoding, "replace", skip_bad_rows=2**62, quiet=True)
        total = 0
        for path in paths:
            ids: set[str] = set()
            for columns, _ in shards.read_batches(path, Fields((self.sequence_column,)), report):
                ids.update(columns[0])
            total += len(ids)
        return total


def _numbers(columns: list[list[str]], lines: list[int], path: Path, report: reading.Report):
    """(rows, columns) float64 of text columns, and which rows read as numbers (a row that
    does not goes to ``report``: skipped within the run's bound, else refused)."""
    try:
        return np.array(columns, np.float64).T, np.ones(len(lines), bool)
    except ValueError:
        pass  # find the row, one at a time
    out, kept = np.zeros((len(lines), len(columns))), np.ones(len(lines), bool)
    for i, line in enumerate(lines):
        try:
            out[i] = [float(column[i]) for column in columns]
        except ValueError:
            bad = next(c[i] for c in columns if not frames.is_number(c[i]))
            report.bad_row(f"{path}:{line}", f"expected a number, found {bad!r}")
            kept[i] = False
    return out, kept


class Checked:
    """A reader for the checking pass (``corpus.load``, ``corpus.read_all``): refuses a
    sequence found in two shards, and one whose frames' width differs from the first's.

    It remembers every sequence id it read, so it serves that one pass; the stream's later
    passes use the plain reader.

    Args:
        reader: the plain reader (``SequenceFiles`` or ``LongCsvShards``).
    """

    def __init__(self, reader):
        self.reader = reader
        self.shard_of: dict[str, str] = {}
        self.first: frames.Recording | None = None

    def __call__(self, path, fields: Fields, report: reading.Report) -> Iterator[shards.Batch]:
        for columns, lines in self.reader(path, fields, report):
            for sequence, recording in zip(columns[SEQUENCE], columns[RECORDING]):
                other = self.shard_of.setdefault(sequence, str(path))
                if other != str(path):
                    raise UserError(
                        f"expected each sequence wholly inside one shard, found sequence "
                        f"{sequence!r} in {other} and in {path}"
                    )
                self.first = self.first or recording
                width, expected = recording.frames.shape[1], self.first.frames.shape[1]
                if width != expected:
                    raise UserError(
                        f"{recording.name}: expected {expected} features like "
                        f"{self.first.name}, found {width}"
                    )
            yield columns, lines
