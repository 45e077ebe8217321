"""Token tagging: words -> one tag per word (chunks, named entities, parts of speech).

Aligned many-to-many: lowercased word embeddings + a character CNN or BiLSTM over each word +
optional extra input columns (e.g. CoNLL-2000's POS column) -> a BiLSTM -> a tag per token, by
softmax or a linear-chain CRF (``lstm_recipes.crf``). Chunk tags (IOB2, BIOES) decode by Viterbi
over legal transitions and score with conlleval's chunk F1. (Frames: ``frame_labeling``.)

Chunking, CoNLL-2000 (https://www.clips.uantwerpen.be/conll2000/chunking/, or NLTK's
``conll2000`` corpus), with its POS column and a CRF. Expect chunk F1 about 93 (measured 93.21
in 24 minutes on a busy 2-core machine; 93.16 before tagging had its own recipe):

    lstm-recipes run tagging --preset conll2000 \\
        --data ../shared/data/labeling/conll2000/train.txt \\
        --test-data ../shared/data/labeling/conll2000/test.txt

Universal POS tags, UD English EWT (https://github.com/UniversalDependencies/UD_English-EWT).
Expect test accuracy about 0.95 (measured 0.9507 in 17 minutes):

    lstm-recipes run tagging --preset ud-upos \\
        --data ../shared/data/labeling/ud-english-ewt/en_ewt-ud-train.conllu.gz \\
        --test-data ../shared/data/labeling/ud-english-ewt/en_ewt-ud-test.conllu.gz

``lstm-recipes run tagging`` alone restores punctuation in the built-in Rotten Tomatoes
snippets (each word gets the mark after it). Test predictions: ``RUN_DIR/predictions.conll``.

Export: ``serving_default(tokens: string[None, None]) -> {tags, probabilities}`` ("" pads and
gets the tag ""; a CRF's probabilities are its marginals), plus ``features: string[None, None,
K]`` with extra columns, else ``tag_text(text: string[None]) -> {tokens, tags}``; with
``--set bidirectional=false`` (no CRF) ``step`` tags a token at a time. LiteRT (``--format
litert``): the same outputs from token ids, ``vocabulary.json`` beside (``lstm_recipes.tagger``).
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Literal

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from lstm_recipes import aligned, blocks, cells, distribute, litert, metrics, tagger, training
from lstm_recipes.crf import CRF, follows_constraints
from lstm_recipes.data import (
    Splits,
    check_labels_seen,
    conll,
    corpus,
    limit,
    make_splits,
    reading,
    stream,
    tagged,
    vectors,
)
from lstm_recipes.data import tfds as tfds_lib
from lstm_recipes.data.tfds import is_tfds_spec
from lstm_recipes.errors import UserError
from lstm_recipes.export import Serving
from lstm_recipes.precision import Precision
from lstm_recipes.tagger import Tagger

TOPOLOGY = "many-to-many (aligned)"
DATA_FORMS = {
    "builtin": "punctuation restoration on 12,808 Rotten Tomatoes snippets (Pang & Lee 2005, "
    "CC BY 4.0): words -> the mark that followed each (COMMA, PERIOD, QUESTION, O)",
    "FILE.txt|.conll[.gz]": "CoNLL columns, one token per line, blank line between sentences; "
    "token_column, tag_column, feature_columns pick columns",
    "FILE.conllu[.gz]": "CoNLL-U; columns by name, e.g. tag_column=upos or xpos",
    "FILE.jsonl[.gz]": '{"tokens": [...], "tags": [...]} per line',
    "tfds:NAME": "a TFDS tagging dataset, e.g. tfds:conll2003 (tag_column=ner, pos or chunks)",
    "'SHARDS-*.conll.gz'|FOLDER/": "CoNLL / CoNLL-U shards streamed sentence by sentence, "
    "split by a hash of each sentence's tokens",
    "'SHARDS-*.parquet'|.tfrecord": "one sentence per row: a list of tokens and a list of tags "
    "(token_column, tag_column; tokens, tags for the numeric defaults), streamed",
}
SIGNATURES = {
    "serving_default": "tokens: string[None, None] (+ features: string[None, None, K]) -> "
    "{tags: string[None, None], probabilities: float32[None, None, C]}",
    "tag_text": "text: string[None] -> {tokens: string[None, None], tags: string[None, None]} "
    "(without extra input columns)",
    "step": "words: int32[B], chars: int32[B, W] (+ features), states: float32[B, layers x n, "
    "units] -> {tags: string[B], probabilities, states} (bidirectional=false, no CRF)",
}
# Accuracy keeps improving after the validation loss turns up (over-confident errors): on
# CoNLL-2000 the loss was lowest at epoch 6 of 9, the accuracy still rose at epoch 9.
MONITOR = "val_masked_accuracy"
MAIN_METRIC = "accuracy"  # the test metric `ablate` compares
TUNE_SPACE = ("learning_rate=5e-4..5e-3:log", "units=32,64,128,256", "layers=1,2", "dropout=0.1..0.6", "word_dropout=0.0..0.3", "char_encoder=none,cnn,lstm", "embedding_dim=50,100,200", "batch_size=16,32,64")  # fmt: skip
PREDICT_EXAMPLE = '"The cat sat on the mat ."'


@dataclasses.dataclass(frozen=True)
class Config:
    token_column: str = "0"  # CoNLL column of the tokens: number (0 first) or CoNLL-U name (form)
    tag_column: str = "-1"  # CoNLL column of the tags: number (-1 last); CoNLL-U: upos or xpos
    feature_columns: str = ""  # extra CoNLL input columns, comma-separated (e.g. "1" for POS)
    max_examples: int = 0  # use at most this many training sentences (0: all)
    max_length: int = 150  # longest sentence kept whole (longer ones are cut)
    vocab_size: int = 30000  # words kept (most frequent in training)
    min_count: int = 1  # words seen fewer times are unknown
    lowercase: bool = True  # the word embedding sees lowercased words (chars see case)
    char_encoder: Literal["cnn", "lstm", "none"] = "cnn"  # per-word character features
    char_dim: int = 32  # character embedding width
    char_units: int = 64  # CNN filters or LSTM units per direction
    max_word_chars: int = 20  # characters kept per word
    feature_dim: int = 16  # embedding width of each extra input column
    embedding_dim: int = 100  # word embedding width (a vectors file sets its own)
    embeddings: str = ""  # pretrained word vectors: a GloVe/word2vec/fastText text file (.gz too)
    train_embeddings: bool = True  # false: keep the pretrained vectors frozen
    word_dropout: float = 0.05  # share of words replaced by the unknown word in training
    constrained: bool = True  # Viterbi over legal IOB2/BIOES transitions for chunk tags
    crf: bool = False  # a linear-chain CRF output layer (learned transitions)
    units: int = 128  # LSTM units per direction
    layers: int = 2  # stacked BiLSTM layers
    bidirectional: bool = True  # read the sentence both ways (false: causal, exports a step)
    cell: cells.Cell = "lstm"  # lstm (fast kernel), a Greff et al. variant, gru, simple_rnn
    dropout: float = 0.3  # dropout on inputs, between layers and before the softmax
    batch_size: int = 32  # sentences per batch
    epochs: int = 20  # most epochs; early stopping may end sooner
    patience: int = 3  # epochs without validation improvement before stopping
    learning_rate: float = 2e-3  # Adam learning rate
    lr_decay: float = 1.0  # learning rate multiplied by this after every epoch
    clipnorm: float = 5.0  # gradient-norm clipping (0: off)
    max_minutes: float = 0.0  # stop training after this many minutes (0: no limit)
    validation_size: float = 0.1  # held out for validation: a share (< 1) or a count
    test_size: float = 0.2  # held out for test when no --test-data: a share or a count
    seed: int = 42  # seeds the split, shuffling and initial weights
    strategy: distribute.Strategy = "default"  # tf.distribute: default, mirrored, multi-worker, tpu
    precision: Precision = "float32"  # mixed_bfloat16 (CPUs with bf16 instructions) or auto
    encoding: str = "utf-8"  # text files' codec (any Python codec: cp1252, latin-1, utf-16, ...)
    decode_errors: reading.DecodeErrors = "strict"  # replace: undecodable bytes -> U+FFFD, counted
    skip_bad_rows: int = 0  # broken rows (or missing images) skipped and reported before refusing


PRESETS = {
    "tiny": Config(
        max_examples=200,
        vocab_size=500,
        char_dim=8,
        char_units=8,
        embedding_dim=16,
        units=8,
        layers=1,
        batch_size=16,
        epochs=2,
    ),
    "default": Config(),
    # Chunking with the gold POS column as an extra input, as in the CoNLL-2000 shared task.
    "conll2000": Config(
        feature_columns="1",
        feature_dim=32,
        crf=True,
        units=192,
        dropout=0.5,
        word_dropout=0.1,
        lr_decay=0.9,
        epochs=30,
        max_minutes=27.0,
    ),
    "ud-upos": Config(
        tag_column="upos",
        dropout=0.5,
        word_dropout=0.1,
        lr_decay=0.9,
        epochs=30,
        max_minutes=27.0,
        # bfloat16 where the CPU has it: 1.11x the examples/s at 0.9508 accuracy against
        # float32's 0.9473 (benchmarks/RESULTS.md, "bfloat16"); float32 elsewhere. conll2000
        # stays float32 (0.97x there).
        precision="auto",
    ),
    # A small, fast UPOS task for `ablate` (cells compared in minutes): 2,000 training sentences,
    # words only (no character features, so the recurrent cell carries the context).
    "upos-small": Config(
        tag_column="upos",
        max_examples=2000,
        char_encoder="none",
        units=64,
        layers=1,
        dropout=0.3,
        epochs=8,
        patience=2,
        learning_rate=3e-3,
    ),
}

# ----------------------------------------------------------------------------- data


def _read(config: Config, spec: str) -> tuple[list[conll.Sentence], str]:
    if spec == "builtin":
        return conll.builtin_punctuation(), "builtin Rotten Tomatoes snippets (punctuation)"
    path = Path(spec)
    if not path.exists():
        raise UserError(
            f"expected builtin, tfds:NAME, a tagged-token file or a glob or folder of CoNLL "
            f"files, found nothing at {spec}"
        )
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json")):
        return conll.drop_empty(conll.read_jsonl(path)), str(path)
    token_column, tag_column = conll.conllu_columns(path, config.token_column, config.tag_column)
    columns = _feature_columns(config)
    return conll.drop_empty(conll.read_conll(path, token_column, tag_column, columns)), str(path)


def _feature_columns(config: Config) -> tuple[str, ...]:
    return tuple(c.strip() for c in config.feature_columns.split(",") if c.strip())


def load_data(
    config: Config,
    data: str = "builtin",
    test_data: str | None = None,
    validation_data: str | None = None,
) -> Splits:
    """Train/validation/test sentences: (tokens, tags, extra columns) each."""
    read_file = lambda spec: _read(config, spec)[0]  # noqa: E731
    if tagged.is_stream_spec(data) or is_tfds_spec(data):
        source = held = tagged.source(
            config.token_column, config.tag_column, _feature_columns(config)
        )
        specs = data, test_data, validation_data
        if is_tfds_spec(data):
            tag_key = config.tag_column if not config.tag_column.lstrip("-").isdigit() else "ner"
            hint = "--data train.txt --test-data test.txt (CoNLL columns) or a .conllu file"
            parts, _ = tfds_lib.stream_shards(data, ["tokens", tag_key], hint)
            source = tagged.tfds_source(tag_key)
            specs = (
                parts["train"],
                test_data or parts.get("test"),
                validation_data or parts.get("validation"),
            )
        joined = lambda spec: [conll.to_row(s) for s in read_file(spec)]  # noqa: E731
        result = corpus.splits(
            specs[0],
            specs[1],
            source,
            config,
            joined,
            None,
            specs[2],
            tagged.is_stream_spec,
            held_source=held,
        )
        result.validation = [conll.from_row(row) for row in result.validation]
        result.test = [conll.from_row(row) for row in result.test]
    else:
        items, source = _read(config, data)
        result = make_splits(
            items,
            read_file(test_data) if test_data else None,
            validation=read_file(validation_data) if validation_data else None,
            seed=config.seed,
            validation_size=config.validation_size,
            test_size=config.test_size,
            source=source,
        )
        result.train = limit(result.train, config.max_examples, config.seed)
    if not result.train or not result.validation or not result.test:
        raise UserError(
            f"expected sentences in train, validation and test, found {result.sizes()} in {data}"
        )
    # Test tags unseen in training (CoNLL-2000's test set has I-LST, its training set not) are
    # scored as errors by evaluate; validation tags are trained against, so they must be known.
    specs = f"{data} and {test_data}" if test_data else data
    if not isinstance(result.train, stream.Stream):
        check_labels_seen(result, lambda sentence: sentence[1], specs, names=("validation",))
    return result


# ----------------------------------------------------------------------------- preprocessing


def fit_preprocessing(config: Config, train: list | stream.Stream, run_dir: Path | None = None):
    """Word, character and extra-column vocabularies and the tag set, from train only; with
    ``embeddings``, the words' pretrained vectors kept in ``run_dir`` and their coverage."""
    prep = _fit_vocabularies(config, train)
    if config.embeddings:
        prep["embeddings"] = vectors.keep(config.embeddings, prep["words"], run_dir, config.seed)
    return prep


