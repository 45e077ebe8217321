"""Streamed corpora: shards split by a stable hash and read by tf.data, in bounded memory.

One pass over the shards (``load``) checks every row, counts the training examples and collects
the validation and test examples (at most ``HOLDOUT_CAP`` each, so that evaluation code takes
lists as before). The training split stays a ``Stream``: recipes fit their vocabularies from
its batches in one more pass and train on its ``dataset()``, which reads the shards again every
epoch. Nothing holds the training split in memory.

Each row goes to test, validation or train by a hash of its fields (CRC-32 seeded with the
run's seed): the same on every worker, on every rerun, and for every row that stays when the
corpus grows.
"""

from __future__ import annotations

import collections
import dataclasses
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lstm_recipes.data import Splits, reading, shards
from lstm_recipes.data.shards import Fields
from lstm_recipes.errors import UserError

HOLDOUT_CAP = 50_000  # validation or test examples kept in memory at most
FIT_ROWS = 1_000_000  # training rows that vocabularies and statistics are fitted on at most
DISTINCT_CAP = 10_000  # distinct values of a label field counted at most
_PROGRESS_SECONDS = 10.0


_BINS = 1 << 16  # max_examples keeps whole bins of the training positions: an exact count


def _bin(at: float, start: float) -> int:
    return int((at - start) / (1.0 - start) * _BINS)


def position(values: list[str], seed: int) -> float:
    """Where a row falls in [0, 1): its split is decided by this number alone.

    Args:
        values: the row's fields.
        seed: the run's seed (another seed, another split).
    """
    return zlib.crc32("\x1f".join(values).encode("utf-8"), seed & 0xFFFFFFFF) / 2**32


