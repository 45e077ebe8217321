"""Frame sequences streamed from a glob of files, in memory that does not grow with the corpus.

``splits`` makes one checking pass (``corpus.load``) over the files (``frame_files``): each
sequence goes to test, validation or train by a hash of its group; validation and test are
kept as lists of recordings, the training split stays a ``stream.Stream``. ``statistics`` fits
the feature scales in one pass over a sample of it; ``windows`` cuts training windows per
sequence inside ``tf.data`` every epoch: memory holds the files being read and a shuffle
buffer bounded in bytes.
"""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lstm_recipes.data import Splits, corpus, frames, reading
from lstm_recipes.data.frame_files import (
    FIELDS,
    LABELS,
    RECORDING,
    Checked,
    LongCsvShards,
    SequenceFiles,
    find,
    header,
    is_long,
    kind,
    labels_of,
)
from lstm_recipes.data.stream import Stream
from lstm_recipes.errors import UserError

FIT_SEQUENCES = 20_000  # training sequences the feature scales are fitted on at most
SHUFFLE_BYTES = 64 << 20  # the training windows' shuffle buffer holds at most this much
SHUFFLE_WINDOWS = 10_000  # ... and at most this many windows


def is_stream_spec(spec: str | None) -> bool:
    """True for a glob of frame files, which is streamed (builtin, one file and a folder are
    read into memory).

    Args:
        spec: a ``--data``, ``--validation-data`` or ``--test-data`` value.
    """
    if not spec or spec.startswith("tfds:"):
        return False
    return glob.has_magic(spec) or (Path(spec).is_file() and is_long(Path(spec)))


def source(spec: str, config) -> tuple[corpus.Source, list[str]]:
    """How to read a glob of frame files (a ``Checked`` reader), and its feature names.

    Long-CSV shards when the first file is a CSV whose header has ``config.sequence_column``;
    sequence files otherwise.

    Args:
        spec: the glob.
        config: the recipe config (``sequence_column``, ``step_column``, ``label_column``,
            ``group_column``).
    """
    paths = find(spec)
    run = reading.current()
    first = paths[0]
    if is_long(first) or (kind(first) == "csv" and config.sequence_column in header(first, run)):
        odd = next((p for p in paths if kind(p) != kind(first)), None)
        if odd is not None:
            raise UserError(
                f"expected long-format shards matching {spec!r} like {first.name}, found {odd.name}"
            )
        reader = LongCsvShards(
            config.sequence_column, config.step_column, config.label_column, config.group_column
        )
        names = reader.columns(first, run)[1]
    else:
        reader = SequenceFiles(config.label_column)
        # Quiet: its bad rows are reported (and counted) once, by the checking pass.
        with reading.using(reading.Report(run.encoding, "replace", 2**62, quiet=True)):
            names = frames.read_sequence_file(first, config.label_column)[1]
    return corpus.Source(FIELDS, Checked(reader), find, reader.count), names


def read_all(spec: str, config) -> tuple[list[frames.Recording], list[str]]:
    """Every sequence of a (small) glob, e.g. ``--validation-data``, at most
    ``corpus.HOLDOUT_CAP``; returns (recordings, feature names).

    Args:
        spec: the glob.
        config: the recipe config (see ``source``).
    """
    found, names = source(spec, config)
    return [row[RECORDING] for row in corpus.read_all(spec, found)], names


def splits(
    data: str,
    test_data: str | None,
    validation_data: str | None,
    config,
    read_held: Callable[[str], list],
) -> Splits:
    """``Splits`` of a glob of frame files: the training split streams (rows of ``FIELDS``);
    validation and test are lists of recordings, carved by a hash of each sequence's group
    or read from their own specs.

    Args:
        data: the ``--data`` glob.
        test_data: the ``--test-data`` spec, or None.
        validation_data: the ``--validation-data`` spec, or None.
        config: the recipe config (``seed``, ``validation_size``, ``test_size``,
            ``max_examples`` in sequences, and the columns of ``source``).
        read_held: a held-out spec -> its recordings.
    """
    found, names = source(data, config)
    as_rows = lambda spec: [(r.group, r.name, "", r) for r in read_held(spec)]  # noqa: E731
    result = corpus.splits(
        data, test_data, found, config, as_rows, LABELS, validation_data, lambda spec: False
    )
    # The checking reader's memory of sequence ids is not needed by the later passes.
    result.train = dataclasses.replace(result.train, reader=found.reader.reader)
    result.validation = [row[RECORDING] for row in result.validation]
    result.test = [row[RECORDING] for row in result.test]
    for recording in result.validation + result.test:
        if recording.frames.shape[1] != len(names):
            raise UserError(
                f"{recording.name}: expected {len(names)} features like {data}, found "
                f"{recording.frames.shape[1]}"
            )
    result.info = {"feature_names": names}
    return result