def _fit_vocabularies(config: Config, train: list | stream.Stream) -> dict:
    if isinstance(train, stream.Stream):
        return tagged.fit(train, config.vocab_size, config.min_count, config.lowercase)
    words = collections.Counter(
        (t.lower() if config.lowercase else t) for tokens, _, _ in train for t in tokens
    )
    kept = [w for w, n in words.most_common(config.vocab_size - 2) if n >= config.min_count]
    chars = collections.Counter(c for tokens, _, _ in train for t in tokens for c in t)
    features = [
        sorted({v for _, _, feats in train for v in feats[i]}) for i in range(len(train[0][2]))
    ]
    labels = sorted({t for _, tags, _ in train for t in tags})
    return {
        "constrained": config.constrained
        and follows_constraints(labels, [tags for _, tags, _ in train]),
        "words": kept,
        "chars": [c for c, _ in chars.most_common(500)],
        "features": features,
        "labels": labels,
    }


def batches(config: Config, prep: dict, sentences: list, training: bool) -> tf.data.Dataset:
    """Sentences bucketed by length: word, character and column ids; tag ids (0 pads)."""
    settings = dict(
        max_length=config.max_length,
        max_word_chars=config.max_word_chars,
        lowercase=config.lowercase,
        batch_size=config.batch_size,
        edges=[8, 12, 16, 20, 25, 30, 40, 50, 70, 100],
        training=training,
        seed=config.seed,
    )
    if isinstance(sentences, stream.Stream):
        worker, workers = distribute.worker_of(config.strategy)
        return tagged.streamed_batches(sentences, prep, worker=worker, workers=workers, **settings)
    return tagged.sentence_batches(sentences, prep, **settings)


