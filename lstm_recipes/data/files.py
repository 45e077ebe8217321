"""Reading user files: CSV/TSV/JSONL tables (gzip too) and folders of text files per class.

Everything here is pure Python, so bad input is reported before TensorFlow starts.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

from lstm_recipes.errors import UserError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


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
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(
            f"expected UTF-8 text in {path}, found byte 0x{raw[e.start]:02x} at offset {e.start} "
            f"(line {line}) "
            "that is not valid UTF-8 (re-save the file as UTF-8)"
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
            except json.JSONDecodeError as e:
                raise UserError(
                    f"{path}:{number}: expected one JSON object per line: {e}"
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
        found = reader.fieldnames or []
        missing = [c for c in columns if c not in found]
        if missing:
            raise UserError(
                f"expected columns {', '.join(columns)} in {path}; missing {', '.join(missing)}, "
                f"found {', '.join(found) or 'no header'} (choose others with --set)"
            )
        try:
            rows = list(reader)
        except csv.Error as e:
            raise UserError(f"{path}: malformed {fmt.upper()}: {e}") from None
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
