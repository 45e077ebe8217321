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

from lstm_recipes.errors import UserError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
_SEPARATOR = {"csv": "comma", "tsv": "tab"}


def read_text(path: Path) -> str:
    """The whole UTF-8 text of a file, gunzipped when it ends in ``.gz``.

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
    return decode_utf8(raw, str(path))


def decode_utf8(raw: bytes, where: str) -> str:
    """Text of UTF-8 bytes (a leading byte order mark is dropped), or a UserError saying where
    the first byte that is not UTF-8 is.

    Args:
        raw: the file's bytes.
        where: the file's name, for the message.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            found = "UTF-16 text (it starts with a UTF-16 byte order mark)"
        else:
            line = raw[: e.start].count(b"\n") + 1
            found = (
                f"byte 0x{raw[e.start]:02x} at offset {e.start} (line {line}) that is not valid "
                "UTF-8"
            )
        raise UserError(
            f"expected UTF-8 text in {where}, found {found} (re-save the file as UTF-8)"
        ) from None


def table_format(path: Path) -> str | None:
    """``csv``, ``tsv`` or ``jsonl`` from a file name (``.gz`` allowed), else None."""
    name = path.name.lower().removesuffix(".gz")
    for suffix in TABLE_SUFFIXES:
        if name.endswith(suffix):
            return "jsonl" if suffix == ".json" else suffix[1:]
    return None


def read_table(path: Path, columns: list[str]) -> list[dict]:
    """Rows of a CSV, TSV or JSONL file (gzip too) as dicts holding at least ``columns``.

    Args:
        path: the file; its format comes from its name.
        columns: names every row must have; a missing one is an error naming those found.
    """
    fmt = table_format(path)
    if fmt is None:
        raise UserError(f"expected a .csv, .tsv or .jsonl file (optionally .gz), got {path.name}")
    text = read_text(path)
    if not text.strip():
        raise UserError(f"{path} is empty; expected a header and at least one row")
    if fmt == "jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as e:
                # ValueError covers JSONDecodeError and integers past Python's digit limit;
                # RecursionError, arrays nested thousands deep.
                raise UserError(
                    f"{path}:{number}: expected one JSON object per line, found {line[:60]!r} "
                    f"({type(e).__name__}: {str(e)[:100]})"
                ) from None
            if not isinstance(row, dict):
                raise UserError(
                    f"{path}:{number}: expected a JSON object, found {type(row).__name__}"
                )
            missing = [c for c in columns if c not in row]
            if missing:
                raise UserError(
                    f"{path}:{number}: expected keys {', '.join(columns)}; missing {', '.join(missing)}"
                    f" (found {', '.join(row) or 'none'}; choose others with --set)"
                )
            rows.append(row)
    else:
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
                    raise UserError(
                        f"{path}:{reader.line_num}: expected {len(found)} fields like the header, "
                        f"found {count} (quote fields that hold a {_SEPARATOR[fmt]})"
                    )
                rows.append(row)
        except csv.Error as e:
            raise UserError(
                f"{path}:{reader.line_num}: expected well-formed {fmt.upper()}, found: {e}"
            ) from None
    if not rows:
        raise UserError(f"{path} has a header but no rows")
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