# ----------------------------------------------------------------------------- model


def build_model(config: Config, prep: dict) -> keras.Model:
    words = keras.Input((None,), dtype="int32", name="words")
    chars = keras.Input((None, config.max_word_chars), dtype="int32", name="chars")
    features = keras.Input((None, len(prep["features"])), dtype="int32", name="features")
    mask = ops.not_equal(words, 0)
    dropped = blocks.TokenDropout(config.word_dropout, seed=config.seed)(words)
    words_embedding = vectors.embedding(
        len(prep["words"]) + 2, config, prep.get("embeddings"), False
    )
    parts = [words_embedding(dropped)]
    if config.char_encoder != "none":
        encoder = blocks.CharEncoder(
            len(prep["chars"]) + 2,
            config.char_dim,
            config.char_units,
            config.char_encoder,
            name="char_encoder",
        )
        parts.append(encoder(chars))
    for i, values in enumerate(prep["features"]):
        column = ops.take(features, i, axis=-1)
        parts.append(keras.layers.Embedding(len(values) + 2, config.feature_dim)(column))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate()(parts)
    x = keras.layers.Dropout(config.dropout)(x)
    logits = aligned.label_steps(x, mask, len(prep["labels"]), config)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    if config.crf:
        crf = CRF(len(prep["labels"]), name="crf")
        logits, loss = crf(logits), crf.loss
    inputs = {"words": words, "chars": chars, "features": features}
    model = keras.Model(inputs, logits, name="tagging")
    model.compile(
        optimizer=training.optimizer(config), loss=loss, metrics=[metrics.masked_accuracy]
    )
    return model


