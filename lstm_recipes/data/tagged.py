"""Tagged-token corpora streamed from CoNLL shards, and the graph encoder of tokens.

A glob or a folder of CoNLL / CoNLL-U files is a corpus of sentences read by
``conll.read_blocks``: each sentence is a row whose fields are its token, tag and extra columns
(values joined by newlines), split by a hash of its tokens (the same sentence is in one split
only). Vocabularies are fitted in one bounded pass over a hash sample; ``TokenInputs`` turns
raw tokens into the model's ids in the graph, for streamed training batches and for serving
alike.
"""

from __future__ import annotations

import collections
import glob
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from lstm_recipes import aligned
from lstm_recipes.crf import chunk_constraints
from lstm_recipes.data import conll, corpus, records, shards, stream, tfds
from lstm_recipes.data.text import prune
from lstm_recipes.errors import UserError

SUFFIXES = (".conll", ".conllu", ".txt", ".iob", ".bio")  # files a folder of shards holds
WORD_CAP = 2_000_000  # distinct words counted at most (the rarer half is dropped past it)


RECORD_FORMATS = ("parquet", "tfrecord")  # one sentence per row: list columns of tokens, tags


def is_stream_spec(spec: str) -> bool:
    """True for a corpus streamed from shards: a glob, a folder of CoNLL files, or a Parquet or
    TFRecord file.

    Args:
        spec: the ``--data`` value.
    """
    if glob.has_magic(spec) or Path(spec).is_dir():
        return True
    return Path(spec).is_file() and shards.file_format(Path(spec)) in RECORD_FORMATS


def find(spec: str) -> list[Path]:
    """The shards of a glob (every file it matches), a folder (its files ending in ``.conll``,
    ``.conllu``, ``.txt``, ``.iob``, ``.bio``, gzip too, or ``.parquet``/``.tfrecord``) or one
    Parquet or TFRecord file, sorted; all CoNLL or all of one record format.

    Args:
        spec: a glob, a folder or a file.
    """
    if glob.has_magic(spec):
        paths = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        what = f"files matching {spec!r}"
    elif Path(spec).is_file():
        paths, what = [Path(spec)], spec
    else:
        paths = sorted(
            p
            for p in Path(spec).iterdir()
            if p.is_file()
            and (
                p.name.lower().removesuffix(".gz").endswith(SUFFIXES)
                or shards.file_format(p) in RECORD_FORMATS
            )
        )
        what = f"CoNLL files ({', '.join(SUFFIXES)}, .gz too) or Parquet/TFRecord files in {spec}"
    if not paths:
        raise UserError(f"expected {what}, found none")
    kinds = {
        shards.file_format(p) if shards.file_format(p) in RECORD_FORMATS else "CoNLL" for p in paths
    }
    if len(kinds) > 1:
        raise UserError(
            f"expected shards of one format, found {', '.join(sorted(kinds))} in {what}"
        )
    return paths


def source(token_column: str, tag_column: str, feature_columns: tuple[str, ...]) -> corpus.Source:
    """How ``corpus`` reads tagged shards with the configured columns.

    Args:
        token_column: the token column (number or CoNLL-U name; in Parquet/TFRecord the list
            column, ``tokens`` for a number).
        tag_column: the tag column (``tags`` in Parquet/TFRecord for a number).
        feature_columns: extra input columns (CoNLL only).
    """
    fields = shards.Fields((token_column, tag_column, *feature_columns), key=(0,))
    return corpus.Source(fields, read_any, find)


def read_any(path: str, fields, report) -> Iterator[shards.Batch]:
    """A shard's sentences as rows: CoNLL blocks (``conll.read_blocks``), or one sentence per
    Parquet row / ``tf.train.Example`` with a list of tokens and a list of tags of equal length.

    Args:
        path: the shard.
        fields: the configured token, tag and extra columns.
        report: where bad lines and rows go.
    """
    fmt = shards.file_format(Path(path))
    if fmt not in RECORD_FORMATS:
        yield from conll.read_blocks(path, fields, report)
        return
    if len(fields.names) > 2:
        raise UserError(
            f"{path}: expected no feature_columns with Parquet/TFRecord sentences (CoNLL only)"
        )
    names = tuple(
        default if name.lstrip("-").isdigit() else name
        for name, default in zip(fields.names, ("tokens", "tags"))
    )
    read = records.parquet_rows if fmt == "parquet" else records.tfrecord_rows
    rows = read(Path(path), shards.Fields(names), report, sep="\n")
    yield from _checked(path, names, _batched(rows), report)


