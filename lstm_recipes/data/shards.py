"""Corpora in shards: find the files of a spec and read their rows in batches, in bounded memory.

A spec is a glob (``'corpus/part-*.tsv.gz'``), a folder of shards, or one Parquet or TFRecord
file. Formats, by file name: CSV, TSV and JSONL (each ``.gz`` too), Parquet (read by row group
with ``pyarrow``), TFRecord of ``tf.train.Example`` (``.tfrecord``, ``.tfrecords``, ``.tfrec``;
``.gz`` for GZIP-compressed records). Rows come out as batches of text columns with the line
(or row) number of each, for messages that name the file and line.

Text is decoded line by line with the run's ``encoding``; a broken row (wrong field count, bad
JSON, an undecodable line under ``decode_errors=strict``, an empty field) goes to the run's
``reading.Report``, which skips it within ``skip_bad_rows`` or refuses with a one-line error.
"""

from __future__ import annotations

import csv
import glob
import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

from lstm_recipes.data import reading
from lstm_recipes.data.rows import (
    ASCII_SPACE,
    BATCH_ROWS,
    Batch,
    Fields,
    header_columns,
    text_value,
)
from lstm_recipes.errors import UserError

TEXT_FORMATS = ("csv", "tsv", "jsonl")
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".tfrecord": "tfrecord",
    ".tfrecords": "tfrecord",
    ".tfrec": "tfrecord",
}


def file_format(path: Path) -> str | None:
    """``csv``, ``tsv``, ``jsonl``, ``parquet`` or ``tfrecord`` from a file name, else None."""
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def is_shards_spec(spec: str) -> bool:
    """True when ``spec`` names a corpus to stream: a glob, a folder of shard files, or a
    Parquet or TFRecord file. (A single CSV/TSV/JSONL file is read into memory as before.)

    Args:
        spec: the ``--data`` value.
    """
    if spec.startswith("tfds:") or spec == "builtin":
        return False
    if glob.has_magic(spec):
        return True
    path = Path(spec)
    if path.is_dir():
        # A folder of class sub-folders, or of .txt documents, is not a corpus of shards.
        entries = list(path.iterdir())
        return not any(p.is_dir() for p in entries) and any(
            file_format(p) and not p.name.lower().removesuffix(".gz").endswith(".txt")
            for p in entries
        )
    return path.is_file() and file_format(path) in ("parquet", "tfrecord")


def find(spec: str) -> list[Path]:
    """The shard files of a spec, sorted by name, all of one format.

    Args:
        spec: a glob, a folder or a file.
    """
    if glob.has_magic(spec):
        paths = [Path(p) for p in sorted(glob.glob(spec, recursive=True)) if Path(p).is_file()]
        what = f"files matching {spec!r}"
    elif Path(spec).is_dir():
        paths = sorted(p for p in Path(spec).iterdir() if p.is_file() and file_format(p))
        what = f"shard files (.csv/.tsv/.jsonl[.gz], .parquet, .tfrecord) in {spec}"
    else:
        paths = [Path(spec)] if Path(spec).is_file() else []
        what = f"a file at {spec}"
    if not paths:
        raise UserError(f"expected {what}, found none")
    formats = {file_format(p) for p in paths}
    if None in formats:
        odd = next(p for p in paths if file_format(p) is None)
        raise UserError(
            f"expected .csv, .tsv, .jsonl (optionally .gz), .parquet or .tfrecord shards, "
            f"found {odd.name} among {what}"
        )
    if len(formats) > 1:
        raise UserError(
            f"expected shards of one format, found {', '.join(sorted(formats))} among {what}"
        )
    return paths


def read_batches(path: Path | str, fields: Fields, report: reading.Report) -> Iterator[Batch]:
    """Rows of one shard, ``BATCH_ROWS`` at a time: the fields' values and each row's line.

    Args:
        path: the shard.
        fields: the fields to read.
        report: where bad rows and replaced bytes go (skipped within its bound, else refused).
    """
    from lstm_recipes.data import records

    path = Path(path)
    fmt = file_format(path)
    rows = {
        "csv": _csv_rows,
        "tsv": _tsv_rows,
        "jsonl": _jsonl_rows,
        "parquet": records.parquet_rows,
        "tfrecord": records.tfrecord_rows,
    }[fmt](path, fields, report)
    columns: list[list[str]] = [[] for _ in fields.names]
    lines: list[int] = []
    for line, values in rows:
        if fields.skip_blank and not all(v.strip(ASCII_SPACE) for v in values):
            continue
        for column, value in zip(columns, values):
            column.append(value)
        lines.append(line)
        if len(lines) == BATCH_ROWS:
            yield columns, lines
            columns, lines = [[] for _ in fields.names], []
    if lines:
        yield columns, lines


# ----------------------------------------------------------------------------- text formats


_CHUNK = 1 << 22  # bytes read and decoded at a time


