"""Tagged token sequences: CoNLL column files, CoNLL-U and JSONL ``{"tokens", "tags"}``.

A sentence is ``(tokens, tags, features)``: parallel lists of strings, ``features`` one list per
extra column (e.g. the POS column of CoNLL-2000, given to the model as input). Pure Python, so
bad input is reported before TensorFlow starts.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from lstm_recipes.data import files, reading
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
    (CoNLL-2003) are skipped. A line with another number of columns than the first is an
    error, or, within the run's ``skip_bad_rows``, drops its sentence (counted as one bad row).

    Args:
        path: the file (``.gz`` too).
        token_column: column of the tokens: a number (0 first, -1 last) or a CoNLL-U name.
        tag_column: column of the tags.
        feature_columns: extra input columns (e.g. POS), numbers or CoNLL-U names.
    """
    lines = enumerate(files.read_text(path).split("\n"), 1)
    columns = (token_column, tag_column, *feature_columns)
    sentences = [s for s, _ in sentence_blocks(lines, path, columns, reading.current())]
    if not sentences:
        raise UserError(f"{path} has no tagged sentences; expected one token per line")
    return sentences


def conllu_columns(path: Path, token_column: str, tag_column: str) -> tuple[str, str]:
    """The token and tag columns for ``path``: in a CoNLL-U file the defaults (first and last
    column) mean FORM and UPOS, since its first column is an id and its last is MISC.

    Args:
        path: the file.
        token_column: the configured token column.
        tag_column: the configured tag column.
    """
    if path.name.lower().removesuffix(".gz").endswith(".conllu"):
        token_column = "form" if token_column == "0" else token_column
        tag_column = "upos" if tag_column == "-1" else tag_column
    return token_column, tag_column


def sentence_blocks(
    lines: Iterable[tuple[int, str | None]],
    path: Path,
    columns: tuple,
    report: reading.Report,
) -> Iterator[tuple[Sentence, int]]:
    """Sentences of CoNLL lines, with each one's first line number.

    Args:
        lines: (line number, text) pairs; text None for a line already reported as
            undecodable (its sentence is dropped).
        path: the file, for messages; ``.conllu`` selects CoNLL-U parsing.
        columns: the token column, the tag column, then extra columns.
        report: where malformed lines go (skipped within its bound, else refused).
    """
    conllu = path.name.lower().removesuffix(".gz").endswith(".conllu")
    names = CONLLU_COLUMNS if conllu else None
    rows: list[list[str]] = []
    width = indices = None
    first = 0
    broken = False  # a malformed line drops its whole sentence: a partial one would mislead
    for number, line in lines:
        if line is None:
            broken = True
            continue
        line = line.rstrip("\r")
        if not line.strip():
            if rows and not broken:
                yield _sentence(rows, indices), first
            rows, broken = [], False
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
            indices = [_column_index(c, width, names, where) for c in columns]
        elif len(fields) != width:
            if not broken:
                report.bad_row(
                    f"{path}:{number}",
                    f"expected {width} columns like the first line, found {len(fields)} in "
                    f"{line[:60]!r}",
                )
            broken = True
            continue
        if not rows:
            first = number
        rows.append(fields)
    if rows and not broken:
        yield _sentence(rows, indices), first


def _sentence(rows: list[list[str]], indices: list[int]) -> Sentence:
    tokens = [r[indices[0]] for r in rows]
    tags = [r[indices[1]] for r in rows]
    return tokens, tags, [[r[i] for r in rows] for i in indices[2:]]


def read_blocks(path: str, fields, report: reading.Report) -> Iterator[tuple[list, list]]:
    """A CoNLL shard's sentences as rows for ``corpus.Source``: one field per column (token,
    tag, extra columns; named by ``fields.names``), each the sentence's values joined by
    newlines (a CoNLL value never holds one), in batches with each sentence's first line.

    Args:
        path: the shard (``.conll``, ``.conllu``, ``.txt``, ``.gz`` too).
        fields: ``shards.Fields`` whose names are the configured columns.
        report: where malformed lines go.
    """
    from lstm_recipes.data import shards

    path = Path(path)
    token, tag = conllu_columns(path, *fields.names[:2])
    columns = (token, tag, *fields.names[2:])
    batch: list[list[str]] = [[] for _ in columns]
    numbers: list[int] = []
    for (tokens, tags, feats), first in sentence_blocks(
        shards.decoded_lines(path, report), path, columns, report
    ):
        for column, values in zip(batch, (tokens, tags, *feats)):
            column.append("\n".join(values))
        numbers.append(first)
        if len(numbers) == shards.BATCH_ROWS:
            yield batch, numbers
            batch, numbers = [[] for _ in columns], []
    if numbers:
        yield batch, numbers


