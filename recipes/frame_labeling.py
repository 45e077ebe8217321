"""Frame labeling: float frames (sensors, video features) -> one label per frame.

Aligned many-to-many: float vectors, normalized with statistics fitted on the train split and
kept inside the model -> bidirectional ``blocks.StackedLSTM`` (the fast kernel) -> a softmax at
every frame. Long sequences are cut into overlapping windows for training; evaluation and the
exported model run the same windows and average their overlapping predictions. Padding never
counts in the loss or the metrics. (Words -> tags is the ``tagging`` recipe.)

Run it on the built-in sample (real smartwatch recordings of 10 subjects doing 7 shoulder
exercises, joined into one sequence per subject; test subjects never seen in training):

    lstm-recipes run frame_labeling

Expect per-frame accuracy about 0.87 on the two held-out subjects (measured 0.868, segment
F1@50 34.8 by MS-TCN's definition, in 6-7 minutes on a busy 2-core machine; RESULTS.md). Your
own frames: ``--data frames.csv`` (one long CSV: sequence_id, step, feature..., label) or
``--data folder/`` (one .csv or .npz per sequence), read into memory; or a quoted glob,
streamed in memory that does not grow with the corpus: ``--data 'frames/*.npz'`` (one sequence
per .npz or .csv[.gz] file) or ``--data 'frames/part-*.csv.gz'`` (long-CSV shards, each
sequence inside one shard). A glob's sequences go to train, validation or test by a hash of
their group (``group_column``, else the sequence id or file name).

Export: ``serving_default(frames: float32[None, None, F]) -> {labels: string[None, None],
probabilities: float32[None, None, C]}``; rows of NaN pad. From the command line, each INPUT is
one sequence as a JSON list of frames (see ``predict_example``). On a phone or a watch:
``lstm-recipes export RUN_DIR --format litert`` (one window per call; see ``portable``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from lstm_recipes import aligned, cells, distribute, inspection, litert, metrics, stepping, training
from lstm_recipes.data import Splits, check_labels_seen, frame_stream, limit, reading, share
from lstm_recipes.data import frames as frames_lib
from lstm_recipes.data.stream import Stream
from lstm_recipes.data.tfds import is_tfds_spec
from lstm_recipes.errors import UserError
from lstm_recipes.export import Serving
from lstm_recipes.precision import Precision

TOPOLOGY = "many-to-many (aligned)"
DATA_FORMS = {
    "builtin": "real smartwatch recordings (seglearn==1.2.5, BSD-3): 10 subjects x 14 "
    "exercise sets, 6 channels at 25 Hz, one sequence per subject",
    "FILE.csv[.gz]": "one long CSV: sequence_id, step, feature..., label (column names are "
    "config fields)",
    "FOLDER/": "one sequence per .csv (feature..., label) or .npz (frames, labels) file",
    "'FILES/*.npz'|'FILES/*.csv[.gz]'": "a glob of sequence files (one sequence per file, as in "
    "a folder), streamed",
    "'SHARDS/part-*.csv.gz'|'*.parquet'|'*.tfrecord'": "a glob of long-CSV, long-format Parquet "
    "or TFRecord shards (sequence_id, step, feature..., label; each sequence inside one shard; a "
    "tf.train.Example per frame), streamed",
}
SIGNATURES = {
    "serving_default": "frames: float32[None, None, F] -> {labels: string[None, None], "
    "probabilities: float32[None, None, C]} (rows of NaN pad)",
    "step": "frame: float32[B, F], states -> {labels, probabilities, states} (bidirectional=false)",
}
MONITOR = "val_masked_accuracy"  # what evaluation reports: the checkpoint best at it is kept
MAIN_METRIC = "accuracy"  # the test metric `ablate` compares
# `lstm-recipes tune --space default`.
TUNE_SPACE = ("learning_rate=5e-4..5e-3:log", "units=32,64,128,256", "layers=1,2,3", "dropout=0.1..0.5")  # fmt: skip
MOVED_PRESETS = {"conll2000": "tagging", "ud-upos": "tagging", "upos-small": "tagging"}
REMOVED_FIELDS = {
    "input": "this recipe labels frames; tokens are tagged by lstm-recipes run tagging"
}


@dataclasses.dataclass(frozen=True)
class Config:
    label_column: str = "label"  # CSV column of the labels
    sequence_column: str = "sequence_id"  # long-CSV column naming the sequence
    step_column: str = "step"  # long-CSV column ordering the frames
    group_column: str = ""  # long-CSV column grouping sequences for splitting (e.g. subject)
    max_examples: int = 0  # use at most (about, for a glob) this many training sequences (0: all)
    window: int = 256  # training window length (frames)
    stride: int = 128  # step between evaluation windows (overlaps are averaged)
    units: int = 128  # LSTM units per direction
    layers: int = 2  # stacked BiLSTM layers
    bidirectional: bool = True  # false: causal, so exports get a `step` signature (streaming)
    cell: cells.Cell = "lstm"  # lstm (fast kernel), a Greff et al. variant, gru, simple_rnn
    dropout: float = 0.3  # dropout on inputs, between layers and before the softmax
    batch_size: int = 32  # windows per batch
    epochs: int = 20  # most epochs; early stopping may end sooner
    patience: int = 3  # epochs without validation improvement before stopping
    learning_rate: float = 2e-3  # Adam learning rate
    lr_decay: float = 1.0  # learning rate multiplied by this after every epoch
    clipnorm: float = 5.0  # gradient-norm clipping (0: off)
    max_minutes: float = 0.0  # stop training after this many minutes (0: no limit)
    validation_size: float = 0.1  # groups held out for validation: a share (< 1) or a count
    test_size: float = 0.2  # groups held out for test when no --test-data: a share or a count
    seed: int = 42  # seeds the split, shuffling and initial weights
    strategy: distribute.Strategy = "default"  # tf.distribute: default, mirrored, multi-worker, tpu
    precision: Precision = "float32"  # mixed_bfloat16 (CPUs with bf16 instructions) or auto
    encoding: str = "utf-8"  # text files' codec (any Python codec: cp1252, latin-1, utf-16, ...)
    decode_errors: reading.DecodeErrors = "strict"  # replace: undecodable bytes -> U+FFFD, counted
    skip_bad_rows: int = 0  # broken rows (or missing images) skipped and reported before refusing


PRESETS = {
    "tiny": Config(
        max_examples=200, window=64, stride=32, units=8, layers=1, batch_size=16, epochs=2
    ),
    "default": Config(),
}

TOKEN_SUFFIXES = (".txt", ".conll", ".conllu", ".jsonl", ".json", ".tsv")


# ----------------------------------------------------------------------------- data


def _read(config: Config, spec: str) -> tuple[list[frames_lib.Recording], str, list[str]]:
    """(recordings, description, feature names)."""
    if spec == "builtin":
        recordings, names = frames_lib.builtin_watch(config.seed)
        return recordings, "builtin smartwatch recordings (10 subjects)", names
    path = Path(spec)
    if is_tfds_spec(spec) or path.name.lower().removesuffix(".gz").endswith(TOKEN_SUFFIXES):
        raise UserError(
            f"expected frames (builtin, a .csv file, a folder or a glob), found {spec}, which "
            "looks like tagged tokens; token tagging is now its own recipe: lstm-recipes run "
            f"tagging --data {spec}"
        )
    if frame_stream.is_stream_spec(spec):  # a held-out glob, or one beside in-memory data
        recordings, names = frame_stream.read_all(spec, config)
    elif path.is_dir():
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


def load_data(
    config: Config,
    data: str = "builtin",
    test_data: str | None = None,
    validation_data: str | None = None,
) -> Splits:
    """Train/validation/test recordings, split by group (a subject is in one split only); a
    glob's training split streams."""
    specs = ", ".join(s for s in (data, validation_data, test_data) if s)
    seen = None
    if frame_stream.is_stream_spec(data):
        result = frame_stream.splits(
            data, test_data, validation_data, config, lambda spec: _read(config, spec)[0]
        )
        seen = frame_stream.training_labels(result.train)
    else:
        items, source, names = _read(config, data)
        test = _read(config, test_data)[0] if test_data else None
        validation = _read(config, validation_data)[0] if validation_data else None
        # A split given by its own spec is not carved: those groups stay in training.
        fractions = (
            0.0 if test else share(config.test_size, len(items)),
            0.0 if validation else share(config.validation_size, len(items)),
        )
        carved_test, carved_validation, train = frames_lib.split_groups(
            items, fractions, config.seed
        )
        widths = {r.frames.shape[1] for r in items + (test or []) + (validation or [])}
        if len(widths) != 1:
            raise UserError(f"expected the same number of features in every sequence of {specs}")
        result = Splits(
            limit(train, config.max_examples, config.seed),
            validation or carved_validation,
            test or carved_test,
            source,
            {"feature_names": names},
        )
    if not result.train or not result.validation or not result.test:
        raise UserError(
            f"expected sequences in train, validation and test, found {result.sizes()} in "
            f"{specs} (frames are split by group: give more sequences or --test-data)"
        )
    # Validation labels are trained against, so they must be known (unseen test labels count
    # as errors in evaluate).
    labels = lambda r: set(r.labels.tolist())  # noqa: E731
    check_labels_seen(result, labels, specs, names=("validation",), seen=seen)
    return result


