"""Sentiment: many-to-one. A text goes in, one label comes out.

Embedding -> stacked bidirectional LSTM (masked, right-padded: the fast kernel) -> masked
max+mean pooling over time -> softmax over any number of classes.

Run it on the built-in sample (12,808 Rotten Tomatoes snippets, fresh/rotten), a few minutes on
2 CPU cores:

    lstm-recipes run sentiment

Expect test accuracy about 0.77 (see benchmarks/RESULTS.md). On IMDB (25,000 + 25,000 reviews):

    lstm-recipes run sentiment --preset imdb \\
        --data ../shared/data/sentiment/imdb/train.csv.gz \\
        --test-data ../shared/data/sentiment/imdb/test.csv.gz

Expect test accuracy >= 0.88 (measured 0.8896 with batch 128, training 3 min 10 s on 2 CPU
cores with bfloat16 instructions; 0.887 with the earlier batch 64, 0.889 and 0.890 on two seeds
with batch 32, in 8-14 minutes).
(The two files hold the Large Movie Review Dataset, Maas et al. 2011, as ``text,label`` CSV;
``--data tfds:imdb_reviews`` reads the same reviews through TFDS where it can download.)

Export: ``serving_default(text: string[None]) -> {label: string[None], probabilities:
float32[None, C]}``. LiteRT (``--format litert``): ``serving_default(tokens: int32[1, T])`` with
the same outputs and ``vocabulary.txt`` beside it (see ``portable``).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from pathlib import Path
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from lstm_recipes import blocks, cells, distribute, inspection, litert, metrics, plots, training
from lstm_recipes.data import (
    Splits,
    check_labels_seen,
    corpus,
    files,
    limit,
    make_splits,
    reading,
    shards,
    stream,
    vectors,
)
from lstm_recipes.data import text as text_lib
from lstm_recipes.data import tfds as tfds_lib
from lstm_recipes.data.tfds import is_tfds_spec
from lstm_recipes.errors import UserError
from lstm_recipes.export import Serving
from lstm_recipes.precision import Precision

TOPOLOGY = "many-to-one"
DATA_FORMS = {
    "builtin": "12,808 Rotten Tomatoes snippets, fresh/rotten (Pang & Lee 2005, CC BY 4.0)",
    "tfds:NAME": "a TFDS text classification dataset, e.g. tfds:imdb_reviews "
    "(features named by text_column, label_column)",
    "FILE.csv|.tsv|.jsonl[.gz]": "one example per row; columns named by text_column, label_column",
    "FOLDER/": "one sub-folder of .txt files per class (the sub-folder name is the label)",
    "'SHARDS-*.csv.gz'|FOLDER/|.parquet|.tfrecord": "a corpus streamed from shards (CSV/TSV/JSONL, "
    "gzip too, Parquet, TFRecord of tf.train.Example), split by a hash of each row",
}
SIGNATURES = {
    "serving_default": "text: string[None] -> {label: string[None], probabilities: float32[None, C]}"
}
MONITOR = "val_loss"
MAIN_METRIC = "accuracy"  # the test metric `ablate` compares
# `lstm-recipes tune --space default`: what moved accuracy in the hand-tuning of RESULTS.md.
TUNE_SPACE = ("learning_rate=3e-4..3e-3:log", "units=32,64,128", "layers=1,2", "embedding_dim=64,128,256", "dropout=0.2..0.6", "word_dropout=0.0..0.3", "pooling=last,max,mean,max_mean", "vocab_size=5000,10000,20000")  # fmt: skip
PREDICT_EXAMPLE = '"a gripping, beautifully acted film"'


@dataclasses.dataclass(frozen=True)
class Config:
    text_column: str = "text"  # column / JSON key / TFDS feature holding the text
    label_column: str = "label"  # column / JSON key / TFDS feature holding the class
    max_examples: int = 0  # use at most this many training examples (0: all)
    vocab_size: int = 20000  # words kept (most frequent in the train split), padding + OOV included
    max_length: int = 64  # tokens kept per text; the rest is cut off
    embedding_dim: int = 128  # width of the word embedding (a vectors file sets its own)
    embeddings: str = ""  # pretrained word vectors: a GloVe/word2vec/fastText text file (.gz too)
    train_embeddings: bool = True  # false: keep the pretrained vectors frozen
    units: int = 64  # LSTM units per direction
    layers: int = 1  # stacked LSTM layers
    cell: cells.Cell = "lstm"  # lstm (fast kernel), a Greff et al. variant, gru, simple_rnn
    bidirectional: bool = True  # read the text in both directions
    residual: bool = False  # residual connections between stacked layers
    pooling: Literal["last", "max", "mean", "max_mean"] = "max_mean"  # sequence -> vector
    dropout: float = 0.4  # dropout on embeddings, between layers and before the softmax
    word_dropout: float = 0.0  # share of words replaced by the unknown-word id in training
    batch_size: int = 64  # examples per batch
    epochs: int = 8  # most epochs; early stopping may end sooner
    patience: int = 2  # epochs without validation-loss improvement before stopping
    learning_rate: float = 1e-3  # Adam learning rate
    lr_decay: float = 1.0  # learning rate multiplied by this after every epoch
    clipnorm: float = 0.0  # gradient-norm clipping (0: off)
    max_minutes: float = 0.0  # stop training after this many minutes (0: no limit)
    validation_size: float = 0.1  # held out for validation: a share (< 1) or a count of examples
    test_size: float = 0.1  # held out for test when no --test-data: a share or a count
    seed: int = 42  # seeds the split, shuffling and initial weights
    strategy: distribute.Strategy = "default"  # tf.distribute: default, mirrored, multi-worker, tpu
    precision: Precision = "float32"  # mixed_bfloat16 (CPUs with bf16 instructions) or auto
    encoding: str = "utf-8"  # text files' codec (any Python codec: cp1252, latin-1, utf-16, ...)
    decode_errors: reading.DecodeErrors = "strict"  # replace: undecodable bytes -> U+FFFD, counted
    skip_bad_rows: int = 0  # broken rows (or missing images) skipped and reported before refusing


PRESETS = {
    "tiny": Config(
        max_examples=400,
        vocab_size=500,
        max_length=24,
        embedding_dim=16,
        units=8,
        batch_size=32,
        epochs=2,
    ),
    "default": Config(),
    "imdb": Config(
        vocab_size=20000,
        max_length=1000,
        embedding_dim=128,
        units=64,
        dropout=0.5,
        word_dropout=0.25,
        # 128 reviews per step: on a CPU a step costs mostly per time step, not per review, so
        # larger batches run more tokens per second. With one layer, word dropout and bfloat16
        # products it trained 563 examples/s to 0.8896, batch 64 489/s to 0.8878 (a two-layer
        # float32 try on 2026-11-27 had lost accuracy, 0.873; benchmarks/RESULTS.md).
        batch_size=128,
        learning_rate=2e-3,
        epochs=4,
        lr_decay=0.6,
        patience=1,
        # bfloat16 where the CPU has it: 1.10x the examples/s at 0.8878 accuracy against
        # float32's 0.8850 (benchmarks/RESULTS.md, "bfloat16"); float32 elsewhere.
        precision="auto",
    ),
}


# ----------------------------------------------------------------------------- data


def _examples(config: Config, spec: str) -> tuple[list[tuple[str, str]], str]:
    """(text, label) pairs from one --data spec, and a description of the source."""
    if spec == "builtin":
        path = importlib.resources.files("lstm_recipes.recipes") / "data/rotten_tomatoes.csv.gz"
        with importlib.resources.as_file(path) as p:
            rows = files.read_table(Path(p), ["text", "label"])
        return [(r["text"], r["label"]) for r in rows], "builtin Rotten Tomatoes snippets"
    path = Path(spec)
    if path.is_dir():
        return files.read_class_folder(path), f"class folders in {path}"
    if not path.exists():
        raise UserError(
            f"expected --data to be builtin, tfds:NAME, a .csv/.tsv/.jsonl file or a folder of "
            f"class sub-folders; found no file or folder at {spec}"
        )
    pairs = []
    for line, row in files.read_rows(path, [config.text_column, config.label_column]):
        text, label = row[config.text_column], row[config.label_column]
        if label is None or str(label).strip() == "":
            reading.bad_row(str(path), f"row {line} has an empty {config.label_column!r}")
            continue
        pairs.append(("" if text is None else str(text), str(label).strip()))
    return pairs, str(path)


def load_data(
    config: Config,
    data: str = "builtin",
    test_data: str | None = None,
    validation_data: str | None = None,
) -> Splits:
    """Train/validation/test (text, label) pairs from --data and optional --test-data and
    --validation-data."""
    fields = shards.Fields((config.text_column, config.label_column))
    read_file = lambda spec: _examples(config, spec)[0]  # noqa: E731
    if shards.is_shards_spec(data):
        result = corpus.splits(data, test_data, fields, config, read_file, 1, validation_data)
    elif is_tfds_spec(data):
        hint = "--data train.csv --test-data test.csv (columns text,label) or a folder of class folders"
        parts, _ = tfds_lib.stream_shards(data, list(fields.names), hint)
        result = corpus.splits(
            parts["train"],
            test_data or parts.get("test"),
            corpus.Source(fields, tfds_lib.read_split),
            config,
            read_file,
            1,
            validation_data or parts.get("validation"),
            held_source=corpus.Source(fields),
        )
    else:
        train, source = _examples(config, data)
        result = make_splits(
            train,
            read_file(test_data) if test_data else None,
            validation=read_file(validation_data) if validation_data else None,
            seed=config.seed,
            validation_size=config.validation_size,
            test_size=config.test_size,
            source=source,
        )
    if isinstance(result.train, stream.Stream):
        classes = sorted(result.train.counts)
    else:
        result.train = limit(result.train, config.max_examples, config.seed)
        classes = sorted({y for _, y in result.train})
    if len(classes) < 2:
        raise UserError(
            f"expected at least 2 classes in the training data of {data}, found "
            f"{len(classes)}: {', '.join(map(repr, classes)) or 'none'}"
        )
    if not result.train or not result.validation or not result.test:
        raise UserError(
            f"expected examples in train, validation and test, found {result.sizes()} in "
            f"{_specs(data, test_data)} (give more examples, or --test-data)"
        )
    check_labels_seen(result, lambda example: [example[1]], _specs(data, test_data), seen=classes)
    return result


def _specs(data: str, test_data: str | None) -> str:
    return f"{data} and {test_data}" if test_data else data


def _label_order(labels: set[str]) -> list[str]:
    # Integer labels sort as numbers (2 before 10); others alphabetically.
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def fit_preprocessing(config: Config, train: list | stream.Stream, run_dir: Path | None = None):
    """Vocabulary and label names, fitted on the training examples only; with ``embeddings``,
    the vocabulary's pretrained vectors kept in ``run_dir`` and their coverage."""
    prep = _fit_vocabulary(config, train)
    if config.embeddings:
        prep["embeddings"] = vectors.keep(
            config.embeddings, prep["vocabulary"], run_dir, config.seed
        )
    return prep


