"""Reading user files: CSV/TSV/JSONL tables (gzip too) and folders of text files per class.

Everything here is pure Python, so bad input is reported before TensorFlow starts.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from pathlib import Path

from lstm_recipes.data import reading
from lstm_recipes.errors import UserError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
_SEPARATOR = {"csv": "comma", "tsv": "tab"}


def read_text(path: Path) -> str:
    """The whole text of a file in the run's encoding (UTF-8 unless ``reading.options`` says
    otherwise), gunzipped when it ends in ``.gz``.

    Args:
        path: the file.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"expected a file at {path}, found none") from None
    except IsADirectoryError:
        raise UserError(f"expected a file at {path}, found a folder") from None
    except (OSError, EOFError, zlib.error) as e:
        # zlib.error: a .gz whose header is fine but whose compressed stream is corrupt.
        raise UserError(f"cannot read {path}: {e}") from None
    return reading.decode(raw, str(path))


def decode_utf8(raw: bytes, where: str) -> str:
    """Text of a file's bytes in the run's encoding (UTF-8 by default; the name stays for
    recipes copied before encodings could be chosen); see ``reading.decode``.

    Args:
        raw: the file's bytes.
        where: the file's name, for the message.
    """
    return reading.decode(raw, where)


def table_format(path: Path) -> str | None:
    """``csv``, ``tsv`` or ``jsonl`` from a file name (``.gz`` allowed), else None."""
    name = path.name.lower().removesuffix(".gz")
    for suffix in TABLE_SUFFIXES:
        if name.endswith(suffix):
            return "jsonl" if suffix == ".json" else suffix[1:]
    return None


def read_table(path: Path, columns: list[str]) -> list[dict]:
    """Rows of a CSV, TSV or JSONL file (gzip too) as dicts holding at least ``columns``.

    A broken row (ragged, not JSON, missing a key) is an error naming its line, or is skipped
    and reported within the run's ``skip_bad_rows``; header problems are always errors.

    Args:
        path: the file; its format comes from its name.
        columns: names every row must have; a missing one is an error naming those found.
    """
    return [row for _, row in read_rows(path, columns)]


def read_rows(path: Path, columns: list[str]) -> list[tuple[int, dict]]:
    """``read_table``'s rows with the line each ends on, for messages about them.

    Args:
        path: the file; its format comes from its name.
        columns: names every row must have.
    """
    fmt = table_format(path)
    if fmt is None:
        raise UserError(f"expected a .csv, .tsv or .jsonl file (optionally .gz), got {path.name}")
    text = read_text(path)
    if not text.strip():
        raise UserError(f"{path} is empty; expected a header and at least one row")
    rows = _json_rows(path, text, columns) if fmt == "jsonl" else _csv_rows(path, text, columns)
    if not rows:
        raise UserError(f"{path} has a header but no rows")
    return rows


def _json_rows(path: Path, text: str, columns: list[str]) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:
            # ValueError covers JSONDecodeError and integers past Python's digit limit;
            # RecursionError, arrays nested thousands deep.
            reading.bad_row(
                where,
                f"expected one JSON object per line, found {line[:60]!r} "
                f"({type(e).__name__}: {str(e)[:100]})",
            )
            continue
        if not isinstance(row, dict):
            reading.bad_row(where, f"expected a JSON object, found {type(row).__name__}")
            continue
        missing = [c for c in columns if c not in row]
        if missing:
            reading.bad_row(
                where,
                f"expected keys {', '.join(columns)}; missing {', '.join(missing)}"
                f" (found {', '.join(row) or 'none'}; choose others with --set)",
            )
            continue
        rows.append((number, row))
    return rows


def _csv_rows(path: Path, text: str, columns: list[str]) -> list[tuple[int, dict]]:
    fmt = table_format(path)
    # TSV files in the wild (Anki/Tatoeba, UCI) do not quote: a leading " is text.
    if fmt == "tsv":
        reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.DictReader(io.StringIO(text))
    try:
        found = reader.fieldnames or []
        missing = [c for c in columns if c not in found]
        if missing:
            raise UserError(
                f"expected columns {', '.join(columns)} in {path}; missing "
                f"{', '.join(missing)}, found {', '.join(found) or 'no header'} "
                "(choose others with --set)"
            )
        twice = [c for c in columns if found.count(c) > 1]
        if twice:
            raise UserError(
                f"expected column {twice[0]!r} once in the header of {path}, found it "
                f"{found.count(twice[0])} times"
            )
        rows = []
        for row in reader:
            # A row with more or fewer fields than the header would be misread silently
            # (an unquoted comma shifts the label into the text).
            if None in row or None in row.values():
                count = (
                    len(found) + len(row[None])
                    if None in row
                    else sum(v is not None for v in row.values())
                )
                reading.bad_row(
                    f"{path}:{reader.line_num}",
                    f"expected {len(found)} fields like the header, found {count} (quote "
                    f"fields that hold a {_SEPARATOR[fmt]})",
                )
                continue
            rows.append((reader.line_num, row))
    except csv.Error as e:
        # The csv module's own errors (NUL bytes, over-long fields) stay errors: where the
        # next record starts is then uncertain.
        raise UserError(
            f"{path}:{reader.line_num}: expected well-formed {fmt.upper()}, found: {e}"
        ) from None
    return rows


def read_class_folder(path: Path, suffix: str = ".txt") -> list[tuple[str, str]]:
    """(text, class) pairs from a folder with one sub-folder of text files per class.

    Args:
        path: the folder; each sub-folder name is a class.
        suffix: the file name ending that counts as an example.
    """
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(
            f"expected {path} to hold one sub-folder of {suffix} files per class, found no sub-folders"
        )
    examples = []
    for folder in classes:
        for file in sorted(folder.rglob(f"*{suffix}")):
            examples.append((read_text(file), folder.name))
    if not examples:
        raise UserError(f"found no {suffix} files in the class folders of {path}")
    return examples