# ----------------------------------------------------------------------------- preprocessing


def fit_preprocessing(config: Config, train: list | Stream) -> dict:
    """Per-feature mean and standard deviation (NaN and inf ignored) and the label set; on a
    stream, in one pass over a sample of sequences chosen by hash (float64 sums), with every
    label the checking pass counted."""
    if isinstance(train, Stream):
        mean, std, labels = frame_stream.statistics(train)
        labels |= frame_stream.training_labels(train)
    else:
        x = np.concatenate([r.frames for r in train])
        finite = np.where(np.isfinite(x), x, np.nan)
        mean = np.nan_to_num(np.nanmean(finite, 0))
        std = np.nan_to_num(np.nanstd(finite, 0))
        labels = {str(y) for r in train for y in r.labels}
    return {
        "features": len(mean),
        "mean": mean.tolist(),
        # A constant feature keeps its scale instead of dividing by zero.
        "std": np.where(std > 1e-6, std, 1.0).tolist(),
        "labels": sorted(labels),
    }


def batches(
    config: Config, prep: dict, recordings: list | Stream, training: bool
) -> tf.data.Dataset:
    """Windows of ``config.window`` frames (NaN-padded) and their label ids (0 pads); a
    stream's are cut as its files are read, in a bounded shuffle buffer."""
    # Training windows overlap by half, so every frame is seen away from a window's edge.
    stride = config.window // 2 if training else config.stride
    seed = config.seed if training else None
    if isinstance(recordings, Stream):
        worker = distribute.worker_of(config.strategy)
        ds = frame_stream.windows(recordings, prep, config.window, stride, seed, *worker)
    else:
        xs, ys = [], []
        for r in recordings:
            labels = aligned.label_ids(prep["labels"], r.labels, r.name)
            if r.frames.shape[1] != prep["features"]:
                raise UserError(
                    f"{r.name}: expected {prep['features']} features per frame, found "
                    f"{r.frames.shape[1]}"
                )
            for x, y in frames_lib.window_pairs(r.frames, labels, config.window, stride):
                xs.append(x)
                ys.append(y)
        ds = tf.data.Dataset.from_tensor_slices((np.stack(xs), np.stack(ys)))
        if training:
            ds = ds.shuffle(len(xs), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(config.batch_size).map(lambda x, y: ({"frames": x}, y)).prefetch(2)


# ----------------------------------------------------------------------------- model


@keras.saving.register_keras_serializable(package="lstm_recipes")
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
    frames = keras.Input((None, prep["features"]), dtype="float32", name="frames")
    x, mask = FrameInput(prep["mean"], prep["std"], name="normalize")(frames)
    x = keras.layers.Dropout(config.dropout)(x)
    logits = aligned.label_steps(x, mask, len(prep["labels"]), config)
    model = keras.Model({"frames": frames}, logits, name="frame_labeling")
    model.compile(
        optimizer=training.optimizer(config),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
        metrics=[metrics.masked_accuracy],
    )
    return model


# ----------------------------------------------------------------------------- graph functions


class Labeler(tf.Module):
    """Raw frames of any length in; labels and probabilities out; all in the graph."""

    def __init__(self, config: Config, model: keras.Model, prep: dict):
        super().__init__()
        self.config, self.model = config, model
        self.labels = tf.constant(["", *prep["labels"]])

    def __call__(self, frames):
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
        logits = self.model({"frames": tf.reshape(pieces, [-1, window, features])}, training=False)
        probs = tf.nn.softmax(logits[..., 1:])
        classes = tf.shape(probs)[-1]
        probs = tf.transpose(tf.reshape(probs, [batch, n, window, classes]), [0, 3, 1, 2])
        summed = tf.signal.overlap_and_add(probs, stride)  # [B, C, total]
        counts = tf.signal.overlap_and_add(tf.ones([1, 1, n, window]), stride)
        probs = tf.transpose(summed / counts, [0, 2, 1])[:, :steps]
        real = tf.logical_not(tf.reduce_all(tf.math.is_nan(frames), -1))
        ids = tf.argmax(probs, -1, output_type=tf.int32) + 1
        return tf.where(real, tf.gather(self.labels, ids), ""), probs


# ----------------------------------------------------------------------------- evaluation


def evaluate(config: Config, model: keras.Model, prep: dict, recordings: list, run_dir: Path):
    """Per-frame accuracy and P/R/F1, segment F1@50 and a confusion matrix PNG."""
    fn = tf.function(Labeler(config, model, prep), autograph=False, reduce_retracing=True)
    gold = [list(map(str, r.labels)) for r in recordings]
    predicted = []
    for r in recordings:
        labels, _ = fn(tf.constant(r.frames[None]))
        predicted.append([t.decode() for t in labels.numpy()[0]])
    result = aligned.step_scores(gold, predicted, prep["labels"], run_dir)
    result["segment_f1_50"] = metrics.segment_f1(gold, predicted, 0.5)
    return result


# ----------------------------------------------------------------------------- export


def predict_example(config: Config, prep: dict) -> str:
    """A ``predict`` argument for this run: two frames at the training mean, as shell-quoted
    JSON (a frame has as many numbers as the run's data has features)."""
    frame = [round(float(v), 3) for v in prep["mean"]]
    return f"'{json.dumps([frame, frame])}'"


def _add_step(config: Config, model, prep: dict, endpoints: dict, samples: dict, frame, batch):
    """A causal model's ``step(frame: float32[B, F], states)`` (``aligned.step_function``) and
    its verification sample, added to ``endpoints`` and ``samples``."""
    if config.bidirectional:
        return
    normalize = model.get_layer("normalize")
    spec = tf.TensorSpec([batch, prep["features"]], tf.float32, name="frame")

    def embed(x):
        return normalize(x[:, tf.newaxis])

    endpoints["step"] = aligned.step_function(model, prep["labels"], config, embed, [spec])
    samples["step"] = {"frame": frame.tolist(), "states": aligned.zero_states(config, len(frame))}


def serving(config: Config, model: keras.Model, prep: dict) -> Serving:
    """Raw frames in (NaN rows pad); labels and probabilities out; ``step`` when causal."""
    labeler = Labeler(config, model, prep)
    spec = [tf.TensorSpec([None, None, prep["features"]], tf.float32, name="frames")]

    @tf.function(input_signature=spec, autograph=False)
    def serve_frames(frames):
        labels, probabilities = labeler(frames)
        return {"labels": labels, "probabilities": probabilities}

    rng = np.random.default_rng(0)
    sample = rng.normal(size=(2, config.window + 7, prep["features"])).astype("float32")
    sample[1, -5:] = np.nan
    endpoints = {"serving_default": serve_frames}
    samples = {"serving_default": {"frames": sample.tolist()}}
    _add_step(config, model, prep, endpoints, samples, sample[:, 0], None)
    return Serving(endpoints, [model], samples)


def portable(config: Config, model: keras.Model, prep: dict) -> litert.Portable:
    """LiteRT: ``frames: float32[1, T, F]`` (NaN rows pad) -> ``labels: string[1, T]``,
    ``probabilities: float32[1, T, C]`` for one window, labels and normalisation inside; longer
    sequences: windows of ``window`` every ``stride``, averaged (``metadata.json``)."""
    labels = tf.constant(prep["labels"])
    spec = [tf.TensorSpec([1, None, prep["features"]], tf.float32, name="frames")]

    @tf.function(input_signature=spec, autograph=False)
    def serve(frames):
        probabilities = tf.nn.softmax(model({"frames": frames}, training=False)[..., 1:])
        ids = tf.argmax(probabilities, -1, output_type=tf.int32)
        return {"labels": tf.gather(labels, ids), "probabilities": probabilities}

    sample = np.random.default_rng(0).normal(size=(1, 40, prep["features"])).astype("float32")
    sample[0, -5:] = np.nan
    facts = {"labels": prep["labels"], "window": config.window, "stride": config.stride}
    facts |= {"streaming": "no (bidirectional)"} if config.bidirectional else stepping.facts(config)
    endpoints = {"serving_default": serve}
    samples = {"serving_default": {"frames": sample.tolist()}}
    _add_step(config, model, prep, endpoints, samples, sample[:, 0], 1)
    return litert.Portable(endpoints, samples, facts)


# ----------------------------------------------------------------------------- inspection


def inspect_sequences(config: Config, prep: dict, texts, test, steps: int) -> list:
    """Frames for ``lstm-recipes inspect``: each text a JSON list of frames, or test recordings
    with their labels, up to ``steps`` frames in all."""
    if texts is not None:
        found = []
        lines = [line for text in texts for line in text.splitlines() if line.strip()]
        for n, text in enumerate(lines, 1):
            try:
                frames = np.asarray(json.loads(text), np.float32)
            except (ValueError, TypeError):
                frames = np.zeros(0)
            if frames.ndim != 2 or frames.shape[1] != prep["features"]:
                raise UserError(
                    f"input {n}: expected a JSON list of frames of {prep['features']} numbers "
                    f"each, found {text[:60]!r}"
                )
            found.append((frames, None))
    else:  # held in memory, a streamed corpus's too
        found = [(r.frames, list(r.labels)) for r in test]
    sequences, total = [], 0
    for frames, labels in found:
        if total >= steps:
            break
        frames = frames[: steps - total]
        shown = labels[: len(frames)] if labels else ["·"] * len(frames)
        inputs = {"frames": frames[None].astype(np.float32)}
        sequences.append(inspection.Sequence(inputs, shown, "frames", labels and shown))
        total += len(frames)
    return sequences