def _fit_vocabulary(config: Config, train: list | stream.Stream) -> dict:
    if isinstance(train, stream.Stream):
        lengths: list[int] = []
        (vocabulary,), counted = text_lib.count_vocabularies(
            train.sample(stream.FIT_ROWS).batches(),
            [(0, config.vocab_size, text_lib.standardize)],
            lengths=lengths,
        )
        edges = text_lib.quantile_boundaries(np.minimum(lengths, config.max_length))
        return {
            "vocabulary": vocabulary,
            "labels": _label_order(set(train.counts)),
            "bucket_edges": edges,
            "fitting": counted,
        }
    return {
        "vocabulary": text_lib.fit_vocabulary([t for t, _ in train], config.vocab_size),
        "labels": _label_order({y for _, y in train}),
    }


def batches(config: Config, prep: dict, examples: list, training: bool) -> tf.data.Dataset:
    """Length-bucketed batches of (token ids, class id)."""
    if isinstance(examples, stream.Stream):
        return _streamed_batches(config, prep, examples, training)
    index = {name: i for i, name in enumerate(prep["labels"])}
    unknown = sorted({y for _, y in examples if y not in index})
    if unknown:
        raise UserError(
            f"expected labels seen in training ({', '.join(prep['labels'])}), "
            f"found {', '.join(unknown[:10])} in the evaluation data"
        )
    vectorizer = text_lib.make_vectorizer(prep["vocabulary"])
    ids = text_lib.encode(vectorizer, [t for t, _ in examples], config.max_length)
    targets = tf.constant([index[y] for _, y in examples], tf.int32)
    return text_lib.bucketed_batches(
        ids,
        targets,
        config.batch_size,
        training=training,
        seed=config.seed,
        max_length=config.max_length,
    )