def _batched(rows) -> Iterator[shards.Batch]:
    batch: list[list[str]] = [[], []]
    numbers: list[int] = []
    for number, (tokens, tags) in rows:
        batch[0].append(tokens)
        batch[1].append(tags)
        numbers.append(number)
        if len(numbers) == shards.BATCH_ROWS:
            yield batch, numbers
            batch, numbers = [[], []], []
    if numbers:
        yield batch, numbers


def tfds_source(tag_key: str) -> corpus.Source:
    """How ``corpus`` reads a TFDS tagging dataset's splits (``tokens`` and ``tag_key``).

    Args:
        tag_key: the feature holding the tags (``ner``, ``pos``, ``chunks``, ``upos``).
    """
    return corpus.Source(shards.Fields(("tokens", tag_key), key=(0,)), read_tfds)


def read_tfds(path: str, fields, report) -> Iterator[shards.Batch]:
    """``tfds.read_split`` with each example checked (see ``_checked``).

    Args:
        path: ``tfds:NAME@SPLIT``.
        fields: the token and tag features.
        report: where bad examples go.
    """
    yield from _checked(path, fields.names, tfds.read_split(path, fields, report), report)


def _checked(path: str, names, batches, report) -> Iterator[shards.Batch]:
    # Sentences with as many tags as tokens and at least one token; others are bad rows.
    for (tokens, tags), numbers in batches:
        kept: list[list[str]] = [[], []]
        kept_numbers = []
        for t, g, n in zip(tokens, tags, numbers):
            if not t:
                continue
            if t.count("\n") != g.count("\n"):
                report.bad_row(
                    f"{path}: example {n}",
                    f"expected as many {names[1]!r} tags as tokens, found "
                    f"{g.count(chr(10)) + 1} tags for {t.count(chr(10)) + 1} tokens",
                )
                continue
            kept[0].append(t)
            kept[1].append(g)
            kept_numbers.append(n)
        if kept_numbers:
            yield kept, kept_numbers


