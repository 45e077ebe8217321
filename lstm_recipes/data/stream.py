"""The training split of a streamed corpus: shards split by a stable hash, read by tf.data.

``corpus.load`` makes one checking pass over the shards and returns the training split as a
``Stream``: recipes fit their vocabularies from its batches in one more pass and train on its
``dataset()``, which reads the shards again every epoch. Nothing holds the training split in
memory.

Each row goes to test, validation or train by a hash of its fields (CRC-32 seeded with the
run's seed): the same on every worker, on every rerun, and for every row that stays when the
corpus grows.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from lstm_recipes.data import reading, shards
from lstm_recipes.data.shards import Fields

FIT_ROWS = 1_000_000  # training rows that vocabularies and statistics are fitted on at most
_PROGRESS_SECONDS = 10.0


# One shard's rows in batches: (shard name, fields, report) -> (columns, line numbers).
Reader = Callable[[str, Fields, reading.Report], Iterator[shards.Batch]]

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
        reader: reads one shard's rows in batches (``shards.read_batches``, or a recipe's
            own, e.g. CoNLL sentence blocks or a TFDS split).
        batch_rows: training rows per batch that ``batches`` and ``dataset`` pass on.
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
    reader: Reader = shards.read_batches
    batch_rows: int = shards.BATCH_ROWS

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
        at = position(self.fields.key_of(values), self.seed)
        return at >= self.start and _bin(at, self.start) < self.keep

    def _rows(self, path: str, report: reading.Report) -> Iterator[list[list[str]]]:
        # Full batches even when few rows are kept (max_examples): fewer, larger TF calls.
        kept: list[list[str]] = [[] for _ in self.fields.names]
        for columns, _ in self.reader(path, self.fields, report):
            for row in zip(*columns):
                if self.is_train(list(row)):
                    for column, value in zip(kept, row):
                        column.append(value)
            if len(kept[0]) >= self.batch_rows:
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
                    progress(f"fitting: {done:,} of {self.size:,} training rows", done, t0)

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


def progress(what: str, done: int, t0: float) -> None:
    """One progress line: what was done, and the rate since ``t0``.

    Args:
        what: the line's text.
        done: rows done so far.
        t0: when the work started (``time.time()``).
    """
    rate = done / max(time.time() - t0, 1e-9)
    print(f"{what} ({rate:,.0f} rows/s)", flush=True)
