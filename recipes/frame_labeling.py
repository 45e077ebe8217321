"""Frame labeling: aligned many-to-many. Every input step gets a label.

Two input kinds, one encoder (``blocks.StackedLSTM``, bidirectional, the fast kernel) and a
softmax at every step; padding never counts in the loss or the metrics:

- tokens (tagging words): lowercased word embedding + a character CNN or BiLSTM over each
  word (case, prefixes, suffixes; unknown words) + optional extra input columns (e.g. the POS
  column of CoNLL-2000) -> BiLSTM -> tag per token.
- frames (sensor or video features): float vectors, normalized with statistics fitted on the
  train split and kept inside the model -> BiLSTM -> label per frame. Long sequences are cut
  into overlapping windows for training; evaluation and the exported model run the same
  windows and average their overlapping predictions.

Run it on the built-in sample (real smartwatch recordings of 10 subjects doing 7 shoulder
exercises, joined into one sequence per subject; test subjects never seen in training):

    lstm-recipes run frame_labeling

Expect per-frame accuracy about 0.64 on the two held-out subjects (measured 0.645 in 1.5
minutes; benchmarks/RESULTS.md). Tagging (chunking: measured chunk F1 93.16 in 15 minutes; UPOS:
measured 0.9507 test accuracy in 17 minutes):

    lstm-recipes run frame_labeling --preset conll2000 \\
        --data ../shared/data/labeling/conll2000/train.txt \\
        --test-data ../shared/data/labeling/conll2000/test.txt
    lstm-recipes run frame_labeling --preset ud-upos \\
        --data ../shared/data/labeling/ud-english-ewt/en_ewt-ud-train.conllu.gz \\
        --test-data ../shared/data/labeling/ud-english-ewt/en_ewt-ud-test.conllu.gz

Export, tokens: ``serving_default(tokens: string[None, None]) -> {tags: string[None, None]}``
("" pads and gets the tag "") and ``tag_text(text: string[None]) -> {tokens, tags}``
(whitespace split in the graph); with extra input columns, ``serving_default`` also takes
``features: string[None, None, K]``. Frames: ``serving_default(frames: float32[None, None, F])
-> {labels: string[None, None], probabilities: float32[None, None, C]}``; rows of NaN pad.
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

from lstm_recipes import blocks, cells, decoding, distribute, metrics, plots, training
from lstm_recipes.data import Splits, check_labels_seen, conll, limit, make_splits, share
from lstm_recipes.data import frames as frames_lib
from lstm_recipes.data.tfds import is_tfds_spec, load_tfds
from lstm_recipes.errors import UserError
from lstm_recipes.export import Serving

TOPOLOGY = "many-to-many (aligned)"
DATA_FORMS = {
    "builtin": "real smartwatch recordings (seglearn==1.2.5, BSD-3): 10 subjects x 14 "
    "exercise sets, 6 channels at 25 Hz, one sequence per subject (frames)",
    "FILE.txt|.conll[.gz]": "CoNLL columns, one token per line, blank line between sentences; "
    "token_column, tag_column, feature_columns pick columns (tokens)",
    "FILE.conllu[.gz]": "CoNLL-U; columns by name, e.g. tag_column=upos or xpos (tokens)",
    "FILE.jsonl[.gz]": '{"tokens": [...], "tags": [...]} per line (tokens)',
    "tfds:NAME": "a TFDS tagging dataset, e.g. tfds:conll2003 (tag_column=ner, pos or chunks)",
    "FILE.csv[.gz]": "frames as one long CSV: sequence_id, step, feature..., label (frames)",
    "FOLDER/": "one sequence per .csv (feature..., label) or .npz (frames, labels) file (frames)",
}
SIGNATURES = {
    "serving_default": "tokens: string[None, None] -> {tags: string[None, None]}; frames: "
    "frames: float32[None, None, F] -> {labels: string[None, None], probabilities}",
    "tag_text": "text: string[None] -> {tokens: string[None, None], tags: string[None, None]} "
    "(tokens without extra input columns)",
}
# Tagging accuracy keeps improving for epochs after the validation loss turns up (the model
# grows over-confident on its errors): on CoNLL-2000 the loss was lowest at epoch 6 of 9 while
# the accuracy still rose at epoch 9, and stopping on the loss ended training there.
MONITOR = "val_masked_accuracy"
MAIN_METRIC = "accuracy"  # the test metric `ablate` compares
PREDICT_EXAMPLE = '"The cat sat on the mat ."'


@dataclasses.dataclass(frozen=True)
class Config:
    input: Literal["auto", "tokens", "frames"] = "auto"  # input kind (auto: from --data)
    token_column: str = "0"  # CoNLL column of the tokens: number (0 first) or CoNLL-U name (form)
    tag_column: str = "-1"  # CoNLL column of the tags: number (-1 last); CoNLL-U: upos or xpos
    feature_columns: str = ""  # extra CoNLL input columns, comma-separated (e.g. "1" for POS)
    label_column: str = "label"  # frames: CSV column of the labels
    sequence_column: str = "sequence_id"  # frames: long-CSV column naming the sequence
    step_column: str = "step"  # frames: long-CSV column ordering the frames
    group_column: str = ""  # frames: long-CSV column grouping sequences for splitting
    max_examples: int = 0  # use at most this many training sequences (0: all)
    max_length: int = 150  # tokens: longest sentence kept whole (longer ones are cut)
    vocab_size: int = 30000  # tokens: words kept (most frequent in training)
    min_count: int = 1  # tokens: words seen fewer times are unknown
    lowercase: bool = True  # tokens: the word embedding sees lowercased words (chars see case)
    char_encoder: Literal["cnn", "lstm", "none"] = "cnn"  # tokens: per-word character features
    char_dim: int = 32  # tokens: character embedding width
    char_units: int = 64  # tokens: CNN filters or LSTM units per direction
    max_word_chars: int = 20  # tokens: characters kept per word
    feature_dim: int = 16  # tokens: embedding width of each extra input column
    embedding_dim: int = 100  # tokens: word embedding width
    word_dropout: float = 0.05  # tokens: share of words replaced by the unknown word in training
    constrained: bool = True  # tokens: Viterbi over legal IOB2/BIOES transitions for chunk tags
    crf: bool = False  # tokens: a linear-chain CRF output layer (learned transitions)
    window: int = 256  # frames: training window length (steps)
    stride: int = 128  # frames: step between evaluation windows (overlaps are averaged)
    units: int = 128  # LSTM units per direction
    layers: int = 2  # stacked BiLSTM layers
    cell: cells.Cell = "lstm"  # lstm (fast kernel), a Greff et al. variant, gru, simple_rnn
    dropout: float = 0.3  # dropout on inputs, between layers and before the softmax
    batch_size: int = 32  # sequences (or windows) per batch
    epochs: int = 20  # most epochs; early stopping may end sooner
    patience: int = 3  # epochs without validation-loss improvement before stopping
    learning_rate: float = 2e-3  # Adam learning rate
    lr_decay: float = 1.0  # learning rate multiplied by this after every epoch
    clipnorm: float = 5.0  # gradient-norm clipping (0: off)
    max_minutes: float = 0.0  # stop training after this many minutes (0: no limit)
    validation_size: float = (
        0.1  # held out for validation: a share (< 1) or a count (of groups, for frames)
    )
    test_size: float = 0.2  # held out for test when no --test-data: a share or a count
    seed: int = 42  # seeds the split, shuffling and initial weights
    strategy: distribute.Strategy = "default"  # tf.distribute: default, mirrored, multi-worker, tpu


PRESETS = {
    "tiny": Config(
        max_examples=200,
        vocab_size=500,
        char_dim=8,
        char_units=8,
        embedding_dim=16,
        window=64,
        stride=32,
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
        tag_column="upos", dropout=0.5, word_dropout=0.1, lr_decay=0.9, epochs=30, max_minutes=27.0
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

PAD_TOKEN = ""


# ----------------------------------------------------------------------------- data


def _kind(config: Config, spec: str) -> str:
    if config.input != "auto":
        return config.input
    if spec == "builtin":
        return "frames"
    path = Path(spec)
    if is_tfds_spec(spec):
        return "tokens"
    if path.is_dir():
        return "frames"
    name = path.name.lower().removesuffix(".gz")
    return "frames" if name.endswith((".csv", ".npz")) else "tokens"


def _feature_columns(config: Config) -> tuple:
    return tuple(c.strip() for c in config.feature_columns.split(",") if c.strip())


def _read(config: Config, spec: str, kind: str):
    """(sequences, description, feature names for frames)."""
    if kind == "frames":
        if spec == "builtin":
            recordings, names = frames_lib.builtin_watch(config.seed)
            return recordings, "builtin smartwatch recordings (10 subjects)", names
        path = Path(spec)
        if path.is_dir():
            recordings, names = frames_lib.read_sequence_folder(path, config.label_column)
        elif path.exists():
            recordings, names = frames_lib.read_long_csv(
                path,
                config.sequence_column,
                config.step_column,
                config.label_column,
                config.group_column,
            )
        else:
            raise UserError(f"expected a frames CSV file or a folder, found nothing at {spec}")
        return recordings, str(path), names
    if spec == "builtin":
        raise UserError("the builtin sample is frames; for tokens give --data FILE or tfds:NAME")
    path = Path(spec)
    if not path.exists():
        raise UserError(
            "expected --data to be builtin, tfds:NAME, a CoNLL/CoNLL-U/JSONL file, a frames "
            f"CSV or a folder; found nothing at {spec}"
        )
    if path.is_dir():
        raise UserError(f"expected a tagged-token file, found a folder at {path}")
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json")):
        sentences = conll.read_jsonl(path)
    else:
        token_column, tag_column = config.token_column, config.tag_column
        if name.endswith(".conllu"):
            # CoNLL-U's first column is an id and its last is MISC: the defaults mean FORM, UPOS.
            token_column = "form" if token_column == "0" else token_column
            tag_column = "upos" if tag_column == "-1" else tag_column
        sentences = conll.read_conll(path, token_column, tag_column, _feature_columns(config))
    return conll.drop_empty(sentences), str(path), []


def _tfds_splits(config: Config, spec: str) -> Splits:
    tag_key = config.tag_column if not config.tag_column.lstrip("-").isdigit() else "ner"
    hint = "--data train.txt --test-data test.txt (CoNLL columns) or a .conllu file"
    splits, info = load_tfds(spec, ["tokens", tag_key], hint)
    names = list(getattr(info.features[tag_key].feature, "names", []) or [])

    def text(value) -> str:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    def sentences(rows):
        out = []
        for n, (tokens, tags) in enumerate(rows, 1):
            if len(tokens) != len(tags):
                raise UserError(
                    f"{spec}: example {n}: expected as many {tag_key!r} tags as tokens, found "
                    f"{len(tags)} tags for {len(tokens)} tokens"
                )
            tags = [names[int(t)] if names else text(t) for t in tags]
            if len(tokens):
                out.append(([text(t) for t in tokens], tags, []))
        return out

    return make_splits(
        sentences(splits["train"]),
        sentences(splits["test"]) if "test" in splits else None,
        validation=sentences(splits["validation"]) if "validation" in splits else None,
        seed=config.seed,
        validation_size=config.validation_size,
        test_size=config.test_size,
        source=f"{spec} (tags: {tag_key})",
        info={"kind": "tokens"},
    )


def load_data(config: Config, data: str = "builtin", test_data: str | None = None) -> Splits:
    """Train/validation/test sequences: token sentences, or frame recordings split by group."""
    if is_tfds_spec(data):
        result = _tfds_splits(config, data)
    else:
        kind = _kind(config, data)
        items, source, names = _read(config, data, kind)
        test = _read(config, test_data, kind)[0] if test_data else None
        if kind == "frames":
            fractions = (
                0.0 if test else share(config.test_size, len(items)),
                share(config.validation_size, len(items)),
            )
            carved_test, validation, train = frames_lib.split_groups(items, fractions, config.seed)
            if len({r.frames.shape[1] for r in items + (test or [])}) != 1:
                raise UserError(f"expected the same number of features in every sequence of {data}")
            result = Splits(train, validation, test or carved_test, source, {"kind": kind})
        else:
            result = make_splits(
                items,
                test,
                seed=config.seed,
                validation_size=config.validation_size,
                test_size=config.test_size,
                source=source,
                info={"kind": kind},
            )
        result.info["feature_names"] = names
    result.train = limit(result.train, config.max_examples, config.seed)
    if not result.train or not result.validation or not result.test:
        raise UserError(
            f"expected sequences in train, validation and test, found {result.sizes()} in "
            f"{data} (frames are split by group: give more sequences or --test-data)"
        )
    frames = isinstance(result.train[0], frames_lib.Recording)
    # Test tags unseen in training (CoNLL-2000's test set has I-LST, its training set not) are
    # scored as errors by evaluate; validation tags are trained against, so they must be known.
    check_labels_seen(
        result,
        (lambda r: set(r.labels.tolist())) if frames else (lambda sentence: sentence[1]),
        f"{data} and {test_data}" if test_data else data,
        names=("validation",),
    )
    return result


# ----------------------------------------------------------------------------- preprocessing


def _is_frames(train: list) -> bool:
    return isinstance(train[0], frames_lib.Recording)


def fit_preprocessing(config: Config, train: list) -> dict:
    """Vocabularies (tokens) or feature statistics (frames) and the label set, from train only."""
    if _is_frames(train):
        x = np.concatenate([r.frames for r in train])
        finite = np.where(np.isfinite(x), x, np.nan)
        mean = np.nanmean(finite, 0)
        std = np.nanstd(finite, 0)
        labels = sorted({str(y) for r in train for y in r.labels})
        return {
            "kind": "frames",
            "features": int(x.shape[1]),
            "mean": np.nan_to_num(mean).tolist(),
            "std": np.where(np.nan_to_num(std) > 1e-6, np.nan_to_num(std), 1.0).tolist(),
            "labels": labels,
        }
    words = collections.Counter(_norm(config, t) for tokens, _, _ in train for t in tokens)
    kept = [w for w, n in words.most_common(config.vocab_size - 2) if n >= config.min_count]
    chars = collections.Counter(c for tokens, _, _ in train for t in tokens for c in t)
    features = []
    for i in range(len(train[0][2])):
        values = collections.Counter(v for _, _, feats in train for v in feats[i])
        features.append(sorted(values))
    labels = sorted({t for _, tags, _ in train for t in tags})
    return {
        "kind": "tokens",
        "constrained": config.constrained and _follows_constraints(labels, train),
        "words": kept,
        "chars": [c for c, _ in chars.most_common(500)],
        "features": features,
        "labels": labels,
    }


def _follows_constraints(labels: list[str], train: list) -> bool:
    # IOB1 data (I-X after O is legal there) breaks IOB2's rules: decode it unconstrained.
    constraints = decoding.chunk_constraints(labels)
    if constraints is None:
        return False
    allowed, start = constraints
    index = {name: i for i, name in enumerate(labels)}
    for _, tags, _ in train:
        ids = [index[t] for t in tags]
        if ids and not start[ids[0]]:
            return False
        if not all(allowed[a][b] for a, b in zip(ids, ids[1:])):
            return False
    return True


def _norm(config: Config, token: str) -> str:
    return token.lower() if config.lowercase else token


def _index(values: list[str]) -> dict[str, int]:
    # 0 pads, 1 is unknown: the same ids as keras.layers.StringLookup(mask_token="").
    return {v: i for i, v in enumerate(values, 2)}


def _label_ids(prep: dict, labels, where: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(prep["labels"], 1)}
    try:
        return np.array([index[str(y)] for y in labels], np.int32)
    except KeyError as e:
        raise UserError(
            f"expected labels seen in training ({', '.join(prep['labels'][:20])}), found "
            f"{e.args[0]!r} in {where}"
        ) from None


def _encode_sentence(config: Config, word_ix, char_ix, feat_ix, sentence):
    tokens, tags, feats = sentence
    tokens, tags = tokens[: config.max_length], tags[: config.max_length]
    words = np.array([word_ix.get(_norm(config, t), 1) for t in tokens], np.int32)
    chars = np.zeros((len(tokens), config.max_word_chars), np.int32)
    for i, token in enumerate(tokens):
        ids = [char_ix.get(c, 1) for c in token[: config.max_word_chars]]
        chars[i, : len(ids)] = ids
    features = np.array(
        [[ix.get(v, 1) for v in column[: config.max_length]] for ix, column in zip(feat_ix, feats)],
        np.int32,
    ).T.reshape(len(tokens), len(feat_ix))
    return words, chars, features, tags


def batches(config: Config, prep: dict, sequences: list, training: bool) -> tf.data.Dataset:
    """Token sentences bucketed by length, or frame windows; targets are label ids (0 pads)."""
    if prep["kind"] == "frames":
        return _frame_batches(config, prep, sequences, training)
    word_ix, char_ix = _index(prep["words"]), _index(prep["chars"])
    feat_ix = [_index(values) for values in prep["features"]]
    encoded = []
    for n, sentence in enumerate(sequences):
        if len(sentence[2]) != len(feat_ix):
            raise UserError(
                f"expected {len(feat_ix)} extra input columns, found {len(sentence[2])}"
            )
        words, chars, features, tags = _encode_sentence(config, word_ix, char_ix, feat_ix, sentence)
        encoded.append((words, chars, features, _label_ids(prep, tags, f"sentence {n + 1}")))
    k = len(feat_ix)

    def generate():
        yield from encoded

    ds = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None, config.max_word_chars], tf.int32),
            tf.TensorSpec([None, k], tf.int32),
            tf.TensorSpec([None], tf.int32),
        ),
    ).cache()
    if training:
        ds = ds.shuffle(len(encoded), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda w, c, f, y: ({"words": w, "chars": c, "features": f}, y))
    edges = [8, 12, 16, 20, 25, 30, 40, 50, 70, 100]
    return ds.bucket_by_sequence_length(
        element_length_func=lambda x, y: tf.shape(y)[0],
        bucket_boundaries=edges,
        bucket_batch_sizes=[config.batch_size] * (len(edges) + 1),
    ).prefetch(tf.data.AUTOTUNE)


def _frame_batches(config, prep, recordings, training: bool) -> tf.data.Dataset:
    xs, ys = [], []
    stride = config.window // 2 if training else config.stride
    for r in recordings:
        labels = _label_ids(prep, r.labels, r.name)
        if r.frames.shape[1] != prep["features"]:
            raise UserError(
                f"{r.name}: expected {prep['features']} features per frame, found "
                f"{r.frames.shape[1]}"
            )
        for start, end in frames_lib.windows(r.frames, config.window, stride):
            x = np.full((config.window, prep["features"]), np.nan, np.float32)
            y = np.zeros(config.window, np.int32)
            x[: end - start], y[: end - start] = r.frames[start:end], labels[start:end]
            xs.append(x)
            ys.append(y)
    ds = tf.data.Dataset.from_tensor_slices((np.stack(xs), np.stack(ys)))
    if training:
        ds = ds.shuffle(len(xs), seed=config.seed, reshuffle_each_iteration=True)
    return ds.batch(config.batch_size).map(lambda x, y: ({"frames": x}, y)).prefetch(2)


# ----------------------------------------------------------------------------- model


class FrameInput(keras.layers.Layer):
    """Frames -> normalized frames with NaN/inf replaced, and the mask of non-padding steps.

    A step whose features are all NaN is padding; other non-finite values become the mean.

    Args:
        mean: per-feature training mean.
        std: per-feature training standard deviation.
    """

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = list(mean), list(std)

    def call(self, frames):
        real = ops.logical_not(ops.all(ops.isnan(frames), axis=-1))
        x = (frames - ops.array(self.mean, frames.dtype)) / ops.array(self.std, frames.dtype)
        x = ops.where(ops.isfinite(x), x, ops.zeros_like(x))
        return x, real

    def compute_output_spec(self, frames):
        return (
            keras.KerasTensor(frames.shape, dtype=frames.dtype),
            keras.KerasTensor(frames.shape[:-1], dtype="bool"),
        )

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


def build_model(config: Config, prep: dict) -> keras.Model:
    if prep["kind"] == "frames":
        frames = keras.Input((None, prep["features"]), dtype="float32", name="frames")
        x, mask = FrameInput(prep["mean"], prep["std"], name="normalize")(frames)
        inputs = {"frames": frames}
    else:
        words = keras.Input((None,), dtype="int32", name="words")
        chars = keras.Input((None, config.max_word_chars), dtype="int32", name="chars")
        features = keras.Input((None, len(prep["features"])), dtype="int32", name="features")
        inputs = {"words": words, "chars": chars, "features": features}
        mask = ops.not_equal(words, 0)
        dropped = blocks.TokenDropout(config.word_dropout, seed=config.seed)(words)
        parts = [keras.layers.Embedding(len(prep["words"]) + 2, config.embedding_dim)(dropped)]
        if config.char_encoder != "none":
            parts.append(
                blocks.CharEncoder(
                    len(prep["chars"]) + 2,
                    config.char_dim,
                    config.char_units,
                    config.char_encoder,
                    name="char_encoder",
                )(chars)
            )
        for i, values in enumerate(prep["features"]):
            column = ops.take(features, i, axis=-1)
            parts.append(keras.layers.Embedding(len(values) + 2, config.feature_dim)(column))
        x = parts[0] if len(parts) == 1 else keras.layers.Concatenate()(parts)
    x = keras.layers.Dropout(config.dropout)(x)
    x = blocks.StackedLSTM(
        config.units,
        config.layers,
        bidirectional=True,
        dropout=config.dropout,
        cell=config.cell,
        name="encoder",
    )(x, mask=mask)
    x = blocks.DropMask()(x)
    logits = keras.layers.Dense(len(prep["labels"]) + 1, name="logits")(x)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    if config.crf:
        if prep["kind"] != "tokens":
            raise UserError("crf=true is for tokens; frames are labeled per window without it")
        crf = blocks.CRF(len(prep["labels"]), name="crf")
        logits, loss = crf(logits), crf.loss
    model = keras.Model(inputs, logits, name="frame_labeling")
    model.compile(
        optimizer=training.optimizer(config), loss=loss, metrics=[metrics.masked_accuracy]
    )
    return model


# ----------------------------------------------------------------------------- graph functions


class Tagger(tf.Module):
    """Raw tokens (strings) or raw frames in; labels out; all in the graph."""

    def __init__(self, config: Config, model: keras.Model, prep: dict):
        super().__init__()
        self.config, self.model, self.kind = config, model, prep["kind"]
        self.labels = tf.constant(["", *prep["labels"]])
        self.label_names = prep["labels"]
        self.crf = model.get_layer("crf") if config.crf else None
        self.constraints = (
            decoding.chunk_constraints(prep["labels"]) if prep.get("constrained") else None
        )
        if self.kind == "tokens":
            self.words = keras.layers.StringLookup(vocabulary=prep["words"], mask_token="")
            self.chars = keras.layers.StringLookup(vocabulary=prep["chars"], mask_token="")
            self.features = [
                keras.layers.StringLookup(vocabulary=v, mask_token="") for v in prep["features"]
            ]

    def token_inputs(self, tokens, features=None):
        tokens = tokens[:, : self.config.max_length]
        real = tf.not_equal(tokens, PAD_TOKEN)
        words = tf.strings.lower(tokens, "utf-8") if self.config.lowercase else tokens
        word_ids = tf.where(real, tf.cast(self.words(words), tf.int32), 0)
        pieces = tf.strings.unicode_split(tokens, "UTF-8", errors="replace")
        pieces = pieces[:, :, : self.config.max_word_chars]
        shape = [tf.shape(tokens)[0], tf.shape(tokens)[1], self.config.max_word_chars]
        char_ids = tf.cast(self.chars(pieces).to_tensor(0, shape=shape), tf.int32)
        columns = [
            tf.where(real, tf.cast(lookup(features[:, : tf.shape(tokens)[1], i]), tf.int32), 0)
            for i, lookup in enumerate(self.features)
        ]
        feats = (
            tf.stack(columns, -1)
            if columns
            else tf.zeros([tf.shape(tokens)[0], tf.shape(tokens)[1], 0], tf.int32)
        )
        return {"words": word_ids, "chars": char_ids, "features": feats}, real

    def tag_tokens(self, tokens, features=None):
        """(tags string[B, T], probabilities) for ("" padded) tokens."""
        # An LSTM cannot run zero steps: give an empty batch one padding step, then drop it.
        steps = tf.shape(tokens)[1]
        padded = tf.pad(tokens, [[0, 0], [0, tf.maximum(0, 1 - steps)]])
        if features is not None:
            features = tf.pad(features, [[0, 0], [0, tf.maximum(0, 1 - steps)], [0, 0]])
        inputs, real = self.token_inputs(padded, features)
        emissions = self.model(inputs, training=False)[..., 1:]
        probabilities = tf.nn.softmax(emissions)
        if self.crf is not None:
            n = len(self.label_names)
            allowed, start = self.constraints or ([[True] * n] * n, [True] * n)
            crf = self.crf
            ids = decoding.viterbi(
                emissions, real, allowed, start, crf.transitions, crf.start, crf.end
            )
            ids = ids + 1
        elif self.constraints is not None:
            log_probs = tf.math.log(probabilities + 1e-12)
            ids = decoding.viterbi(log_probs, real, *self.constraints) + 1
        else:
            ids = tf.argmax(probabilities, -1, output_type=tf.int32) + 1
        tags = tf.where(real, tf.gather(self.labels, ids), "")
        # Tokens past max_length get no tag: pad the output back to the input's width.
        width = tf.shape(tokens)[1]
        tags = tf.pad(tags, [[0, 0], [0, tf.maximum(0, width - tf.shape(tags)[1])]])
        return tags[:, :width], probabilities

    def tag_frames(self, frames):
        """(labels string[B, T], probabilities [B, T, C]) by overlapping windows, averaged."""
        window, stride = self.config.window, self.config.stride
        steps = tf.shape(frames)[1]
        batch = tf.shape(frames)[0]
        features = frames.shape[-1]
        # At least one whole window, and a whole number of strides past it.
        total = tf.maximum(window, steps)
        total = window + (total - window + stride - 1) // stride * stride
        x = tf.pad(frames, [[0, 0], [0, total - steps], [0, 0]], constant_values=np.nan)
        pieces = tf.signal.frame(x, window, stride, axis=1)  # [B, n, window, F]
        n = tf.shape(pieces)[1]
        probs = tf.nn.softmax(
            self.model({"frames": tf.reshape(pieces, [-1, window, features])}, training=False)[
                ..., 1:
            ]
        )
        classes = tf.shape(probs)[-1]
        probs = tf.transpose(tf.reshape(probs, [batch, n, window, classes]), [0, 3, 1, 2])
        summed = tf.signal.overlap_and_add(probs, stride)  # [B, C, total]
        counts = tf.signal.overlap_and_add(tf.ones([1, 1, n, window]), stride)
        probs = tf.transpose(summed / counts, [0, 2, 1])[:, :steps]
        real = tf.logical_not(tf.reduce_all(tf.math.is_nan(frames), -1))
        ids = tf.argmax(probs, -1, output_type=tf.int32) + 1
        return tf.where(real, tf.gather(self.labels, ids), ""), probs


# ----------------------------------------------------------------------------- evaluation


def evaluate(config: Config, model: keras.Model, prep: dict, sequences: list, run_dir: Path):
    """Accuracy per token or frame; chunk P/R/F1 (conlleval) for chunk tags; segment F1@50 for
    frames; a confusion matrix PNG."""
    tagger = Tagger(config, model, prep)
    if prep["kind"] == "frames":
        fn = tf.function(tagger.tag_frames, autograph=False, reduce_retracing=True)
        gold = [list(map(str, r.labels)) for r in sequences]
        predicted = []
        for r in sequences:
            tags, _ = fn(tf.constant(r.frames[None]))
            predicted.append([t.decode() for t in tags.numpy()[0]])
    else:
        fn = tf.function(tagger.tag_tokens, autograph=False, reduce_retracing=True)
        gold = [tags[: config.max_length] for _, tags, _ in sequences]
        predicted = []
        for start in range(0, len(sequences), 256):
            chunk = sequences[start : start + 256]
            width = max(len(tokens) for tokens, _, _ in chunk)
            tokens = [list(t) + [""] * (width - len(t)) for t, _, _ in chunk]
            args = [tf.constant(tokens)]
            if prep["features"]:
                feats = [[list(col) + [""] * (width - len(col)) for col in f] for _, _, f in chunk]
                args.append(tf.constant(np.array(feats, dtype=object).transpose(0, 2, 1)))
            tags, _ = fn(*args)
            for (t, _, _), row in zip(chunk, tags.numpy()):
                predicted.append([x.decode() for x in row[: min(len(t), config.max_length)]])
    flat_gold = [t for row in gold for t in row]
    flat_pred = [t for row in predicted for t in row]
    names = prep["labels"]
    index = {name: i for i, name in enumerate(names)}
    known = [(index[g], index[p]) for g, p in zip(flat_gold, flat_pred) if g in index]
    result = metrics.classification_metrics([g for g, _ in known], [p for _, p in known], names)
    result["accuracy"] = float(np.mean([g == p for g, p in zip(flat_gold, flat_pred)]))
    result["steps"] = len(flat_gold)
    result["sequences"] = len(gold)
    if prep["kind"] == "frames":
        result["segment_f1_50"] = metrics.segment_f1(gold, predicted, 0.5)
    elif any(t[:2] in ("B-", "I-", "E-", "S-") for t in names):
        scores = metrics.chunk_scores(gold, predicted)
        result.update(chunk_f1=scores["f1"], chunk_precision=scores["precision"])
        result.update(chunk_recall=scores["recall"], chunk_per_type=scores["per_type"])
    plots.confusion_matrix(
        result["confusion_matrix"],
        names,
        run_dir / "plots" / "confusion_matrix.png",
        title=f"test accuracy {result['accuracy']:.4f}",
    )
    return result


# ----------------------------------------------------------------------------- export


def serving(config: Config, model: keras.Model, prep: dict) -> Serving:
    """Raw tokens or frames in; labels (and probabilities) out."""
    tagger = Tagger(config, model, prep)
    if prep["kind"] == "frames":
        spec = [tf.TensorSpec([None, None, prep["features"]], tf.float32, name="frames")]

        @tf.function(input_signature=spec, autograph=False)
        def serve_frames(frames):
            labels, probabilities = tagger.tag_frames(frames)
            return {"labels": labels, "probabilities": probabilities}

        rng = np.random.default_rng(0)
        sample = rng.normal(size=(2, config.window + 7, prep["features"])).astype("float32")
        sample[1, -5:] = np.nan
        return Serving(
            {"serving_default": serve_frames},
            [model],
            {"serving_default": {"frames": sample.tolist()}},
        )
    tokens_spec = tf.TensorSpec([None, None], tf.string, name="tokens")
    endpoints, samples = {}, {}
    words = [w for w in prep["words"][:5]] or ["word"]
    sample_tokens = [words + [""], ["ÜNÏCÖDÉ", "🎉", "", "", "", ""]]
    if prep["features"]:
        k = len(prep["features"])
        feature_spec = tf.TensorSpec([None, None, k], tf.string, name="features")

        @tf.function(input_signature=[tokens_spec, feature_spec], autograph=False)
        def serve_with_features(tokens, features):
            tags, probabilities = tagger.tag_tokens(tokens, features)
            return {"tags": tags, "probabilities": probabilities}

        endpoints["serving_default"] = serve_with_features
        first = [v[0] for v in prep["features"]]
        samples["serving_default"] = {
            "tokens": sample_tokens,
            "features": [[first] * len(row) for row in sample_tokens],
        }
    else:

        @tf.function(input_signature=[tokens_spec], autograph=False)
        def serve_tokens(tokens):
            tags, probabilities = tagger.tag_tokens(tokens)
            return {"tags": tags, "probabilities": probabilities}

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.string, name="text")], autograph=False
        )
        def tag_text(text):
            # Bytes that are not UTF-8 become U+FFFD: the tokens returned are always text.
            text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
            tokens = tf.strings.split(tf.strings.strip(text)).to_tensor(PAD_TOKEN)
            tags, _ = tagger.tag_tokens(tokens)
            return {"tokens": tokens, "tags": tags}

        endpoints = {"serving_default": serve_tokens, "tag_text": tag_text}
        samples = {
            "serving_default": {"tokens": sample_tokens},
            "tag_text": {"text": [" ".join(words), "", "ÜNÏCÖDÉ 🎉 " * 500]},
        }
    track = [model, tagger.words, tagger.chars, *tagger.features]
    return Serving(endpoints, track, samples)
