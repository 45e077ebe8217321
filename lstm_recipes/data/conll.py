"""Tagged token sequences: CoNLL column files, CoNLL-U and JSONL ``{"tokens", "tags"}``.

A sentence is ``(tokens, tags, features)``: parallel lists of strings, ``features`` one list per
extra column (e.g. the POS column of CoNLL-2000, given to the model as input). Pure Python, so
bad input is reported before TensorFlow starts.
"""

from __future__ import annotations

from pathlib import Path

from lstm_recipes.data import files
from lstm_recipes.errors import UserError

# CoNLL-U's ten columns (https://universaldependencies.org/format.html).
CONLLU_COLUMNS = ["id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc"]

Sentence = tuple[list[str], list[str], list[list[str]]]


def _column_index(column: str | int, width: int, names: list[str] | None, where: str) -> int:
    if names is not None and isinstance(column, str) and not column.lstrip("-").isdigit():
        if column not in names:
            raise UserError(f"{where}: expected a column in {', '.join(names)}, got {column!r}")
        index = names.index(column)
        if index >= width:
            raise UserError(
                f"{where}: expected CoNLL-U's 10 tab-separated columns ({column!r} is column "
                f"{index}), found {width}"
            )
        return index
    try:
        index = int(column)
    except (ValueError, TypeError):
        raise UserError(
            f"{where}: expected a column number (0 = first, -1 = last), got {column!r}"
        ) from None
    if not -width <= index < width:
        raise UserError(
            f"{where}: expected a column between {-width} and {width - 1}, got {index} "
            f"(lines have {width} columns)"
        )
    return index % width


def read_conll(
    path: Path,
    token_column: str | int = 0,
    tag_column: str | int = -1,
    feature_columns: tuple = (),
) -> list[Sentence]:
    """Sentences of a CoNLL column file (whitespace-separated, blank line between sentences).

    CoNLL-U files (``.conllu``, gzip too) are read by column name (``form``, ``upos``, ``xpos``
    ...), skipping comments, multi-word token ranges and empty nodes. ``-DOCSTART-`` lines
    (CoNLL-2003) are skipped.

    Args:
        path: the file (``.gz`` too).
        token_column: column of the tokens: a number (0 first, -1 last) or a CoNLL-U name.
        tag_column: column of the tags.
        feature_columns: extra input columns (e.g. POS), numbers or CoNLL-U names.
    """
    text = files.read_text(path)
    conllu = path.name.lower().removesuffix(".gz").endswith(".conllu")
    names = CONLLU_COLUMNS if conllu else None
    sentences: list[Sentence] = []
    rows: list[list[str]] = []
    width = None
    indices = None

    def flush():
        if rows:
            tokens = [r[indices[0]] for r in rows]
            tags = [r[indices[1]] for r in rows]
            feats = [[r[i] for r in rows] for i in indices[2:]]
            sentences.append((tokens, tags, feats))
            rows.clear()

    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            flush()
            continue
        if conllu:
            if line.startswith("#"):
                continue
            fields = line.split("\t")
            if "-" in fields[0] or "." in fields[0]:
                continue
        else:
            fields = line.split()
            if fields[0] == "-DOCSTART-":
                continue
        if width is None:
            width = len(fields)
            where = f"{path}:{number}"
            indices = [
                _column_index(c, width, names, where)
                for c in (token_column, tag_column, *feature_columns)
            ]
        elif len(fields) != width:
            raise UserError(
                f"{path}:{number}: expected {width} columns like the first line, found "
                f"{len(fields)} in {line[:60]!r}"
            )
        rows.append(fields)
    flush()
    if not sentences:
        raise UserError(f"{path} has no tagged sentences; expected one token per line")
    return sentences


def read_jsonl(path: Path, tokens_key: str = "tokens", tags_key: str = "tags") -> list[Sentence]:
    """Sentences of a JSONL file with a token list and a tag list of the same length per line.

    Args:
        path: the file (``.gz`` too).
        tokens_key: key of the token list.
        tags_key: key of the tag list.
    """
    sentences: list[Sentence] = []
    for number, row in enumerate(files.read_table(path, [tokens_key, tags_key]), 1):
        tokens, tags = row[tokens_key], row[tags_key]
        if not isinstance(tokens, list) or not isinstance(tags, list):
            raise UserError(f"{path}:{number}: expected lists of strings for tokens and tags")
        if len(tokens) != len(tags):
            raise UserError(
                f"{path}:{number}: expected as many tags as tokens, found {len(tags)} tags for "
                f"{len(tokens)} tokens"
            )
        sentences.append(([str(t) for t in tokens], [str(t) for t in tags], []))
    if not sentences:
        raise UserError(f"{path} has no tagged sentences")
    return sentences


def drop_empty(sentences: list[Sentence]) -> list[Sentence]:
    """Sentences with at least one token (a zero-length sentence has nothing to tag)."""
    return [s for s in sentences if s[0]]