def fit(train: stream.Stream, vocab_size: int, min_count: int, lowercase: bool) -> dict:
    """Word, character and extra-column vocabularies, the tag set and whether the tags obey
    chunk constraints, in one pass over a hash sample of at most ``stream.FIT_ROWS`` sentences.

    Args:
        train: the training split.
        vocab_size: words kept, padding and unknown included.
        min_count: words seen fewer times are unknown.
        lowercase: count lowercased words.
    """
    sample = train.sample(stream.FIT_ROWS)
    words: collections.Counter = collections.Counter()
    chars: collections.Counter = collections.Counter()
    features: list[set] = [set() for _ in sample.fields.names[2:]]
    tags: set = set()
    starts, pairs = set(), set()
    rows = prunings = 0
    for batch in sample.batches():
        for row in zip(*batch):
            tokens, sentence_tags, feats = conll.from_row(row)
            words.update(t.lower() if lowercase else t for t in tokens)
            chars.update(c for t in tokens for c in t)
            for seen, column in zip(features, feats):
                seen.update(column)
            tags.update(sentence_tags)
            starts.add(sentence_tags[0])
            pairs.update(zip(sentence_tags, sentence_tags[1:]))
        rows += len(batch[0])
        if len(words) > WORD_CAP:
            words, prunings = prune(words, WORD_CAP // 2), prunings + 1
    labels = sorted(tags)
    # most_common, as the in-memory fit: ties in first-seen order.
    kept = words.most_common(vocab_size - 2)
    return {
        "constrained": _obeys(labels, starts, pairs),
        "words": [w for w, n in kept if n >= min_count],
        "chars": [c for c, _ in chars.most_common(500)],
        "features": [sorted(values) for values in features],
        "labels": labels,
        "fitting": {"rows": rows, "prunings": prunings, "cap": WORD_CAP},
    }


def _obeys(labels: list[str], starts: set, pairs: set) -> bool:
    # crf.follows_constraints over every sentence, from the first tags and tag pairs seen.
    constraints = chunk_constraints(labels)
    if constraints is None:
        return False
    allowed, start = constraints
    index = {name: i for i, name in enumerate(labels)}
    return all(start[index[t]] for t in starts) and all(
        allowed[index[a]][index[b]] for a, b in pairs
    )


class TokenInputs(tf.Module):
    """Raw tokens ("" pads) and extra columns -> the tagging model's inputs, in the graph.

    Args:
        prep: the fitted vocabularies (``words``, ``chars``, ``features``).
        max_length: tokens kept per sentence.
        max_word_chars: characters kept per token.
        lowercase: look words up lowercased.
    """

    def __init__(self, prep: dict, max_length: int, max_word_chars: int, lowercase: bool):
        super().__init__()
        self.max_length, self.width, self.lowercase = max_length, max_word_chars, lowercase
        self.words = keras.layers.StringLookup(vocabulary=prep["words"], mask_token="")
        self.chars = keras.layers.StringLookup(vocabulary=prep["chars"], mask_token="")
        self.features = [
            keras.layers.StringLookup(vocabulary=v, mask_token="") for v in prep["features"]
        ]

    def __call__(self, tokens, features=None):
        """({"words", "chars", "features"} ids, real-token mask) for tokens [B, T] (and
        features [B, T, K])."""
        tokens = tokens[:, : self.max_length]
        real = tf.not_equal(tokens, "")
        words = tf.strings.lower(tokens, "utf-8") if self.lowercase else tokens
        word_ids = tf.where(real, tf.cast(self.words(words), tf.int32), 0)
        pieces = tf.strings.unicode_split(tokens, "UTF-8", errors="replace")
        pieces = pieces[:, :, : self.width]
        shape = [tf.shape(tokens)[0], tf.shape(tokens)[1], self.width]
        char_ids = tf.cast(self.chars(pieces).to_tensor(0, shape=shape), tf.int32)
        columns = [
            tf.where(real, tf.cast(lookup(features[:, : tf.shape(tokens)[1], i]), tf.int32), 0)
            for i, lookup in enumerate(self.features)
        ]
        empty = tf.zeros([tf.shape(tokens)[0], tf.shape(tokens)[1], 0], tf.int32)
        feats = tf.stack(columns, -1) if columns else empty
        return {"words": word_ids, "chars": char_ids, "features": feats}, real


def _bucketed(ds: tf.data.Dataset, batch_size: int, edges: list[int]) -> tf.data.Dataset:
    return ds.bucket_by_sequence_length(
        element_length_func=lambda x, y: tf.shape(y)[0],
        bucket_boundaries=edges,
        bucket_batch_sizes=[batch_size] * (len(edges) + 1),
    ).prefetch(tf.data.AUTOTUNE)


def _index(values: list[str]) -> dict[str, int]:
    # 0 pads, 1 is unknown: the same ids as keras.layers.StringLookup(mask_token="").
    return {v: i for i, v in enumerate(values, 2)}


def sentence_batches(
    sentences: list[conll.Sentence],
    prep: dict,
    *,
    max_length: int,
    max_word_chars: int,
    lowercase: bool,
    batch_size: int,
    edges: list[int],
    training: bool,
    seed: int,
) -> tf.data.Dataset:
    """Length-bucketed batches of sentences held in memory: (inputs, tag ids; 0 pads).

    Args:
        sentences: (tokens, tags, extra columns) each.
        prep: the fitted vocabularies and ``labels``.
        max_length: tokens kept per sentence.
        max_word_chars: characters kept per token.
        lowercase: look words up lowercased.
        batch_size: sentences per batch.
        edges: bucket boundaries (sentence lengths).
        training: shuffle every epoch when True.
        seed: shuffle seed.
    """
    word_ix, char_ix = _index(prep["words"]), _index(prep["chars"])
    feat_ix = [_index(values) for values in prep["features"]]
    k, width, encoded = len(feat_ix), max_word_chars, []
    for n, (tokens, tags, feats) in enumerate(sentences):
        if len(feats) != k:
            raise UserError(f"expected {k} extra input columns, found {len(feats)}")
        tokens, tags = tokens[:max_length], tags[:max_length]
        words = np.array(
            [word_ix.get((t.lower() if lowercase else t), 1) for t in tokens], np.int32
        )
        chars = np.zeros((len(tokens), width), np.int32)
        for i, token in enumerate(tokens):
            ids = [char_ix.get(c, 1) for c in token[:width]]
            chars[i, : len(ids)] = ids
        columns = [[ix.get(v, 1) for v in col[:max_length]] for ix, col in zip(feat_ix, feats)]
        features = np.array(columns, np.int32).T.reshape(len(tokens), k)
        tag_ids = aligned.label_ids(prep["labels"], tags, f"sentence {n + 1}")
        encoded.append((words, chars, features, tag_ids))
    ds = tf.data.Dataset.from_generator(
        lambda: iter(encoded),
        output_signature=(
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None, width], tf.int32),
            tf.TensorSpec([None, k], tf.int32),
            tf.TensorSpec([None], tf.int32),
        ),
    ).cache()
    if training:
        ds = ds.shuffle(len(encoded), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda w, c, f, y: ({"words": w, "chars": c, "features": f}, y))
    return _bucketed(ds, batch_size, edges)