@dataclasses.dataclass
class Stream:
    """The training split of a sharded corpus.

    Args:
        files: the shard files, sorted.
        fields: the fields each example has.
        seed: the split's hash seed.
        start: rows from this position on (see ``position``) are training rows.
        keep: training rows in the first ``keep`` of 65,536 bins of positions are used
            (``max_examples``; all bins by default).
        size: training rows, as counted by ``load``.
        encoding: the run's text encoding.
        decode_errors: ``strict`` or ``replace``.
        source: a description for the run's records.
        counts: training rows per value of the counted field (a label), from ``load``.
        bins: training rows per bin of positions, from ``load`` (for ``sample``).
    """

    files: list[str]
    fields: Fields
    seed: int
    start: float
    keep: int = _BINS
    size: int = 0
    encoding: str = "utf-8"
    decode_errors: str = "strict"
    source: str = ""
    counts: dict = dataclasses.field(default_factory=dict)
    bins: np.ndarray | None = dataclasses.field(default=None, repr=False)

    def __len__(self) -> int:
        return self.size

    def sample(self, rows: int) -> Stream:
        """About ``rows`` of these training rows, chosen by hash (whole bins; exact size), for
        fitting statistics in bounded time; the stream itself when it is not larger.

        Args:
            rows: how many rows at most (a few more when a bin straddles the count).
        """
        if self.bins is None or self.size <= rows:
            return self
        keep = min(int(np.searchsorted(np.cumsum(self.bins), rows)) + 1, self.keep)
        sample = dataclasses.replace(self, keep=keep, size=int(self.bins[:keep].sum()))
        print(
            f"fitting on a sample of {sample.size:,} of the {self.size:,} training rows, chosen "
            "by hash",
            flush=True,
        )
        return sample

    def is_train(self, values: list[str]) -> bool:
        """True for a row of this training split.

        Args:
            values: the row's fields.
        """
        at = position(values, self.seed)
        return at >= self.start and _bin(at, self.start) < self.keep

    def _rows(self, path: str, report: reading.Report) -> Iterator[list[list[str]]]:
        # Full batches even when few rows are kept (max_examples): fewer, larger TF calls.
        kept: list[list[str]] = [[] for _ in self.fields.names]
        for columns, _ in shards.read_batches(Path(path), self.fields, report):
            for row in zip(*columns):
                if self.is_train(list(row)):
                    for column, value in zip(kept, row):
                        column.append(value)
            if len(kept[0]) >= shards.BATCH_ROWS:
                yield kept
                kept = [[] for _ in self.fields.names]
        if kept[0]:
            yield kept

    def _quiet_report(self) -> reading.Report:
        # Bad rows were reported (and bounded) by the loading pass; here they are skipped.
        return reading.Report(self.encoding, self.decode_errors, skip_bad_rows=2**62, quiet=True)

    def batches(self) -> Iterator[list[list[str]]]:
        """Training rows in batches, one list per field, file after file (for fitting passes),
        with progress every few seconds."""
        report, done, t0, shown = self._quiet_report(), 0, time.time(), time.time()
        for path in self.files:
            for columns in self._rows(path, report):
                done += len(columns[0])
                yield columns
                if time.time() - shown > _PROGRESS_SECONDS:
                    shown = time.time()
                    _progress(f"fitting: {done:,} of {self.size:,} training rows", done, t0)

    def dataset(self, worker: int = 0, workers: int = 1):
        """A ``tf.data.Dataset`` of training examples (tuples of scalar strings), reading the
        shards again on every iteration, interleaved four at a time.

        Args:
            worker: this worker's index in a multi-worker job.
            workers: how many workers read the corpus. With at least as many shards, each
                worker reads only its own shards (``files[worker::workers]``); otherwise every
                worker reads all and keeps every ``workers``-th example.
        """
        import tensorflow as tf

        by_file = len(self.files) >= workers
        paths = self.files[worker::workers] if by_file else self.files
        if workers > 1:
            how = "its own shards" if by_file else "every shard and keeps every example of its turn"
            print(
                f"input: worker {worker} of {workers} reads {how}: "
                + ", ".join(Path(p).name for p in paths),
                flush=True,
            )
        signature = tuple(tf.TensorSpec([None], tf.string) for _ in self.fields.names)

        def generate(path):
            for columns in self._rows(path.decode(), self._quiet_report()):
                yield tuple(np.array([v.encode("utf-8") for v in c], dtype=object) for c in columns)

        ds = tf.data.Dataset.from_tensor_slices(paths).interleave(
            lambda path: tf.data.Dataset.from_generator(
                generate, args=(path,), output_signature=signature
            ),
            cycle_length=min(4, len(paths)),
            block_length=1,
        )
        ds = ds.unbatch()
        if not by_file and workers > 1:
            ds = ds.shard(workers, worker)
        # The workers' shards are chosen here; tf.distribute must not shard them again.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options)


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


