"""A streamed corpus read once: rows checked, the split made by hash, held-out sets kept.

``load`` reads every shard once: it checks every row, counts the training rows and collects the
validation and test examples (at most ``HOLDOUT_CAP`` each, so that evaluation code takes lists
as before). The training split stays a ``stream.Stream``. ``splits`` wires this to a recipe's
``--data``, ``--validation-data`` and ``--test-data``.

What a row is depends on the ``Source``: a CSV/TSV/JSONL line, a Parquet row or a
``tf.train.Example`` by default; a CoNLL sentence block or a TFDS example with a recipe's own
reader. Each row goes to test, validation or train by ``stream.positions`` of its key fields.
"""

from __future__ import annotations

import collections
import dataclasses
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from lstm_recipes.data import Splits, reading, shards
from lstm_recipes.data.shards import Fields
from lstm_recipes.data.stream import _BINS, Reader, Stream, _bin, key_texts, positions, progress
from lstm_recipes.errors import UserError

HOLDOUT_CAP = 50_000  # validation or test examples kept in memory at most
DISTINCT_CAP = 10_000  # distinct values of a label field counted at most
_PROGRESS_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class Source:
    """How to read one kind of streamed corpus.

    Args:
        fields: the fields of a row.
        reader: one shard's rows in batches (default: CSV/TSV/JSONL, Parquet, TFRecord).
        find: a spec -> its shard names (default: a glob, a folder, a Parquet/TFRecord file).
        count: shard names -> about how many rows, to turn a ``validation_size`` count into a
            share (default: lines, or Parquet/TFRecord records; None: read them all).
        batch_rows: training rows per batch of the stream (default ``shards.BATCH_ROWS``);
            fewer for large rows, such as blocks of text, to bound the memory of a batch.
        holdout_cap: validation or test rows kept in memory at most (default ``HOLDOUT_CAP``).
    """

    fields: Fields
    reader: Reader = shards.read_batches
    find: Callable[[str], list] = shards.find
    count: Callable[[list], int] | None = None
    batch_rows: int | None = None
    holdout_cap: int | None = None

    def cap(self) -> int:
        """Held-out rows kept at most (read when called, so that tests can lower the default)."""
        return self.holdout_cap or HOLDOUT_CAP

    def paths(self, spec: str) -> list[str]:
        """The shard names of a spec, as strings."""
        return [str(p) for p in self.find(spec)]

    def rows(self, paths: list[str]) -> int:
        """About how many rows the shards hold."""
        if self.count is not None:
            return self.count(paths)
        if self.reader is shards.read_batches:
            return count_rows([Path(p) for p in paths])
        report = reading.Report(skip_bad_rows=2**62, quiet=True)
        return sum(len(lines) for p in paths for _, lines in self.reader(p, self.fields, report))


@dataclasses.dataclass
class Loaded:
    """What ``load`` found: the training stream, the held-out examples, and facts.

    Args:
        train: the training split.
        validation: validation examples (tuples of fields).
        test: test examples (tuples of fields); empty when a separate test set is given.
        counts: distinct values of ``count_field`` among training rows, with their counts.
        rows: rows read in all.
        seconds: how long the pass took.
    """

    train: Stream
    validation: list
    test: list
    counts: collections.Counter
    rows: int
    seconds: float


def _share(size: float, total: int) -> float:
    # Sizes below 1 are shares; from 1 on counts (capped at half the data).
    return size if size < 1 else min(size / max(total, 1), 0.5)


def count_rows(paths: list[Path]) -> int:
    """Rows in the shards, roughly (lines, or Parquet rows from the metadata), to turn a
    ``validation_size``/``test_size`` count into a share; no parsing.

    Args:
        paths: the shard files.
    """
    total = 0
    for path in paths:
        fmt = shards.file_format(path)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            total += pq.ParquetFile(path).metadata.num_rows
        elif fmt == "tfrecord":
            import tensorflow as tf

            compression = "GZIP" if path.name.lower().endswith(".gz") else ""
            total += int(
                tf.data.TFRecordDataset(str(path), compression).reduce(0, lambda n, _: n + 1)
            )
        else:
            total += sum(chunk.count(b"\n") for chunk in _chunks(path))
    return total


def _chunks(path: Path) -> Iterator[bytes]:
    try:
        with shards.open_shard(path) as f:
            while chunk := f.read(1 << 22):
                yield chunk
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read: {e}") from None


