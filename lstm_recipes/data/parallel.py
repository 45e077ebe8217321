"""Parallel text: (source, target) sentence pairs from the files translation corpora come in.

Pure Python, so bad input is reported before TensorFlow starts. Forms:

- ``pairs.txt`` / ``pairs.tsv`` (``.gz`` too): ``source<TAB>target[<TAB>anything]`` per line,
  the Anki/Tatoeba format; also inside a ``.zip`` or ``.zip.gz`` (the one text member, or
  ``zip_member``).
- ``train.en,train.de``: two line-aligned files (``.gz`` too), line i of one translating line i
  of the other.
- ``pairs.jsonl`` / ``pairs.csv`` (``.gz`` too): a source and a target key or column.
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from pathlib import Path

from lstm_recipes.data import files, reading
from lstm_recipes.errors import UserError

PAIR_SUFFIXES = (".txt", ".tsv")


def _lines(text: str) -> list[str]:
    # Only \n ends a line: corpora hold U+0085 and U+2028 inside sentences.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _zip_text(path: Path, member: str) -> tuple[str, str]:
    try:
        if path.name.lower().endswith(".gz"):
            # zipfile seeks in its file, which a gzip stream cannot do: unpack into memory.
            archive = zipfile.ZipFile(io.BytesIO(gzip.decompress(path.read_bytes())))
        else:
            archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as e:
        raise UserError(f"expected a zip archive at {path}: {e}") from None
    with archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if member:
            if member not in names:
                raise UserError(
                    f"expected a member {member!r} in {path}, found {', '.join(names) or 'none'}"
                )
            chosen = member
        else:
            # Tatoeba zips carry an `_about.txt` beside the pairs.
            candidates = [
                n
                for n in names
                if n.lower().endswith(PAIR_SUFFIXES)
                and not Path(n).name.startswith(("_", "."))
                and not Path(n).name.lower().startswith(("readme", "license", "about"))
            ]
            if len(candidates) != 1:
                raise UserError(
                    f"expected one .txt/.tsv file of pairs in {path}, found "
                    f"{', '.join(candidates) or 'none'} (choose one with --set zip_member=NAME)"
                )
            chosen = candidates[0]
        try:
            raw = archive.read(chosen)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError) as e:
            # A damaged member (bad CRC, truncated stream), or an encrypted or unsupported one.
            raise UserError(
                f"expected a readable member {chosen!r} in {path}, found: {e}"
            ) from None
    return reading.decode(raw, f"{path}:{chosen}"), f"{path}:{chosen}"


def parse_tab_pairs(text: str, where: str) -> list[tuple[str, str]]:
    """``source<TAB>target[<TAB>...]`` lines to pairs; blank lines are skipped.

    Args:
        text: the file's text.
        where: the file's name, for error messages.
    """
    pairs = []
    for number, line in enumerate(_lines(text), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            reading.bad_row(
                f"{where}:{number}",
                f"expected source<TAB>target, found {len(fields)} field (no tab) in {line[:60]!r}",
            )
            continue
        pairs.append((fields[0].strip(), fields[1].strip()))
    if not pairs:
        raise UserError(f"{where} has no sentence pairs")
    return pairs


def read_aligned(source: Path, target: Path) -> list[tuple[str, str]]:
    """Pairs from two line-aligned files; their line counts must match.

    Args:
        source: one sentence per line.
        target: the translation of each line of ``source``, line for line.
    """
    left, right = _lines(files.read_text(source)), _lines(files.read_text(target))
    if len(left) != len(right):
        raise UserError(
            f"expected line-aligned files, found {len(left):,} lines in {source} and "
            f"{len(right):,} in {target}"
        )
    if not left:
        raise UserError(f"{source} and {target} are empty; expected one sentence per line")
    return [(a.strip(), b.strip()) for a, b in zip(left, right)]


def read_pairs(
    spec: str, source_column: str = "source", target_column: str = "target", zip_member: str = ""
) -> tuple[list[tuple[str, str]], str]:
    """(source, target) pairs from a file spec, and a description of where they came from.

    Args:
        spec: a pairs file (``.txt``/``.tsv``/``.zip``/``.jsonl``/``.csv``, ``.gz`` too) or
            ``SOURCE_FILE,TARGET_FILE``.
        source_column: key or column of the source in JSONL/CSV.
        target_column: key or column of the target in JSONL/CSV.
        zip_member: the member of a ``.zip`` to read (default: its one text file).
    """
    if "," in spec and not Path(spec).exists():
        parts = spec.split(",")
        if len(parts) != 2 or not all(parts):
            raise UserError(f"expected SOURCE_FILE,TARGET_FILE, got {spec!r}")
        source, target = Path(parts[0]), Path(parts[1])
        return read_aligned(source, target), f"{source} + {target}"
    path = Path(spec)
    if path.is_dir():
        raise UserError(f"expected a file of sentence pairs, found a folder at {path}")
    if not path.exists():
        raise UserError(
            "expected --data to be builtin, tfds:NAME, a pairs file (.txt/.tsv/.zip/.jsonl/.csv) "
            f"or SOURCE_FILE,TARGET_FILE; found no file at {spec}"
        )
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".zip"):
        text, where = _zip_text(path, zip_member)
        return parse_tab_pairs(text, where), where
    if name.endswith(PAIR_SUFFIXES):
        return parse_tab_pairs(files.read_text(path), str(path)), str(path)
    if files.table_format(path) in ("jsonl", "csv"):
        pairs = []
        for number, row in files.read_rows(path, [source_column, target_column]):
            src, tgt = row[source_column], row[target_column]
            if not isinstance(src, str) or not isinstance(tgt, str):
                reading.bad_row(
                    f"{path}:{number}",
                    f"expected text in {source_column!r} and {target_column!r}, found "
                    f"{type(src).__name__} and {type(tgt).__name__}",
                )
                continue
            pairs.append((src.strip(), tgt.strip()))
        return pairs, str(path)
    raise UserError(
        f"expected a .txt, .tsv, .zip, .jsonl or .csv file of pairs (optionally .gz), got {path.name}"
    )


def drop_blank(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pairs with text on both sides (a blank side teaches nothing)."""
    return [(s, t) for s, t in pairs if s.strip() and t.strip()]