def _progress(what: str, done: int, t0: float) -> None:
    rate = done / max(time.time() - t0, 1e-9)
    print(f"{what} ({rate:,.0f} rows/s)", flush=True)


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
    spec: str,
    fields: Fields,
    *,
    seed: int,
    validation_size: float,
    test_size: float,
    separate_test: bool,
    max_examples: int = 0,
    count_field: int | None = None,
) -> Loaded:
    """Read every shard once: check rows, count the training split, keep the held-out splits.

    Args:
        spec: the ``--data`` glob, folder or file.
        fields: the fields each example has.
        seed: the split's hash seed.
        validation_size: a share (< 1) or about how many examples (>= 1) for validation.
        test_size: the same for test; unused when ``separate_test``.
        separate_test: True when ``--test-data`` gives the test set.
        max_examples: use about this many training examples (0: all), chosen by hash.
        count_field: count the distinct values of this field (a label) in the training rows.
    """
    paths = shards.find(spec)
    report = reading.current()
    t0 = time.time()
    total = None
    if validation_size >= 1 or (test_size >= 1 and not separate_test):
        print(f"counting the rows of {len(paths)} shard(s) for the split sizes...", flush=True)
        total = count_rows(paths)
    test_share = 0.0 if separate_test else _share(test_size, total or 0)
    validation_share = _share(validation_size, total or 0)
    if test_share + validation_share >= 1:
        raise UserError(
            f"expected validation_size + test_size below 1, got {validation_share} + {test_share}"
        )
    cut_test, start = test_share, test_share + validation_share
    validation, test, dropped = [], [], 0
    counts: collections.Counter = collections.Counter()
    rows = train = 0
    bins = np.zeros(_BINS + 1, np.int64)
    shown = t0
    for number, path in enumerate(paths, 1):
        for columns, _ in shards.read_batches(path, fields, report):
            for row in zip(*columns):
                at = position(list(row), seed)
                if at >= start:
                    train += 1
                    bins[_bin(at, start)] += 1
                    if count_field is not None and (
                        row[count_field] in counts or len(counts) < DISTINCT_CAP
                    ):
                        counts[row[count_field]] += 1
                else:
                    held = test if at < cut_test else validation
                    if len(held) < HOLDOUT_CAP:
                        held.append(tuple(row))
                    else:
                        dropped += 1
            rows += len(columns[0])
            if time.time() - shown > _PROGRESS_SECONDS:
                shown = time.time()
                _progress(f"reading: {rows:,} rows, shard {number} of {len(paths)}", rows, t0)
    seconds = time.time() - t0
    print(
        f"read {rows:,} rows from {len(paths)} shard(s) in {seconds:.1f}s "
        f"({rows / max(seconds, 1e-9):,.0f} rows/s)",
        flush=True,
    )
    if dropped:
        print(
            f"kept the first {HOLDOUT_CAP:,} validation and test examples each; {dropped:,} more "
            "fell in those splits and are used by neither (set validation_size / test_size to a "
            "count such as 5000)",
            flush=True,
        )
    keep, size = _BINS, train
    if max_examples and train > max_examples:
        # The fewest whole bins holding max_examples rows; the count is then exact.
        keep = int(np.searchsorted(np.cumsum(bins), max_examples)) + 1
        size = int(bins[:keep].sum())
    stream = Stream(
        [str(p) for p in paths],
        fields,
        seed,
        start,
        keep,
        size,
        report.encoding,
        report.decode_errors,
        f"{len(paths)} shard(s) {spec}",
        dict(counts),
        bins,
    )
    return Loaded(stream, validation, test, counts, rows, seconds)


def read_all(spec: str, fields: Fields) -> list[tuple[str, ...]]:
    """Every row of a (small) sharded set, e.g. a ``--test-data`` glob, at most ``HOLDOUT_CAP``.

    Args:
        spec: a glob, folder or file.
        fields: the fields to read.
    """
    rows = []
    for path in shards.find(spec):
        for columns, _ in shards.read_batches(path, fields, reading.current()):
            rows.extend(zip(*columns))
            if len(rows) >= HOLDOUT_CAP:
                print(f"using the first {HOLDOUT_CAP:,} rows of {spec}", flush=True)
                return rows[:HOLDOUT_CAP]
    return rows


def splits(data: str, test_data: str | None, fields: Fields, config, read_test, count_field=None):
    """``Splits`` of a sharded corpus: the train split streams; validation and test are lists.

    Args:
        data: the ``--data`` glob, folder or file.
        test_data: the ``--test-data`` spec, or None to carve test examples by hash.
        fields: the fields of an example.
        config: the recipe config (``seed``, ``validation_size``, ``test_size``,
            ``max_examples``).
        read_test: spec -> examples, for a ``--test-data`` that is one ordinary file.
        count_field: a label field whose training values are counted (``Stream.counts``).
    """
    loaded = load(
        data,
        fields,
        seed=config.seed,
        validation_size=config.validation_size,
        test_size=config.test_size,
        separate_test=bool(test_data),
        max_examples=config.max_examples,
        count_field=count_field,
    )
    test = loaded.test
    if test_data:
        test = (
            read_all(test_data, fields)
            if shards.is_shards_spec(test_data)
            else read_test(test_data)
        )
    return Splits(loaded.train, loaded.validation, test, loaded.train.source)