def open_shard(path: Path):
    """A shard's bytes, gunzipped when it ends in ``.gz``."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        return opener(path, "rb")
    except FileNotFoundError:
        raise UserError(f"expected a file at {path}, found none (was it moved?)") from None


def decoded_lines(path: Path, report: reading.Report) -> Iterator[tuple[int, str | None]]:
    """(line number, text) of each line of a shard, without its line end; text is None for a
    line that could not be decoded and was skipped (``report`` refuses it past its bound).

    Decodes 4 MiB at a time, line by line only in a block that holds an undecodable byte (to
    name its line): per-line reads of a gzip stream ran at a third of the speed.

    Args:
        path: the shard (gzip when its name ends in ``.gz``).
        report: the run's encoding and ``decode_errors``; where undecodable lines go.
    """
    if "\n".encode(report.encoding, errors="ignore") != b"\n":  # UTF-16/32: bytes of "\n" differ
        yield from _wide_lines(path, report)
        return
    utf8 = report.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    number, pending, first = 0, b"", True
    try:
        with open_shard(path) as f:
            while True:
                chunk = f.read(_CHUNK)
                block = pending + chunk
                cut = len(block) if not chunk else block.rfind(b"\n") + 1
                block, pending = block[:cut], block[cut:]
                if block:
                    codec = "utf-8-sig" if utf8 and first else report.encoding
                    first = False
                    try:
                        lines = block.decode(codec).split("\n")
                    except UnicodeDecodeError:
                        lines = None
                    if lines is not None:
                        if block.endswith(b"\n"):
                            lines.pop()
                        for text in lines:
                            number += 1
                            yield number, text.removesuffix("\r")
                    else:
                        for raw in block.split(b"\n")[: -1 if block.endswith(b"\n") else None]:
                            number += 1
                            yield number, _decode_line(raw, path, number, report)
                if not chunk:
                    break
    except (OSError, EOFError, zlib.error) as e:
        # gzip.BadGzipFile is an OSError; a truncated member ends in EOFError.
        raise UserError(f"{path}: cannot read past line {number:,}: {e}") from None


def _decode_line(raw: bytes, path: Path, number: int, report: reading.Report) -> str | None:
    try:
        return raw.decode(report.encoding).removesuffix("\r")
    except UnicodeDecodeError as e:
        if report.decode_errors == "replace":
            return report.replace(raw, report.encoding, str(path)).removesuffix("\r")
        report.bad_row(
            f"{path}:{number}",
            f"expected {report.encoding} text, found byte 0x{raw[e.start]:02x} that is not "
            "(set encoding=NAME, or decode_errors=replace)",
        )
        return None


def _wide_lines(path: Path, report: reading.Report) -> Iterator[tuple[int, str | None]]:
    import io

    number = 0
    try:
        with open_shard(path) as f:
            text = io.TextIOWrapper(f, report.encoding, errors=report.decode_errors, newline="")
            for number, line in enumerate(text, 1):  # noqa: B007 (read after the loop)
                yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path}: expected {report.encoding} text after line {number:,}, found {e.reason} "
            "(set encoding=NAME, or decode_errors=replace)"
        ) from None
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read past line {number:,}: {e}") from None


def tsv_columns(path: Path, fields: Fields, report: reading.Report) -> tuple[list[int], int | None]:
    """The column index of each field in a TSV shard, and its width (None when headerless:
    ``fields.positions`` give the columns and rows may be wider).

    Args:
        path: the shard.
        fields: the fields to read.
        report: the run's report (for decoding the header line).
    """
    if fields.positions:
        return list(fields.positions), None
    first = next((text for _, text in decoded_lines(path, report) if text is not None), None)
    found = (first or "").split("\t")
    return header_columns(path, list(fields.names), found), len(found)


def _tsv_rows(path: Path, fields: Fields, report: reading.Report):
    lines = decoded_lines(path, report)
    if fields.positions:
        indices, width = list(fields.positions), None
    else:
        first = next((text for _, text in lines if text is not None), None)
        if first is None:
            return
        found = first.split("\t")
        indices, width = header_columns(path, list(fields.names), found), len(found)
    need = max(indices) + 1
    for number, text in lines:
        if text is None or not text.strip(ASCII_SPACE):
            continue
        values = text.split("\t")
        if len(values) < need or (width is not None and len(values) != width):
            report.bad_row(
                f"{path}:{number}",
                f"expected {width or f'at least {need}'} tab-separated fields, found {len(values)}",
            )
            continue
        yield number, [values[i].strip(ASCII_SPACE) for i in indices]


def _csv_rows(path: Path, fields: Fields, report: reading.Report):
    numbered = decoded_lines(path, report)
    at = [0]

    def texts():
        for number, text in numbered:
            at[0] = number
            if text is not None:
                yield text

    reader = csv.reader(texts())
    try:
        found = next(reader, None)
        if found is None:
            return
        indices = header_columns(path, list(fields.names), found)
        width = len(found)
        start = at[0] + 1
        for values in reader:
            number, start = start, at[0] + 1
            if not values:
                continue
            if len(values) != width:
                report.bad_row(
                    f"{path}:{number}",
                    f"expected {width} fields like the header, found {len(values)} (quote "
                    "fields that hold a comma)",
                )
                continue
            yield number, [values[i] for i in indices]
    except csv.Error as e:
        raise UserError(f"{path}:{at[0]}: expected well-formed CSV, found: {e}") from None


def _jsonl_rows(path: Path, fields: Fields, report: reading.Report):
    for number, text in decoded_lines(path, report):
        if text is None or not text.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(text)
        except (ValueError, RecursionError) as e:
            report.bad_row(where, f"expected one JSON object per line, found {text[:60]!r} ({e})")
            continue
        if not isinstance(row, dict):
            report.bad_row(where, f"expected a JSON object, found {type(row).__name__}")
            continue
        missing = [n for n in fields.names if row.get(n) is None]
        if missing:
            report.bad_row(
                where,
                f"expected keys {', '.join(fields.names)}; missing {', '.join(missing)} (found "
                f"{', '.join(row) or 'none'}; choose others with --set)",
            )
            continue
        yield number, [text_value(row[n]) for n in fields.names]
