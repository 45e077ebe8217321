"""The training split of a streamed corpus: shards split by a stable hash, read by tf.data.

``corpus.load`` makes one checking pass over the shards and returns the training split as a
``Stream``: recipes fit their vocabularies from its batches in one more pass and train on its
``dataset()``, which reads the shards again every epoch. Nothing holds the training split in
memory.

Each row goes to test, validation or train by a hash of its key fields (keyed SipHash, the
run's seed as key): the same on every worker, on every rerun, and for every row that stays when
the corpus grows.

Clean UTF-8 TSV shards (the checking pass skipped nothing in them) are parsed in tf.data ops
during training: ``TextLineDataset``, split and strip, the hash split, interleaved. Other shards
(CSV with its quoting rules, JSONL, Parquet, TFRecord, CoNLL blocks, TFDS splits, other
encodings) go through their Python reader under ``from_generator``, a batch of 4,096 rows per
call.
"""

from __future__ import annotations

import dataclasses
import time
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


_HASH_BUCKETS = 1 << 32


def _hash_key(seed: int) -> list[int]:
    return [seed & 0xFFFFFFFFFFFFFFFF, 0]


def positions(keys: list[str], seed: int) -> np.ndarray:
    """Where rows fall in [0, 1): a row's split is decided by this number alone.

    The keyed SipHash of ``tf.strings.to_hash_bucket_strong``, so that the checking pass (in
    Python) and the training epochs (in tf.data ops) compute the same number.

    Args:
        keys: each row's key fields joined by ``\\x1f`` (see ``key_texts``).
        seed: the run's seed (another seed, another split).
    """
    import tensorflow as tf

    if not keys:
        return np.zeros(0)
    buckets = tf.strings.to_hash_bucket_strong(keys, _HASH_BUCKETS, _hash_key(seed))
    return buckets.numpy().astype(np.float64) / _HASH_BUCKETS


def key_texts(rows: list, fields: Fields) -> list[str]:
    """The hashed text of every row of a batch: its key fields joined by ``\\x1f``.

    Args:
        rows: the rows.
        fields: their fields (``fields.key`` picks the hashed ones; all when empty).
    """
    if not fields.key:
        return ["\x1f".join(row) for row in rows]
    return ["\x1f".join([row[i] for i in fields.key]) for row in rows]


