"""A text corpus streamed from shards for character models: blocks of lines, split by hash.

A glob of ``.txt``/``.txt.gz`` files is read as a corpus of blocks: runs of whole lines of at
most ``BLOCK_CHARS`` characters (a longer line is cut into pieces of that size). A block is one
row of ``corpus.load`` with one field, ``text``; it goes to train, validation or test by a hash
of its text, so the split is the same on every rerun and every worker, and a block keeps its
split when the corpus grows (new files add blocks; a file that grows changes only its last).

The training blocks stay a ``stream.Stream``, read again every epoch. Validation and test
blocks are joined into one text each (at most ``HOLDOUT_BLOCKS`` blocks), so that evaluation
measures them as it measures a text read into memory. Lines are decoded with the run's
``encoding``/``decode_errors`` like other shards; every line ends in ``\\n`` (``\\r\\n`` too).
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.resources
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from lstm_recipes.data import Splits, corpus, files, reading, records, shards
from lstm_recipes.data.shards import Fields
from lstm_recipes.data.stream import Stream
from lstm_recipes.data.tfds import is_tfds_spec, load_tfds
from lstm_recipes.errors import UserError

BLOCK_CHARS = 16_384  # characters per block at most
BATCH_BLOCKS = 64  # blocks per batch of the stream: about 1 MiB of text in flight per shard
HOLDOUT_BLOCKS = 128  # validation or test blocks kept at most: about 2 MiB of text each
FIT_BLOCKS = 65_536  # training blocks the characters are counted on at most: about 1 GiB
_SUFFIXES = (".txt", ".txt.gz")


_RECORDS = ("parquet", "tfrecord")  # a text column per row
_END = object()  # after a document's lines: its last block ends there


def is_stream_spec(spec: str) -> bool:
    """True for a spec that streams: a glob, or a Parquet or TFRecord file (a text file, a
    folder, ``builtin`` and ``tfds:`` are read into memory and cut in order).

    Args:
        spec: a ``--data``, ``--validation-data`` or ``--test-data`` value.
    """
    if spec == "builtin" or spec.startswith("tfds:"):
        return False
    if glob.has_magic(spec):
        return True
    return Path(spec).is_file() and shards.file_format(Path(spec)) in _RECORDS


def find(spec: str) -> list[Path]:
    """The ``.txt``/``.txt.gz`` files, or the Parquet / TFRecord files, of a glob (sorted by
    name) or the one Parquet or TFRecord file given.

    Args:
        spec: the glob or file.
    """
    paths = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    what = "files matching"
    if not glob.has_magic(spec) and Path(spec).is_file():
        paths, what = [Path(spec)], "a file at"
    if not paths:
        raise UserError(f"expected .txt or .txt.gz files matching {spec!r}, found none")
    kinds = {shards.file_format(p) if shards.file_format(p) in _RECORDS else "text" for p in paths}
    odd = [
        p
        for p in paths
        if shards.file_format(p) not in _RECORDS and not p.name.lower().endswith(_SUFFIXES)
    ]
    if odd or len(kinds) > 1:
        found = odd[0].name if odd else ", ".join(sorted(kinds))
        raise UserError(
            f"expected .txt or .txt.gz files, or Parquet or TFRecord files, {what} {spec!r}; "
            f"found {found}"
        )
    return paths


def read_blocks(path: Path | str, fields: Fields, report: reading.Report) -> Iterator[shards.Batch]:
    """One text file's blocks, ``BATCH_BLOCKS`` at a time (a ``stream.Reader``): one column of
    block texts and the line each block starts at.

    Args:
        path: the ``.txt`` or ``.txt.gz`` file, or a Parquet / TFRecord file whose rows' text
            (each a document, its lines kept) is read as the lines of a text file.
        fields: one field: the text column of a Parquet / TFRecord file.
        report: the run's encoding and ``decode_errors``; undecodable lines go there.
    """
    path = Path(path)
    fmt = shards.file_format(path)
    if fmt in _RECORDS:
        read = records.parquet_rows if fmt == "parquet" else records.tfrecord_rows
        lines = (
            (number, line)
            for number, (text,) in read(path, fields, report)
            for line in [*text.split("\n"), _END]
        )
    else:
        lines = shards.decoded_lines(path, report)
    limit = BLOCK_CHARS  # read per call, so that tests can make blocks small
    blocks: list[str] = []
    starts: list[int] = []
    parts: list[str] = []
    size = first = 0
    for number, text in lines:
        if text is None:  # skipped (skip_bad_rows); the report has it
            continue
        line = text + "\n" if text is not _END else ""
        for at in range(0, len(line), limit) if line else [limit]:
            piece = line[at : at + limit]
            # A document of a Parquet / TFRecord file ends its block, as a text file does.
            if parts and (size + len(piece) > limit or text is _END):
                blocks.append("".join(parts))
                starts.append(first)
                parts, size = [], 0
                if len(blocks) == BATCH_BLOCKS:
                    yield [blocks], starts
                    blocks, starts = [], []
            if text is _END:
                continue
            if not parts:
                first = number
            parts.append(piece)
            size += len(piece)
    if parts:
        blocks.append("".join(parts))
        starts.append(first)
    if blocks:
        yield [blocks], starts


def count_blocks(paths: list) -> int:
    """About how many blocks the files hold (their bytes over ``BLOCK_CHARS``), to turn a
    ``validation_size``/``test_size`` count into a share; nothing is decoded.

    Args:
        paths: the text files.
    """
    total = 0
    for path in map(Path, paths):
        size = 0
        try:
            with shards.open_shard(path) as f:
                while chunk := f.read(1 << 22):
                    size += len(chunk)
        except (OSError, EOFError, zlib.error) as e:
            raise UserError(f"{path}: cannot read: {e}") from None
        total += -(-size // BLOCK_CHARS)
    return total


def source(text_column: str = "text") -> corpus.Source:
    """How ``corpus.load`` reads a glob of text files: blocks, in small batches, few held out.

    Args:
        text_column: the column of a Parquet / TFRecord file that holds the text.
    """
    return corpus.Source(
        Fields((text_column,)), read_blocks, find, count_blocks, BATCH_BLOCKS, HOLDOUT_BLOCKS
    )


def _blocks(size: float) -> float:
    # Shares stay shares; a count of characters becomes a count of blocks, at least one (a
    # count below 1 would be read as a share).
    return size if size < 1 else max(1.0, size / BLOCK_CHARS)


def read_text(spec: str, text_column: str = "text") -> str:
    """A whole text corpus as one string: ``builtin`` (char_lm's four plays), ``tfds:NAME`` (its
    splits joined in order), a folder (its .txt / .txt.gz files in name order) or one file.

    Args:
        spec: what ``--data`` names.
        text_column: the TFDS feature holding the text.
    """
    if spec == "builtin":
        resource = importlib.resources.files("lstm_recipes.recipes") / "data/shakespeare.txt.gz"
        with importlib.resources.as_file(resource) as path:
            return files.read_text(Path(path))
    if is_tfds_spec(spec):
        splits, _ = load_tfds(spec, [text_column], "--data input.txt (a local text file)")
        return "".join(
            row[0] for name in ("train", "validation", "test") for row in splits.get(name, [])
        )
    path = Path(spec)
    if path.is_dir():
        parts = sorted(p for p in path.rglob("*") if p.name.endswith((".txt", ".txt.gz")))
        if not parts:
            raise UserError(f"expected .txt or .txt.gz files in {path}, found none")
        return "\n".join(files.read_text(p) for p in parts)
    if not path.exists():
        raise UserError(
            f"expected --data to be builtin, tfds:NAME, a text file or a folder of .txt files; "
            f"found no file or folder at {spec}"
        )
    return files.read_text(path)


def held_out_text(spec: str, read_text: Callable[[str], str], text_column: str = "text") -> str:
    """The text of a ``--validation-data``/``--test-data`` spec: a glob's blocks joined (at
    most ``HOLDOUT_BLOCKS``), anything else as ``read_text`` reads it.

    Args:
        spec: the spec.
        read_text: spec -> its whole text (a file, a folder, builtin, tfds:).
        text_column: the text column of Parquet / TFRecord files.
    """
    if is_stream_spec(spec):
        return "".join(row[0] for row in corpus.read_all(spec, source(text_column)))
    return read_text(spec)


def load(
    data: str,
    test_data: str | None,
    validation_data: str | None,
    config,
    read_text: Callable[[str], str],
) -> Splits:
    """``Splits`` of a glob of text files: the training blocks stream; validation and test are
    texts (held-out blocks joined, or the texts of ``--validation-data``/``--test-data``).

    ``max_examples`` and counts (>= 1) of ``validation_size``/``test_size`` are characters, as
    for a text in memory; here they become whole blocks (rounded up, at least one), chosen by
    hash: an approximation of the character count.

    Args:
        data: the ``--data`` glob.
        test_data: the ``--test-data`` spec, or None to hold out test blocks by hash.
        validation_data: the ``--validation-data`` spec, or None to hold out blocks by hash.
        config: the recipe config (``seed``, ``validation_size``, ``test_size``,
            ``max_examples``).
        read_text: spec -> its whole text, for held-out specs that are not globs.
    """
    sized = dataclasses.replace(
        config,
        validation_size=_blocks(config.validation_size),
        test_size=_blocks(config.test_size),
        max_examples=-(-config.max_examples // BLOCK_CHARS),
    )
    result = corpus.splits(
        data,
        test_data,
        source(config.text_column),
        sized,
        lambda spec: [(read_text(spec),)],
        validation_data=validation_data,
        is_shards=is_stream_spec,
    )
    result.validation = "".join(row[0] for row in result.validation)
    result.test = "".join(row[0] for row in result.test)
    train: Stream = result.train
    result.source = (
        f"{data} ({len(train.files)} file(s); train: blocks of up to {BLOCK_CHARS:,} characters, "
        "streamed; validation and test: characters)"
    )
    return result


def vocabulary(train: Stream) -> list[str]:
    """The characters of (a hash sample of at most ``FIT_BLOCKS``) training blocks, sorted;
    a character seen only outside the sample is an unseen character (id 0) in training too.

    Args:
        train: the training blocks.
    """
    seen: set[str] = set()
    for (blocks,) in train.sample(FIT_BLOCKS).batches():
        seen.update("".join(blocks))
    return sorted(seen)