def training_labels(train: Stream) -> set[str]:
    """Every label of the training sequences, from the checking pass's counts.

    Args:
        train: the training split.
    """
    return {label for text in train.counts for label in labels_of(text)}


def statistics(train: Stream) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """Per-feature mean and standard deviation of the training frames, NaN and inf ignored,
    and their labels, in one pass over at most ``FIT_SEQUENCES`` sequences chosen by hash.

    Sums are float64, merged sequence by sequence (Chan, Golub and LeVeque's pairwise update),
    so memory holds one sequence. A feature with no finite value gets mean and std 0.

    Args:
        train: the training split.
    """
    n = mean = m2 = None
    labels: set[str] = set()
    for columns in train.sample(FIT_SEQUENCES).batches():
        for recording in columns[RECORDING]:
            x = recording.frames.astype(np.float64)
            finite = np.isfinite(x)
            x = np.where(finite, x, 0.0)
            count = finite.sum(0).astype(np.float64)
            part_mean = x.sum(0) / np.maximum(count, 1)
            part_m2 = (np.where(finite, x - part_mean, 0.0) ** 2).sum(0)
            if n is None:
                n, mean, m2 = (np.zeros_like(part_mean) for _ in range(3))
            total = n + count
            delta, share = part_mean - mean, count / np.maximum(total, 1)
            mean, m2 = mean + delta * share, m2 + part_m2 + delta**2 * n * share
            n = total
            labels.update(str(y) for y in np.unique(recording.labels).tolist())
    if n is None:
        raise UserError(f"expected training sequences in {train.source}, found none")
    return mean, np.sqrt(m2 / np.maximum(n, 1)), labels


def windows(
    train: Stream,
    prep: dict,
    length: int,
    stride: int,
    seed: int | None,
    worker: int = 0,
    workers: int = 1,
):
    """A ``tf.data.Dataset`` of training windows ``(frames [length, F] float32, label ids
    [length] int32)``, cut per sequence as the shards are read (``frames.window_pairs``: NaN
    frames and id 0 pad), shard order and windows shuffled when ``seed`` is given.

    A frame whose label the preprocessing lacks gets id 0 and is not trained on; that happens
    only when the checking pass stopped counting label sets (``corpus.DISTINCT_CAP``).

    Args:
        train: the training split.
        prep: the fitted preprocessing (``features``, ``labels``).
        length: the window length.
        stride: steps between window starts.
        seed: the shuffle seed; None: no shuffling.
        worker: this worker's index in a multi-worker job.
        workers: how many workers read the corpus (see ``Stream.dataset``).
    """
    import tensorflow as tf

    index = {name: i for i, name in enumerate(prep["labels"], 1)}
    features = prep["features"]

    def elements(batches):
        for columns in batches:
            for recording in columns[RECORDING]:
                names, inverse = np.unique(recording.labels, return_inverse=True)
                ids = np.array([index.get(str(y), 0) for y in names], np.int32)[inverse]
                yield from frames.window_pairs(recording.frames, ids, length, stride)

    signature = (tf.TensorSpec([length, features], tf.float32), tf.TensorSpec([length], tf.int32))
    dataset = train.dataset(worker, workers, elements, signature, seed)
    if seed is None:
        return dataset
    size = max(1, min(SHUFFLE_WINDOWS, SHUFFLE_BYTES // (length * (features + 1) * 4)))
    return dataset.shuffle(size, seed=seed, reshuffle_each_iteration=True)