def _streamed_batches(config: Config, prep: dict, train: stream.Stream, training: bool):
    vectorizer = text_lib.make_vectorizer(prep["vocabulary"])
    labels = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(prep["labels"], tf.range(len(prep["labels"]))), -1
    )

    def encode(texts, label_names):
        ids = tf.cast(vectorizer(texts)[:, : config.max_length], tf.int32)
        return ids, labels.lookup(label_names)

    return text_lib.streamed_batches(
        train.dataset(*distribute.worker_of(config.strategy)),
        encode,
        config.batch_size,
        training=training,
        seed=config.seed,
        edges=prep["bucket_edges"],
        length_of=lambda x, y: tf.shape(x)[0],
        pad=lambda x, y: (tf.pad(x, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(x)[1])]]), y),
    )


# ----------------------------------------------------------------------------- model


def build_model(config: Config, prep: dict) -> keras.Model:
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = blocks.TokenDropout(config.word_dropout, seed=config.seed)(tokens)
    x = vectors.embedding(len(prep["vocabulary"]) + 2, config, prep.get("embeddings"))(x)
    x = keras.layers.Dropout(config.dropout)(x)
    encoder = dict(
        units=config.units,
        num_layers=config.layers,
        bidirectional=config.bidirectional,
        dropout=config.dropout,
        residual=config.residual,
        cell=config.cell,
    )
    x = blocks.sequence_summary(x, config.pooling, encoder)
    x = keras.layers.Dropout(config.dropout)(x)
    probabilities = keras.layers.Dense(len(prep["labels"]), activation="softmax", name="classes")(x)
    model = keras.Model(tokens, probabilities, name="sentiment")
    model.compile(
        optimizer=training.optimizer(config),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


# ----------------------------------------------------------------------------- evaluation


def evaluate(config: Config, model: keras.Model, prep: dict, examples: list, run_dir: Path) -> dict:
    """Accuracy, macro-F1 and the confusion matrix (also as plots/confusion_matrix.png)."""
    targets, outputs = training.predictions(model, batches(config, prep, examples, training=False))
    y_true = np.concatenate(targets)
    y_pred = np.concatenate(outputs).argmax(-1)
    result = metrics.classification_metrics(y_true, y_pred, prep["labels"])
    plots.confusion_matrix(
        result["confusion_matrix"],
        prep["labels"],
        run_dir / "plots" / "confusion_matrix.png",
        title=f"test accuracy {result['accuracy']:.3f}",
    )
    return result


# ----------------------------------------------------------------------------- export


def serving(config: Config, model: keras.Model, prep: dict) -> Serving:
    """Raw text in; label and class probabilities out."""
    vectorizer = text_lib.make_vectorizer(prep["vocabulary"])
    labels = tf.constant(prep["labels"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")], autograph=False)
    def serve(text):
        ids = text_lib.dense_ids(vectorizer(text), config.max_length)
        probabilities = model(ids, training=False)
        return {
            "label": tf.gather(labels, tf.argmax(probabilities, -1)),
            "probabilities": probabilities,
        }

    samples = [
        "a gripping, beautifully acted film",
        "dull and far too long",
        "",
        "ok " * 5000,
        "¡Qué película tan maravillosa! 映画 🎬",
    ]
    return Serving(
        {"serving_default": serve}, [model, vectorizer], {"serving_default": {"text": samples}}
    )


def portable(config: Config, model: keras.Model, prep: dict) -> litert.Portable:
    """LiteRT: ``tokens: int32[1, T]`` -> ``label: string[1]``, ``probabilities: float32[1, C]``.

    Token ids, not text: the string ops of the SavedModel's tokenizer need TensorFlow's Select
    ops (the Flex delegate) on a device, so the app tokenizes (README: a 10-line reference in
    Python) with ``vocabulary.txt`` (line n is id n: 0 pads, 1 is unknown).
    """
    labels = tf.constant(prep["labels"])

    @tf.function(input_signature=[tf.TensorSpec([1, None], tf.int32, name="tokens")])
    def serve(tokens):
        tokens = tf.pad(tokens, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(tokens)[1])]])
        probabilities = model(tokens[:, : config.max_length], training=False)
        return {
            "label": tf.gather(labels, tf.argmax(probabilities, -1)),
            "probabilities": probabilities,
        }

    vocabulary = ["[PAD]", "[UNK]", *prep["vocabulary"]]
    facts = {"labels": prep["labels"], "streaming": "no (one text per call)"}
    facts["tokenizer"] = {"vocabulary": "vocabulary.txt", "lowercase": True, "padding_id": 0}
    facts["tokenizer"].update(unknown_id=1, max_length=config.max_length)
    # Known, unknown and the last word, past max_length (which the model cuts).
    sample = [[2, 3, 1, len(vocabulary) - 1] + [5] * config.max_length]
    return litert.Portable(
        {"serving_default": serve},
        {"serving_default": {"tokens": sample}},
        facts,
        {"vocabulary.txt": "\n".join(vocabulary) + "\n"},
    )


# ----------------------------------------------------------------------------- inspection


def inspect_sequences(config: Config, prep: dict, texts, test, steps: int) -> list:
    """Tokens for ``lstm-recipes inspect``: each line of the texts, or test reviews up to
    ``steps`` tokens in all, each step labelled with its review's label."""
    vectorizer = text_lib.make_vectorizer(prep["vocabulary"])
    if texts is not None:
        rows = [(line, None) for text in texts for line in text.splitlines() if line.strip()]
    else:
        rows = test  # held in memory, a streamed corpus's too
    sequences, total = [], 0
    for text, label in rows:
        if total >= steps:
            break
        tokens = tf.strings.split(text_lib.standardize(tf.constant([text]))).numpy()[0]
        tokens = [t.decode() for t in tokens[: min(config.max_length, steps - total)]]
        ids = vectorizer(tf.constant([text])).numpy()[0][: len(tokens)]
        labels = None if label is None else [label] * len(tokens)
        sequences.append(inspection.Sequence(ids[None].astype("int32"), tokens, "tokens", labels))
        total += len(tokens)
    return sequences