# ----------------------------------------------------------------------------- evaluation


def evaluate(config: Config, model: keras.Model, prep: dict, sentences: list, run_dir: Path):
    """Per-token accuracy and P/R/F1, chunk P/R/F1 (conlleval) for chunk tags, a confusion
    matrix PNG and ``predictions.conll`` (``token gold predicted``, the first max_length)."""
    fn = tf.function(Tagger(config, model, prep), autograph=False, reduce_retracing=True)
    gold = [tags[: config.max_length] for _, tags, _ in sentences]
    predicted = []
    for start in range(0, len(sentences), 256):
        chunk = sentences[start : start + 256]
        width = max(len(tokens) for tokens, _, _ in chunk)
        args = [tf.constant([list(t) + [""] * (width - len(t)) for t, _, _ in chunk])]
        if prep["features"]:
            feats = [[list(col) + [""] * (width - len(col)) for col in f] for _, _, f in chunk]
            args.append(tf.constant(np.array(feats, dtype=object).transpose(0, 2, 1)))
        tags, _ = fn(*args)
        for (t, _, _), row in zip(chunk, tags.numpy()):
            predicted.append([x.decode() for x in row[: min(len(t), config.max_length)]])
    result = aligned.step_scores(gold, predicted, prep["labels"], run_dir)
    if any(t[:2] in ("B-", "I-", "E-", "S-") for t in prep["labels"]):
        scores = metrics.chunk_scores(gold, predicted)
        result.update(chunk_f1=scores["f1"], chunk_precision=scores["precision"])
        result.update(chunk_recall=scores["recall"], chunk_per_type=scores["per_type"])
    conll.write_predictions(
        run_dir / "predictions.conll", [s[0] for s in sentences], gold, predicted
    )
    return result


# ----------------------------------------------------------------------------- export


def serving(config: Config, model: keras.Model, prep: dict) -> Serving:
    """Raw tokens (and extra columns) in; tags and probabilities out (``lstm_recipes.tagger``)."""
    return tagger.serving(config, model, prep)


def portable(config: Config, model: keras.Model, prep: dict) -> litert.Portable:
    """LiteRT: token ids in, ``vocabulary.json`` beside (``lstm_recipes.tagger.portable``)."""
    return tagger.portable(config, model, prep)


def inspect_sequences(config: Config, prep: dict, texts, test, steps: int) -> list:
    """Tokens for ``lstm-recipes inspect``: lines of text, or test sentences with their tags."""
    return tagged.inspect_sequences(prep, config, texts, test, steps)
