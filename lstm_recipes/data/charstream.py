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
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from lstm_recipes.data import Splits, corpus, reading, shards
from lstm_recipes.data.shards import Fields
from lstm_recipes.data.stream import Stream
from lstm_recipes.errors import UserError

BLOCK_CHARS = 16_384  # characters per block at most
BATCH_BLOCKS = 64  # blocks per batch of the stream: about 1 MiB of text in flight per shard
HOLDOUT_BLOCKS = 128  # validation or test blocks kept at most: about 2 MiB of text each
FIT_BLOCKS = 65_536  # training blocks the characters are counted on at most: about 1 GiB
FIELDS = Fields(("text",))
_SUFFIXES = (".txt", ".txt.gz")


def is_stream_spec(spec: str) -> bool:
    """True for a spec that streams: a glob (a file, a folder, ``builtin`` and ``tfds:`` are
    read into memory and cut in order).

    Args:
        spec: a ``--data``, ``--validation-data`` or ``--test-data`` value.
    """
    return spec != "builtin" and not spec.startswith("tfds:") and glob.has_magic(spec)


def find(spec: str) -> list[Path]:
    """The ``.txt``/``.txt.gz`` files matching a glob, sorted by name.

    Args:
        spec: the glob.
    """
    paths = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    if not paths:
        raise UserError(f"expected .txt or .txt.gz files matching {spec!r}, found none")
    odd = [p for p in paths if not p.name.lower().endswith(_SUFFIXES)]
    if odd:
        raise UserError(
            f"expected .txt or .txt.gz files matching {spec!r}, found {odd[0].name} among them"
        )
    return paths


def read_blocks(path: Path | str, fields: Fields, report: reading.Report) -> Iterator[shards.Batch]:
    """One text file's blocks, ``BATCH_BLOCKS`` at a time (a ``stream.Reader``): one column of
    block texts and the line each block starts at.

    Args:
        path: the ``.txt`` or ``.txt.gz`` file.
        fields: ``FIELDS`` (one field; a block has nothing else).
        report: the run's encoding and ``decode_errors``; undecodable lines go there.
    """
    path = Path(path)
    limit = BLOCK_CHARS  # read per call, so that tests can make blocks small
    blocks: list[str] = []
    starts: list[int] = []
    parts: list[str] = []
    size = first = 0
    for number, text in shards.decoded_lines(path, report):
        if text is None:  # skipped (skip_bad_rows); the report has it
            continue
        line = text + "\n"
        for at in range(0, len(line), limit):
            piece = line[at : at + limit]
            if parts and size + len(piece) > limit:
                blocks.append("".join(parts))
                starts.append(first)
                parts, size = [], 0
                if len(blocks) == BATCH_BLOCKS:
                    yield [blocks], starts
                    blocks, starts = [], []
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


def source() -> corpus.Source:
    """How ``corpus.load`` reads a glob of text files: blocks, in small batches, few held out."""
    return corpus.Source(FIELDS, read_blocks, find, count_blocks, BATCH_BLOCKS, HOLDOUT_BLOCKS)


def _blocks(size: float) -> float:
    # Shares stay shares; a count of characters becomes a count of blocks, at least one (a
    # count below 1 would be read as a share).
    return size if size < 1 else max(1.0, size / BLOCK_CHARS)


def held_out_text(spec: str, read_text: Callable[[str], str]) -> str:
    """The text of a ``--validation-data``/``--test-data`` spec: a glob's blocks joined (at
    most ``HOLDOUT_BLOCKS``), anything else as ``read_text`` reads it.

    Args:
        spec: the spec.
        read_text: spec -> its whole text (a file, a folder, builtin, tfds:).
    """
    if is_stream_spec(spec):
        return "".join(row[0] for row in corpus.read_all(spec, source()))
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
        source(),
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
