"""Image captioning: one-to-many. One image in, a sentence out.

Image encoder: a Keras Applications backbone (MobileNetV2 by default) whose last feature grid is
the memory (7 x 7 x 1280 at 224 pixels), or a small CNN trained from scratch. The decoder is the
translation recipe's ``attention.AttentionDecoder`` with soft attention over the grid (Show, Attend
and Tell), or, with ``decoder=init``, one pooled image vector that starts the LSTM (Show and
Tell). Search (greedy and beam) is ``seq2seq.AttentionSearch``, shared with translation.

A frozen backbone (the default with pretrained weights) runs once per image: its features are
cached in the run directory (or ``feature_cache``) and reused by every epoch and later runs.

Run it on the built-in sample (3,000 generated scenes of coloured shapes, synthetic), with a
small CNN trained from scratch, in about 10-15 minutes on 2 CPU cores:

    lstm-recipes run image_captioning

Expect BLEU-4 above 99 on the 300 test scenes, greedy and beam (measured 99.85 / 99.93 in 13.5
minutes with other work beside it; an easy, synthetic task that shows the machinery works).

On the first 1,000 Flickr8k images (100 held out for test), with ImageNet MobileNetV2 weights
(nothing downloads: point ``weights`` at the file):

    lstm-recipes run image_captioning --preset flickr8k \\
        --data ../shared/data/captioning/flickr8k-1000 \\
        --set weights=../shared/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5

(Flickr8k comes from its authors, https://forms.illinois.edu/sec/1713398; the weights file is
the one Keras downloads for MobileNetV2 without its top; README.md says how to run on both.)

Expect BLEU-1 about 58 and BLEU-4 about 16 with beam search on the 100 test images, the whole
command in about 12 minutes (measured 57.74 / 16.29; benchmarks/RESULTS.md).

Export: ``serving_default(image_bytes: string[None]) -> {caption: string[None]}`` (JPEG or PNG
bytes; decoding, resizing, backbone, decoder and beam search in the graph) and ``greedy``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from lstm_recipes import attention, cells, distribute, metrics, plots, seq2seq, training, vision
from lstm_recipes.data import Splits, captioned_images, reading, subword
from lstm_recipes.data import text as text_lib
from lstm_recipes.data.scenes import scene
from lstm_recipes.export import Serving, binary_sample
from lstm_recipes.precision import DecodePrecision, Precision

TOPOLOGY = "one-to-many"
DATA_FORMS = {
    "builtin": "3,000 generated scenes (synthetic): coloured shapes in positions, 3 captions each",
    "FOLDER/": "images plus a captions file in or beside it: captions.csv (image,caption; "
    "several rows per image), Flickr8k's *.token.txt (image.jpg#N<TAB>caption) or "
    'captions.jsonl ({"image": ..., "captions": [...]})',
    "CAPTIONS_FILE": "one of those files; images in its folder or its images/ sub-folder",
    "tfds:NAME": "a TFDS captioning dataset, e.g. tfds:coco_captions (loaded into memory)",
}
NO_LITERT = seq2seq.NO_LITERT  # why `export --format litert` is refused
SIGNATURES = {
    "serving_default": "image_bytes: string[None] -> {caption: string[None]} (beam search)",
    "greedy": "image_bytes: string[None] -> {caption: string[None]}",
}
MONITOR = "val_loss"
MAIN_METRIC = "bleu4_beam"  # the test metric `ablate` compares
# `lstm-recipes tune --space default`.
TUNE_SPACE = ("learning_rate=3e-4..3e-3:log", "units=256,512,1024", "embedding_dim=128,256,512", "dropout=0.1..0.5")  # fmt: skip
PREDICT_EXAMPLE = "photo.jpg"

START, END = seq2seq.START, seq2seq.END


@dataclasses.dataclass(frozen=True)
class Config:
    image_column: str = "image"  # CSV column / JSON key naming the image file
    caption_column: str = "caption"  # CSV column of the caption (JSONL: a "captions" list)
    split_files: str = ""  # Flickr-style lists "train.txt,dev.txt,test.txt" (image per line)
    max_examples: int = 0  # use at most this many training images (0: all)
    backbone: Literal["mobilenet_v2", "mobilenet", "small_cnn"] = "mobilenet_v2"  # image encoder
    weights: str = "imagenet"  # imagenet, a weights .h5 path, or none (trained from scratch)
    image_size: int = 224  # images are resized to this square size
    fine_tune: int = 0  # train the backbone's last N layers (0: frozen, features cached)
    augment: bool = False  # random crops/brightness when the backbone trains (no flips)
    feature_cache: str = ""  # folder for cached features (default: RUN_DIR/features)
    decoder: Literal["attention", "init"] = "attention"  # Show-Attend-Tell or Show-and-Tell
    attention: Literal["dot", "general", "additive"] = "additive"  # Bahdanau, as in the paper
    cell: cells.Cell = "lstm"  # lstm (fast kernel), a Greff et al. variant, gru, simple_rnn
    max_length: int = 30  # caption tokens kept (longer training captions are dropped)
    tokenizer: Literal["words", "subword"] = "words"  # subword: SentencePiece caption pieces
    vocab_size: int = 5000  # words kept (most frequent in training) or pieces, specials included
    lowercase: bool = True  # lowercase captions (BLEU is then case-insensitive)
    feature_dim: int = 256  # width the image features are projected to
    embedding_dim: int = 256  # word embedding width
    units: int = 512  # decoder LSTM units
    layers: int = 1  # stacked decoder LSTM layers
    dropout: float = 0.3  # dropout on features, embeddings and before the logits
    batch_size: int = 64  # (image, caption) pairs per batch
    epochs: int = 20  # most epochs; early stopping may end sooner
    patience: int = 3  # epochs without validation-loss improvement before stopping
    learning_rate: float = 1e-3  # Adam learning rate
    lr_decay: float = 1.0  # learning rate multiplied by this after every epoch
    clipnorm: float = 5.0  # gradient-norm clipping (0: off)
    max_minutes: float = 0.0  # stop training after this many minutes (0: no limit)
    beam_width: int = 3  # beam of evaluation and of the exported serving_default
    length_penalty: float = 0.6  # GNMT length-penalty alpha of the beam search
    validation_size: float = 0.1  # images held out for validation: a share (< 1) or a count
    test_size: float = 0.1  # images held out for test when no --test-data: a share or a count
    attention_plots: int = 3  # test images drawn with their attention per word
    seed: int = 42  # seeds the split, shuffling and initial weights
    strategy: distribute.Strategy = "default"  # tf.distribute: default, mirrored, multi-worker, tpu
    precision: Precision = "float32"  # mixed_bfloat16 (CPUs with bf16 instructions) or auto
    decode_precision: DecodePrecision = "float32"  # bfloat16: faster search where the CPU has it
    encoding: str = "utf-8"  # text files' codec (any Python codec: cp1252, latin-1, utf-16, ...)
    decode_errors: reading.DecodeErrors = "strict"  # replace: undecodable bytes -> U+FFFD, counted
    skip_bad_rows: int = 0  # broken rows (or missing images) skipped and reported before refusing


PRESETS = {
    "tiny": Config(
        max_examples=200,
        backbone="small_cnn",
        weights="none",
        image_size=32,
        feature_dim=16,
        embedding_dim=16,
        units=32,
        batch_size=32,
        epochs=2,
        beam_width=2,
        validation_size=40,
        test_size=40,
        attention_plots=1,
    ),
    "default": Config(
        backbone="small_cnn",
        weights="none",
        image_size=64,
        feature_dim=64,
        embedding_dim=64,
        units=128,
        learning_rate=3e-3,
        epochs=10,
    ),
    # Flickr8k's first 1,000 images: 800 train / 100 validation / 100 test, frozen MobileNetV2.
    "flickr8k": Config(
        backbone="mobilenet_v2",
        weights="imagenet",
        image_size=224,
        vocab_size=2000,
        feature_dim=256,
        embedding_dim=256,
        units=512,
        dropout=0.5,
        batch_size=64,
        epochs=30,
        patience=4,
        learning_rate=1e-3,
        max_minutes=25.0,
        validation_size=100,
        test_size=100,
    ),
}


# ----------------------------------------------------------------------------- data


def load_data(
    config: Config,
    data: str = "builtin",
    test_data: str | None = None,
    validation_data: str | None = None,
) -> Splits:
    """Train/validation/test (image reference, [captions]) examples, split by image."""
    return captioned_images.load_splits(config, data, test_data, validation_data)


def _standardize(config: Config):
    return text_lib.split_punctuation_lower if config.lowercase else text_lib.split_punctuation


def fit_preprocessing(config: Config, train: list, run_dir: Path | None = None) -> dict:
    """The caption vocabulary (training captions only) and where image features are cached."""
    captions = [c for _, caps in train for c in caps]
    cache = config.feature_cache or (str(run_dir / "features") if run_dir else "")
    if config.tokenizer == "subword":
        model, vocab = subword.fit(captions, config.vocab_size, config.lowercase, config.seed)
        return {
            "tokenizer": "subword",
            "subword": model,
            "vocabulary": vocab,
            "feature_cache": cache,
        }
    vocab = text_lib.fit_vocabulary(captions, config.vocab_size - 2, _standardize(config))
    return {"vocabulary": seq2seq.MARKERS + vocab, "feature_cache": cache}


def _tokenizer(config: Config, prep: dict):
    if config.tokenizer == "subword":
        return subword.Tokenizer(prep["subword"], config.lowercase, "captions")
    return text_lib.make_vectorizer(prep["vocabulary"], _standardize(config), "captions")


def _backbone(config: Config) -> vision.Backbone:
    return vision.Backbone(config.backbone, config.weights, config.image_size, config.fine_tune)


# ----------------------------------------------------------------------------- batches


def _encode_captions(config: Config, prep: dict, captions: list[str]):
    return text_lib.encode(_tokenizer(config, prep), captions, config.max_length + 1)


def batches(config: Config, prep: dict, examples: list, training: bool) -> tf.data.Dataset:
    """Batches of ({features or image, target_in}, target_out), one row per (image, caption)."""
    index, captions = [], []
    for i, (_, caps) in enumerate(examples):
        for c in caps:
            index.append(i)
            captions.append(c)
    ids = _encode_captions(config, prep, captions)
    if training:
        keep = np.flatnonzero(ids.row_lengths().numpy() <= config.max_length)
        index, ids = [index[k] for k in keep], tf.gather(ids, keep)
    ds = tf.data.Dataset.from_tensor_slices((np.array(index, np.int32), ids))
    backbone = _backbone(config)
    if backbone.frozen:
        cache = vision.FeatureCache(backbone, prep["feature_cache"])
        grid = tf.constant(cache.features([r for r, _ in examples]))

        def inputs(i):
            return {"features": tf.cast(tf.gather(grid, i), tf.float32)}
    else:
        encoded = tf.constant([vision.checked_image_bytes(r) for r, _ in examples])

        def inputs(i):
            image = vision.decode_images(encoded[i][None], config.image_size)[0]
            if training and config.augment:
                image = vision.augment(image, tf.stack([i, 0]))
            return {"image": image}

    if training:
        ds = ds.shuffle(len(index), seed=config.seed, reshuffle_each_iteration=True)

    def pair(i, t):
        t = tf.cast(t, tf.int32)
        x = {**inputs(i), "target_in": tf.concat([[START], t], 0)}
        return x, tf.concat([t, [END]], 0)

    return (
        ds.map(pair, num_parallel_calls=tf.data.AUTOTUNE)
        .padded_batch(config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


# ----------------------------------------------------------------------------- model


def build_model(config: Config, prep: dict) -> keras.Model:
    target_in = keras.Input((None,), dtype="int32", name="target_in")
    backbone = _backbone(config)
    if backbone.frozen:
        grid_input = keras.Input((None, backbone.channels), name="features")
        grid, inputs = grid_input, {"features": grid_input}
    else:
        image = keras.Input((config.image_size, config.image_size, 3), name="image")
        grid, inputs = backbone.build()(image), {"image": image}
    memory, mask, h0, c0 = vision.Head(
        config.feature_dim, config.units, config.dropout, config.decoder == "init", name="head"
    )(grid)
    logits = attention.AttentionDecoder(
        len(prep["vocabulary"]) + 2,
        config.embedding_dim,
        config.units,
        config.layers,
        attention=config.attention,
        dropout=config.dropout,
        cell=config.cell,
        name="decoder",
    )([target_in, memory, mask, h0, c0])
    model = keras.Model({**inputs, "target_in": target_in}, logits, name="image_captioning")
    model.compile(
        optimizer=training.optimizer(config),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
        metrics=[metrics.masked_accuracy],
    )
    return model


def captioner(config: Config, model: keras.Model, prep: dict) -> seq2seq.AttentionSearch:
    """Image bytes in (or a feature grid, already encoded), caption out; all in the graph."""
    backbone = _backbone(config)
    # A frozen backbone is not in the model (it trained on cached features): build it here.
    encoder = backbone.build() if backbone.frozen else model.get_layer("image_encoder")
    head = model.get_layer("head")
    pieces = _tokenizer(config, prep) if config.tokenizer == "subword" else None
    return seq2seq.AttentionSearch(
        model.get_layer("decoder"),
        encode=lambda grid: head(grid, training=False),
        vocabulary=prep["vocabulary"],
        max_length=config.max_length + 1,
        length_penalty=config.length_penalty,
        prepare=lambda data: encoder(vision.decode_images(data, config.image_size), training=False),
        track=[encoder, pieces] if pieces else [encoder],
        detokenize=pieces.detokenize if pieces else None,
        products=config.decode_precision,
    )


# ----------------------------------------------------------------------------- evaluation


def _grids(config: Config, prep: dict, search: seq2seq.AttentionSearch, refs: list):
    backbone = _backbone(config)
    if backbone.frozen:
        features = vision.FeatureCache(backbone, prep["feature_cache"]).features(refs)
        return features.astype(np.float32)
    out = []
    for start in range(0, len(refs), 32):
        data = tf.constant([vision.image_bytes(r) for r in refs[start : start + 32]])
        out.append(search.prepare(data).numpy())
    return np.concatenate(out)


def evaluate(config: Config, model: keras.Model, prep: dict, examples: list, run_dir: Path) -> dict:
    """BLEU-1..4 against all references (greedy and beam), token accuracy, attention plots."""
    forced = training.evaluate(model, batches(config, prep, examples, training=False))
    search = captioner(config, model, prep)
    refs = [r for r, _ in examples]
    grids = _grids(config, prep, search, refs)
    references = [caps for _, caps in examples]
    result = {"images": len(examples), "loss": float(forced["loss"])}
    result["token_accuracy"] = float(forced["masked_accuracy"])
    outputs = {}
    for name, width in (("greedy", 1), ("beam", config.beam_width)):
        timing = {}  # the rate after the first batch, which traces the search
        outputs[name] = seq2seq.decode_all(
            search, grids, width, batch=32, prepared=True, timing=timing
        )
        result[f"{name}_images_per_second"] = round(timing["per_second"], 1)
        result.update(
            {f"{k}_{name}": v for k, v in metrics.caption_bleu(outputs[name], references).items()}
        )
        cider = metrics.caption_cider(outputs[name], references)
        if cider is not None:
            result[f"cider_{name}"] = cider
    with open(run_dir / "captions.tsv", "w", encoding="utf-8") as f:
        f.write("image\tgreedy\tbeam\treferences\n")
        for (ref, caps), g, b in zip(examples, outputs["greedy"], outputs["beam"]):
            name = "(in memory)" if isinstance(ref, bytes) else str(ref)
            f.write("\t".join([name, g, b, " | ".join(caps)]) + "\n")
    _attention_plots(config, search, examples, grids, run_dir)
    result["examples"] = [
        {"image": "(in memory)" if isinstance(r, bytes) else str(r), "beam": b, "reference": c[0]}
        for (r, c), b in list(zip(examples, outputs["beam"]))[:5]
    ]
    return result


def _attention_plots(config, search, examples, grids, run_dir: Path) -> None:
    n = min(config.attention_plots, len(examples))
    if n == 0 or config.decoder != "attention":
        return
    side = int(round(grids.shape[1] ** 0.5))
    rows = seq2seq.attention_rows(search, tf.constant(grids[:n]), config.beam_width)
    for i, (words, weights) in enumerate(rows):
        data = tf.constant([vision.image_bytes(examples[i][0])])
        image = vision.decode_images(data, config.image_size)[0].numpy().astype(np.uint8)
        grid = weights.reshape(len(words), side, side)
        plots.caption_attention(image, words, grid, run_dir / "plots" / f"attention_{i}.png")


# ----------------------------------------------------------------------------- export


def serving(config: Config, model: keras.Model, prep: dict) -> Serving:
    """Image bytes in; caption out, beam search and greedy."""
    search = captioner(config, model, prep)
    spec = [tf.TensorSpec([None], tf.string, name="image_bytes")]

    @tf.function(input_signature=spec, autograph=False)
    def beam(image_bytes):
        return {"caption": search(image_bytes, config.beam_width)}

    @tf.function(input_signature=spec, autograph=False)
    def greedy(image_bytes):
        return {"caption": search(image_bytes, 1)}

    samples = [
        tf.io.encode_png(scene(1, 48)[0]).numpy(),
        tf.io.encode_jpeg(scene(2, 80)[0]).numpy(),
    ]
    sample = {"image_bytes": binary_sample(samples)}
    return Serving(
        {"serving_default": beam, "greedy": greedy},
        [model, *search.tracked],
        {"serving_default": sample, "greedy": sample},
        requires=(subword.REQUIRES,) if config.tokenizer == "subword" else (),
    )
