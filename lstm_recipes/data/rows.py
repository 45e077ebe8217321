"""What a row of a sharded corpus is: its fields, batches of them, and helpers every reader
shares (``shards`` for text formats, ``records`` for Parquet and TFRecord)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lstm_recipes.errors import UserError

BATCH_ROWS = 4096
# What tf.strings.strip removes: the training epochs strip TSV fields in the graph, and a
# field must hash the same there as in the checking pass.
ASCII_SPACE = " \t\n\r\x0b\x0c"


@dataclasses.dataclass(frozen=True)
class Fields:
    """Which fields of a row to read.

    Args:
        names: column names (CSV/TSV header, JSON keys, Parquet columns, Example features).
        positions: for headerless TSV (sentence pairs, ``source<TAB>target``): the field
            index of each name; empty when TSV files have a header.
        skip_blank: drop rows with a blank field silently (a sentence pair with one side
            missing teaches nothing), instead of passing them on.
        key: the fields (by index in ``names``) whose values decide a row's split; empty: all.
            A group column (a subject, a document) keeps its rows in one split.
    """

    names: tuple[str, ...]
    positions: tuple[int, ...] = ()
    skip_blank: bool = False
    key: tuple[int, ...] = ()

    def key_of(self, row) -> list[str]:
        """The values of a row that decide its split.

        Args:
            row: the row's values, in the order of ``names``.
        """
        return [row[i] for i in self.key] if self.key else list(row)


Batch = tuple[list[list[str]], list[int]]  # one list of values per field, and line numbers


def header_columns(path: Path, names: list[str], found: list[str]) -> list[int]:
    """The index of each name in a header; a one-line error naming the missing ones."""
    missing = [n for n in names if n not in found]
    if missing:
        raise UserError(
            f"expected columns {', '.join(names)} in {path}; missing {', '.join(missing)}, "
            f"found {', '.join(found) or 'no header'} (choose others with --set)"
        )
    return [found.index(n) for n in names]


def text_value(value, sep: str = " ") -> str:
    """A JSON or Parquet value as text (a list of tokens joined by ``sep``).

    Args:
        value: the value.
        sep: what joins the items of a list (a space for pre-tokenized text; a newline for a
            tagger's tokens and tags, which may hold spaces).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):  # pre-tokenized text
        return sep.join(map(str, value))
    return str(value)