@dataclasses.dataclass
class Stream:
    """The training split of a sharded corpus.

    Args:
        files: the shard files, sorted.
        fields: the fields each example has.
        seed: the split's hash seed.
        start: rows from this position on (see ``positions``) are training rows.
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
        clean: the shards in which the checking pass skipped and replaced nothing.
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
    clean: frozenset = frozenset()
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

    def train_mask(self, columns: list[list[str]]) -> np.ndarray:
        """Which rows of a batch belong to this training split.

        Args:
            columns: the batch, one list of values per field.
        """
        at = positions(key_texts(list(zip(*columns)), self.fields), self.seed)
        bins = ((at - self.start) / (1.0 - self.start) * _BINS).astype(np.int64)
        return (at >= self.start) & (bins < self.keep)

    def _rows(self, path: str, report: reading.Report) -> Iterator[list[list[str]]]:
        # Full batches even when few rows are kept (max_examples): fewer, larger TF calls.
        kept: list[list[str]] = [[] for _ in self.fields.names]
        for columns, _ in self.reader(path, self.fields, report):
            mask = self.train_mask(columns)
            for column, values in zip(kept, columns):
                column.extend(v for v, keep in zip(values, mask) if keep)
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

    def dataset(
        self,
        worker: int = 0,
        workers: int = 1,
        elements: Callable[[Iterator[list[list]]], Iterator[tuple]] | None = None,
        signature: tuple | None = None,
        seed: int | None = None,
    ):
        """A ``tf.data.Dataset`` of training examples (tuples of scalar strings), reading the
        shards again on every iteration, interleaved four at a time.

        Args:
            worker: this worker's index in a multi-worker job.
            workers: how many workers read the corpus. With at least as many shards, each
                worker reads only its own shards (``files[worker::workers]``); otherwise every
                worker reads all and keeps every ``workers``-th example.
            elements: one shard's training rows (batches of fields, as ``batches`` gives them)
                -> the dataset's elements, for rows that are not text (e.g. frame sequences,
                cut into windows); None: each row as a tuple of UTF-8 strings.
            signature: the ``tf.TensorSpec`` of each part of an element (with ``elements``).
            seed: shuffle the order of the shards every iteration with this seed (None: in
                name order).
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
        if elements is None and self.native(paths):
            print(f"input: {len(paths)} clean TSV shard(s), parsed by tf.data ops", flush=True)
            ds = self._tsv_dataset(paths, seed)
        else:
            if elements is None:
                signature = tuple(tf.TensorSpec([None], tf.string) for _ in self.fields.names)

                def generate(path):
                    for columns in self._rows(path.decode(), self._quiet_report()):
                        yield tuple(
                            np.array([v.encode("utf-8") for v in c], dtype=object) for c in columns
                        )
            else:

                def generate(path):
                    yield from elements(self._rows(path.decode(), self._quiet_report()))

            files = tf.data.Dataset.from_tensor_slices(paths)
            if seed is not None:
                files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
            ds = files.interleave(
                lambda path: tf.data.Dataset.from_generator(
                    generate, args=(path,), output_signature=signature
                ),
                cycle_length=min(4, len(paths)),
                block_length=1,
            )
        if elements is None:
            ds = ds.unbatch()
        if not by_file and workers > 1:
            ds = ds.shard(workers, worker)
        # The workers' shards are chosen here; tf.distribute must not shard them again.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options)

    def native(self, paths: list[str]) -> bool:
        """True when these shards are parsed by tf.data ops: clean UTF-8 TSV read by the
        default reader, whose rows are then exactly the checking pass's.

        Args:
            paths: the shards this worker reads.
        """
        utf8 = self.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
        return (
            self.reader is shards.read_batches
            and utf8
            and self.decode_errors == "strict"
            and all(shards.file_format(Path(p)) == "tsv" and p in self.clean for p in paths)
        )

    def _tsv_dataset(self, paths: list[str], seed: int | None):
        """Batches of training rows of TSV shards, parsed, stripped and split in tf.data."""
        import tensorflow as tf

        report = self._quiet_report()
        layouts = [shards.tsv_columns(Path(p), self.fields, report) for p in paths]
        columns = tf.constant([indices for indices, _ in layouts], tf.int64)
        header = tf.constant([0 if self.fields.positions else 1 for _ in paths], tf.int64)
        gz = tf.constant([p.lower().endswith(".gz") for p in paths])
        fields, key = len(self.fields.names), list(self.fields.key or range(len(self.fields.names)))
        start, keep, hash_key = self.start, self.keep, _hash_key(self.seed)

        need = max(max(indices) for indices, _ in layouts) + 1

        def parse(numbers, lines, indices, skip):
            # utf-8-sig: a byte order mark opens the file only.
            first = tf.equal(numbers, 0) & tf.equal(skip, 0)
            lines = tf.where(first, tf.strings.regex_replace(lines, "^\ufeff", ""), lines)
            lines = tf.boolean_mask(lines, tf.strings.length(tf.strings.strip(lines)) > 0)
            # At least `need` columns, even in a batch with no lines left.
            shape = tf.stack([tf.shape(lines, out_type=tf.int64)[0], need])
            parts = tf.strings.split(lines, "\t").to_tensor("", shape=shape)
            values = [tf.strings.strip(tf.gather(parts, indices[i], axis=1)) for i in range(fields)]
            kept = tf.ones_like(values[0], tf.bool)
            if self.fields.skip_blank:
                for value in values:
                    kept &= tf.strings.length(value) > 0
            joined = tf.strings.reduce_join(
                tf.stack([values[i] for i in key], 1), axis=1, separator="\x1f"
            )
            buckets = tf.strings.to_hash_bucket_strong(joined, _HASH_BUCKETS, hash_key)
            at = tf.cast(buckets, tf.float64) / _HASH_BUCKETS
            bins = tf.cast((at - start) / (1.0 - start) * _BINS, tf.int64)
            kept &= (at >= start) & (bins < keep)
            return tuple(tf.boolean_mask(value, kept) for value in values)

        def read(path, indices, skip, compressed):
            compression = tf.where(compressed, "GZIP", "")
            lines = tf.data.TextLineDataset(path, compression_type=compression).skip(skip)
            batches = lines.enumerate().batch(shards.BATCH_ROWS)
            return batches.map(
                lambda n, text: parse(n, text, indices, skip),
                num_parallel_calls=tf.data.AUTOTUNE,
            )

        files = tf.data.Dataset.from_tensor_slices((paths, columns, header, gz))
        if seed is not None:
            files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        return files.interleave(
            read,
            cycle_length=min(4, len(paths)),
            block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE,  # deterministic: the order stays the same
        )


def progress(what: str, done: int, t0: float) -> None:
    """One progress line: what was done, and the rate since ``t0``.

    Args:
        what: the line's text.
        done: rows done so far.
        t0: when the work started (``time.time()``).
    """
    rate = done / max(time.time() - t0, 1e-9)
    print(f"{what} ({rate:,.0f} rows/s)", flush=True)