def load(
    spec: str | list[str],
    fields: Fields | Source,
    *,
    seed: int,
    validation_size: float,
    test_size: float,
    separate_test: bool,
    separate_validation: bool = False,
    max_examples: int = 0,
    count_field: int | None = None,
) -> Loaded:
    """Read every shard once: check rows, count the training split, keep the held-out splits.

    Args:
        spec: the ``--data`` glob, folder or file (or the shard names themselves).
        fields: the fields each example has, or a ``Source`` with its own reader.
        seed: the split's hash seed.
        validation_size: a share (< 1) or about how many examples (>= 1) for validation.
        test_size: the same for test; unused when ``separate_test``.
        separate_test: True when ``--test-data`` gives the test set.
        separate_validation: True when ``--validation-data`` gives the validation set.
        max_examples: use about this many training examples (0: all), chosen by hash.
        count_field: count the distinct values of this field (a label) in the training rows.
    """
    source = fields if isinstance(fields, Source) else Source(fields)
    paths = list(spec) if isinstance(spec, list) else source.paths(spec)
    report = reading.current()
    t0 = time.time()
    total = None
    sizes = ([] if separate_validation else [validation_size]) + (
        [] if separate_test else [test_size]
    )
    if any(size >= 1 for size in sizes):
        print(f"counting the rows of {len(paths)} shard(s) for the split sizes...", flush=True)
        total = source.rows(paths)
    test_share = 0.0 if separate_test else _share(test_size, total or 0)
    validation_share = 0.0 if separate_validation else _share(validation_size, total or 0)
    if test_share + validation_share >= 1:
        raise UserError(
            f"expected validation_size + test_size below 1, got {validation_share} + {test_share}"
        )
    cut_test, start = test_share, test_share + validation_share
    validation, test, dropped, cap = [], [], 0, source.cap()
    counts: collections.Counter = collections.Counter()
    rows = train = 0
    bins = np.zeros(_BINS + 1, np.int64)
    shown = t0
    clean = set()
    for number, path in enumerate(paths, 1):
        before = report.skipped_count, report.replaced
        for columns, _ in source.reader(path, source.fields, report):
            rows_of = list(zip(*columns))
            places = positions(key_texts(rows_of, source.fields), seed)
            for row, at in zip(rows_of, places.tolist()):
                if at >= start:
                    train += 1
                    bins[_bin(at, start)] += 1
                    if count_field is not None and (
                        row[count_field] in counts or len(counts) < DISTINCT_CAP
                    ):
                        counts[row[count_field]] += 1
                else:
                    held = test if at < cut_test else validation
                    if len(held) < cap:
                        held.append(tuple(row))
                    else:
                        dropped += 1
            rows += len(columns[0])
            if time.time() - shown > _PROGRESS_SECONDS:
                shown = time.time()
                progress(f"reading: {rows:,} rows, shard {number} of {len(paths)}", rows, t0)
        if (report.skipped_count, report.replaced) == before:
            clean.add(path)
    seconds = time.time() - t0
    print(
        f"read {rows:,} rows from {len(paths)} shard(s) in {seconds:.1f}s "
        f"({rows / max(seconds, 1e-9):,.0f} rows/s)",
        flush=True,
    )
    if dropped:
        print(
            f"kept the first {cap:,} validation and test examples each; {dropped:,} more "
            "fell in those splits and are used by neither (set validation_size / test_size to a "
            "count such as 5000)",
            flush=True,
        )
    keep, size = _BINS, train
    if max_examples and train > max_examples:
        # The fewest whole bins holding max_examples rows; the count is then exact.
        keep = int(np.searchsorted(np.cumsum(bins), max_examples)) + 1
        size = int(bins[:keep].sum())
    name = spec if isinstance(spec, str) else ", ".join(paths)
    stream = Stream(
        paths,
        source.fields,
        seed,
        start,
        keep,
        size,
        report.encoding,
        report.decode_errors,
        f"{len(paths)} shard(s) {name}",
        dict(counts),
        bins,
        source.reader,
        frozenset(clean),
        source.batch_rows or shards.BATCH_ROWS,
    )
    return Loaded(stream, validation, test, counts, rows, seconds)


def read_all(spec: str | list[str], fields: Fields | Source) -> list[tuple[str, ...]]:
    """Every row of a (small) sharded set, e.g. a ``--test-data`` glob, at most ``HOLDOUT_CAP``
    (or the source's ``holdout_cap``).

    Args:
        spec: a glob, folder or file (or the shard names themselves).
        fields: the fields to read, or a ``Source`` with its own reader.
    """
    source = fields if isinstance(fields, Source) else Source(fields)
    paths = list(spec) if isinstance(spec, list) else source.paths(spec)
    rows, cap = [], source.cap()
    for path in paths:
        for columns, _ in source.reader(path, source.fields, reading.current()):
            rows.extend(zip(*columns))
            if len(rows) >= cap:
                print(f"using the first {cap:,} rows of {spec}", flush=True)
                return rows[:cap]
    return rows


def splits(
    data: str | list[str],
    test_data: str | list[str] | None,
    source: Fields | Source,
    config,
    read_file: Callable[[str], list],
    count_field: int | None = None,
    validation_data: str | list[str] | None = None,
    is_shards: Callable[[str], bool] = shards.is_shards_spec,
    held_source: Source | None = None,
) -> Splits:
    """``Splits`` of a streamed corpus: the train split streams; validation and test are lists.

    Args:
        data: the ``--data`` glob, folder or file (or shard names).
        test_data: the ``--test-data`` spec (or shard names), or None to carve test examples
            by hash.
        source: the fields of an example, or a ``Source`` with its own reader.
        config: the recipe config (``seed``, ``validation_size``, ``test_size``,
            ``max_examples``).
        read_file: spec -> examples as tuples of fields, for a ``--test-data`` or
            ``--validation-data`` that is one ordinary file.
        count_field: a label field whose training values are counted (``Stream.counts``).
        validation_data: the ``--validation-data`` spec (or shard names), or None to carve
            validation examples by hash.
        is_shards: True for a held-out spec read as shards (else ``read_file`` reads it).
        held_source: how a held-out spec that is shards is read (default: as ``source``;
            given when ``data`` is of another kind, e.g. a TFDS split).
    """
    loaded = load(
        data,
        source,
        seed=config.seed,
        validation_size=config.validation_size,
        test_size=config.test_size,
        separate_test=bool(test_data),
        separate_validation=bool(validation_data),
        max_examples=config.max_examples,
        count_field=count_field,
    )

    def held_out(spec):
        if isinstance(spec, list):
            return read_all(spec, source)
        if is_shards(spec):
            return read_all(spec, held_source or source)
        return read_file(spec)

    test = held_out(test_data) if test_data else loaded.test
    validation = held_out(validation_data) if validation_data else loaded.validation
    return Splits(loaded.train, validation, test, loaded.train.source)