def streamed_batches(
    train: stream.Stream,
    prep: dict,
    *,
    max_length: int,
    max_word_chars: int,
    lowercase: bool,
    batch_size: int,
    edges: list[int],
    training: bool,
    seed: int,
    worker: int = 0,
    workers: int = 1,
) -> tf.data.Dataset:
    """Length-bucketed training batches read from the shards: (inputs, tag ids; 0 pads).

    Encoded in the graph by ``TokenInputs`` (as served). Tags the fitting sample never saw get
    id 0: those tokens are not trained on.

    Args:
        train: the training split.
        prep: the fitted vocabularies and ``labels``.
        max_length: tokens kept per sentence.
        max_word_chars: characters kept per token.
        lowercase: look words up lowercased.
        batch_size: sentences per batch.
        edges: bucket boundaries (sentence lengths).
        training: shuffle (within 20,000 sentences) when True.
        seed: shuffle seed.
        worker: this worker's index.
        workers: how many workers read the corpus.
    """
    encoder = TokenInputs(prep, max_length, max_word_chars, lowercase)
    labels = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            prep["labels"], tf.range(1, len(prep["labels"]) + 1, dtype=tf.int32)
        ),
        0,
    )
    k = len(prep["features"])

    def encode(tokens, tags, *feats):
        tokens = tf.strings.split(tokens, "\n")[None, :max_length]
        columns = [tf.strings.split(f, "\n")[:max_length] for f in feats]
        features = tf.stack(columns, -1)[None] if k else None
        inputs, _ = encoder(tokens, features)
        ids = labels.lookup(tf.strings.split(tags, "\n")[:max_length])
        return {name: value[0] for name, value in inputs.items()}, ids

    ds = train.dataset(worker, workers)
    if training:
        ds = ds.shuffle(20_000, seed=seed, reshuffle_each_iteration=True)
    return _bucketed(ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE), batch_size, edges)


def inspect_sequences(prep: dict, config, texts, test, steps: int) -> list:
    """Tokens for ``lstm-recipes inspect``: each line of the texts split at spaces, or test
    sentences with their tags, up to ``steps`` tokens in all.

    Args:
        prep: the fitted vocabularies.
        config: the tagging config (``max_length``, ``max_word_chars``, ``lowercase``).
        texts: the texts to inspect, or None for the test sentences.
        test: the test split.
        steps: at most this many tokens in all.
    """
    from lstm_recipes import inspection

    inputs = TokenInputs(prep, config.max_length, config.max_word_chars, config.lowercase)
    if texts is not None:
        if prep["features"]:
            raise UserError(
                f"expected no TEXT for a model that also reads {len(prep['features'])} extra "
                "column(s); run inspect without TEXT to use the test sentences"
            )
        rows = [(line.split(), None, []) for t in texts for line in t.splitlines() if line.split()]
    else:  # held in memory, a streamed corpus's too
        rows = test
    sequences, total = [], 0
    for tokens, tags, feats in rows:
        if total >= steps:
            break
        tokens = list(tokens[: min(config.max_length, steps - total)])
        columns = np.array([col[: len(tokens)] for col in feats], str).T[None] if feats else None
        ids, _ = inputs(tf.constant([tokens]), None if columns is None else tf.constant(columns))
        ids = {name: value.numpy() for name, value in ids.items()}
        labels = None if tags is None else list(tags[: len(tokens)])
        sequences.append(inspection.Sequence(ids, tokens, "tokens", labels))
        total += len(tokens)
    return sequences