def to_row(sentence: Sentence) -> tuple[str, ...]:
    """A sentence as a ``read_blocks`` row (its columns' values joined by newlines).

    Args:
        sentence: (tokens, tags, extra columns).
    """
    tokens, tags, feats = sentence
    return tuple("\n".join(values) for values in (tokens, tags, *feats))


def from_row(row: tuple[str, ...]) -> Sentence:
    """The sentence of a ``read_blocks`` row.

    Args:
        row: the joined token, tag and extra-column values.
    """
    tokens, tags, *feats = (value.split("\n") for value in row)
    return tokens, tags, feats


def read_jsonl(path: Path, tokens_key: str = "tokens", tags_key: str = "tags") -> list[Sentence]:
    """Sentences of a JSONL file with a token list and a tag list of the same length per line.

    Args:
        path: the file (``.gz`` too).
        tokens_key: key of the token list.
        tags_key: key of the tag list.
    """
    sentences: list[Sentence] = []
    for number, row in files.read_rows(path, [tokens_key, tags_key]):
        tokens, tags = row[tokens_key], row[tags_key]
        if not isinstance(tokens, list) or not isinstance(tags, list):
            reading.bad_row(f"{path}:{number}", "expected lists of strings for tokens and tags")
            continue
        if len(tokens) != len(tags):
            reading.bad_row(
                f"{path}:{number}",
                f"expected as many tags as tokens, found {len(tags)} tags for {len(tokens)} tokens",
            )
            continue
        sentences.append(([str(t) for t in tokens], [str(t) for t in tags], []))
    if not sentences:
        raise UserError(f"{path} has no tagged sentences")
    return sentences


def drop_empty(sentences: list[Sentence]) -> list[Sentence]:
    """Sentences with at least one token (a zero-length sentence has nothing to tag)."""
    return [s for s in sentences if s[0]]


# Sentence-final and inner marks, as in punctuation restoration (Tilk & Alumäe 2016).
MARKS = {",": "COMMA", ";": "COMMA", ":": "COMMA", ".": "PERIOD", "!": "PERIOD", "?": "QUESTION"}


def punctuation_sentences(texts: list[str]) -> list[Sentence]:
    """Words without their punctuation, each tagged with the mark that followed it (or O).

    Args:
        texts: raw sentences or snippets.
    """
    out = []
    for text in texts:
        tokens, tags = [], []
        for piece in re.findall(r"[^\W_]+(?:['&-][^\W_]+)*|[^\w\s]", text):
            if piece[0].isalnum():
                tokens.append(piece)
                tags.append("O")
            elif piece in MARKS and tags and tags[-1] == "O":
                tags[-1] = MARKS[piece]
        out.append((tokens, tags, []))
    return drop_empty(out)


def builtin_punctuation() -> list[Sentence]:
    """The bundled Rotten Tomatoes snippets as a punctuation restoration task (see above)."""
    resource = importlib.resources.files("lstm_recipes.recipes") / "data/rotten_tomatoes.csv.gz"
    with importlib.resources.as_file(resource) as path:
        texts = [row["text"] for row in files.read_table(Path(path), ["text"])]
    return punctuation_sentences(texts)


def write_predictions(path: Path, tokens: list, gold: list, predicted: list) -> None:
    """``token gold predicted`` per line, a blank line after each sentence (conlleval's input).

    Args:
        path: the file to write.
        tokens: tokens, one list per sentence; only as many as ``gold`` has are written.
        gold: gold tags, one list per sentence.
        predicted: predicted tags, parallel to ``gold``.
    """
    with open(path, "w", encoding="utf-8") as out:
        for words, g, p in zip(tokens, gold, predicted):
            # conlleval splits on whitespace: a token holding a space (JSONL, tfds) is written
            # with "_" for it, and an all-space token as "_".
            out.writelines(
                f"{'_'.join(w.split()) or '_'} {a} {b}\n" for w, a, b in zip(words, g, p)
            )
            out.write("\n")
