"""Image captioning: one-to-many. One image in, a sentence out.

Image encoder: a Keras Applications backbone (MobileNetV2 by default) whose last feature grid is
the memory (7 x 7 x 1280 at 224 pixels), or a small CNN trained from scratch. The decoder is the
translation recipe's ``blocks.AttentionDecoder`` with soft attention over the grid (Show, Attend
and Tell), or, with ``decoder=init``, one pooled image vector that starts the LSTM (Show and
Tell). Decoding is ``decoding.greedy`` / ``decoding.beam_search``, shared with translation.

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

Expect BLEU-1 about 58 and BLEU-4 about 16 with beam search on the 100 test images, the whole
command in about 12 minutes (measured 57.74 / 16.29; benchmarks/RESULTS.md).

Export: ``serving_default(image_bytes: string[None]) -> {caption: string[None]}`` (JPEG or PNG
bytes; decoding, resizing, backbone, decoder and beam search in the graph) and ``greedy``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from pathlib import Path
from typing import Literal

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from lstm_recipes import blocks, cells, decoding, distribute, metrics, plots, training
from lstm_recipes.data import Splits, files, limit, make_splits
from lstm_recipes.data import text as text_lib
from lstm_recipes.data.tfds import is_tfds_spec, load_tfds
from lstm_recipes.errors import UserError
from lstm_recipes.export import Serving, binary_sample

TOPOLOGY = "one-to-many"
DATA_FORMS = {
    "builtin": "3,000 generated scenes (synthetic): coloured shapes in positions, 3 captions each",
    "FOLDER/": "images plus a captions file in or beside it: captions.csv (image,caption; "
    "several rows per image), Flickr8k's *.token.txt (image.jpg#N<TAB>caption) or "
    'captions.jsonl ({"image": ..., "captions": [...]})',
    "CAPTIONS_FILE": "one of those files; images in its folder or its images/ sub-folder",
    "tfds:NAME": "a TFDS captioning dataset, e.g. tfds:coco_captions (loaded into memory)",
}
SIGNATURES = {
    "serving_default": "image_bytes: string[None] -> {caption: string[None]} (beam search)",
    "greedy": "image_bytes: string[None] -> {caption: string[None]}",
}
MONITOR = "val_loss"
MAIN_METRIC = "bleu4_beam"  # the test metric `ablate` compares
PREDICT_EXAMPLE = "photo.jpg"

START, END = 2, 3
MARKERS = ["[START]", "[END]"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


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
    vocab_size: int = 5000  # words kept (most frequent in training), specials included
    lowercase: bool = True  # lowercase captions (BLEU is then case-insensitive)
    feature_dim: int = 256  # width the image features are projected to
    embedding_dim: int = 256  # word embedding width
    units: int = 512  # decoder LSTM units
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


# ----------------------------------------------------------------------------- built-in scenes

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 200, 30),
}
SHAPES = ("circle", "square", "triangle")


def _draw(canvas: np.ndarray, shape: str, colour, cx: float, cy: float, r: float) -> None:
    size = canvas.shape[0]
    yy, xx = np.mgrid[0:size, 0:size] / size
    if shape == "circle":
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    elif shape == "square":
        inside = (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
    else:
        inside = (yy <= cy + r * 0.8) & (yy - (cy - r) >= 1.8 * np.abs(xx - cx))
    canvas[inside] = colour


def scene(index: int, size: int = 64) -> tuple[np.ndarray, list[str]]:
    """Generated scene ``index``: a uint8 image and its 3 captions (deterministic).

    Args:
        index: which scene.
        size: image side in pixels.
    """
    rng = np.random.default_rng(index)
    # The noise has its own generator, so the scene is the same at every size.
    noise = np.random.default_rng([index, size]).integers(-12, 12, (size, size, 3))
    canvas = np.clip(245 + noise, 0, 255).astype(np.uint8)
    names = list(COLOURS)
    if rng.random() < 0.35:
        colour, shape = names[rng.integers(4)], SHAPES[rng.integers(3)]
        where = ("top", "bottom", "center")[rng.integers(3)]
        cy = {"top": 0.27, "bottom": 0.73, "center": 0.5}[where]
        _draw(canvas, shape, COLOURS[colour], 0.5 + rng.uniform(-0.08, 0.08), cy, 0.18)
        place = "in the center" if where == "center" else f"at the {where}"
        return canvas, [
            f"a {colour} {shape} {place}",
            f"one {colour} {shape} {place}",
            f"there is a single {colour} {shape} {place}",
        ]
    (a, b), (sa, sb) = rng.choice(4, 2, replace=False), rng.integers(0, 3, 2)
    ca, cb = names[a], names[b]
    sa, sb = SHAPES[sa], SHAPES[sb]
    _draw(canvas, sa, COLOURS[ca], 0.26, 0.5 + rng.uniform(-0.15, 0.15), 0.17)
    _draw(canvas, sb, COLOURS[cb], 0.74, 0.5 + rng.uniform(-0.15, 0.15), 0.17)
    return canvas, [
        f"a {ca} {sa} on the left and a {cb} {sb} on the right",
        f"a {cb} {sb} to the right of a {ca} {sa}",
        f"there is a {ca} {sa} and a {cb} {sb}",
    ]


def builtin_examples(n: int = 3000) -> list[tuple[str, list[str]]]:
    """(``builtin:INDEX``, captions) for the generated scenes."""
    return [(f"builtin:{i}", scene(i)[1]) for i in range(n)]


# ----------------------------------------------------------------------------- data


def image_bytes(ref) -> bytes:
    """The encoded image behind an example's reference: a file path, ``builtin:N`` or bytes."""
    if isinstance(ref, bytes):
        return ref
    if ref.startswith("builtin:"):
        return tf.io.encode_png(scene(int(ref.split(":", 1)[1]))[0]).numpy()
    try:
        return Path(ref).read_bytes()
    except OSError as e:
        raise UserError(f"expected a readable image file at {ref}, found: {e.strerror}") from None


def _find_captions(path: Path) -> Path:
    if path.is_file():
        return path
    names = ["captions.csv", "captions.tsv", "captions.jsonl", "captions.txt"]
    for folder in (path, path.parent):
        for name in names:
            if (folder / name).is_file():
                return folder / name
        tokens = sorted(folder.glob("*.token.txt"))
        if tokens:
            return tokens[0]
    raise UserError(
        f"expected a captions file (captions.csv, captions.jsonl or *.token.txt) in or beside "
        f"{path}, found none"
    )


def _image_folder(captions: Path, data: Path) -> Path:
    candidates = [data] if data.is_dir() else []
    candidates += [captions.parent / "images", captions.parent / "Flicker8k_Dataset"]
    candidates += [captions.parent / "Flickr8k_Dataset", captions.parent]
    for folder in candidates:
        if folder.is_dir() and any(
            p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file()
        ):
            return folder
    raise UserError(f"expected a folder of .jpg/.png images beside {captions}, found none")


def read_captions(config: Config, spec: str) -> tuple[dict[str, list[str]], Path]:
    """Image file name -> its captions, and the image folder, from a folder or captions file.

    Args:
        config: the recipe config (column names).
        spec: a folder of images with its captions file, or the captions file itself.
    """
    data = Path(spec)
    if not data.exists():
        raise UserError(f"expected a captions file or an image folder at {spec}, found nothing")
    captions_path = _find_captions(data)
    images = _image_folder(captions_path, data)
    by_image: dict[str, list[str]] = {}
    name = captions_path.name.lower()
    if name.endswith(".token.txt") or name == "captions.txt":
        for n, line in enumerate(files.read_text(captions_path).splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, caption = line.partition("\t")
            if not sep:
                raise UserError(
                    f"{captions_path}:{n}: expected IMAGE#N<TAB>caption, found {line[:80]!r}"
                )
            by_image.setdefault(key.split("#")[0].strip(), []).append(caption.strip())
    elif name.endswith(".jsonl"):
        rows = files.read_table(captions_path, [config.image_column, "captions"])
        for row in rows:
            caps = row["captions"]
            if isinstance(caps, str) or not isinstance(caps, list):
                raise UserError(
                    f"{captions_path}: expected 'captions' to be a list of strings, found "
                    f"{type(caps).__name__}"
                )
            by_image.setdefault(str(row[config.image_column]), []).extend(map(str, caps))
    else:
        for row in files.read_table(captions_path, [config.image_column, config.caption_column]):
            by_image.setdefault(str(row[config.image_column]), []).append(
                str(row[config.caption_column])
            )
    unknown = [k for k in by_image if not (images / k).is_file()]
    if unknown:
        raise UserError(
            f"{captions_path} has captions for {len(unknown)} image(s) not in {images}, e.g. "
            f"{unknown[0]!r}; expected every captioned image to exist"
        )
    return by_image, images


def _split_lists(config: Config, folders: list[Path]) -> list[set[str]] | None:
    if not config.split_files:
        return None
    lists = []
    for name in config.split_files.split(","):
        name = name.strip()
        found = [f / name for f in folders if (f / name).is_file()]
        path = Path(name) if Path(name).is_absolute() else (found[0] if found else None)
        if path is None or not path.is_file():
            raise UserError(
                f"expected the split list {name} (split_files) in "
                f"{', '.join(str(f) for f in folders)}, found no file"
            )
        lists.append({line.strip() for line in path.read_text().splitlines() if line.strip()})
    if len(lists) != 3:
        raise UserError(f"expected split_files=TRAIN,DEV,TEST (3 lists), found {len(lists)}")
    return lists


def load_data(config: Config, data: str = "builtin", test_data: str | None = None) -> Splits:
    """Train/validation/test (image reference, [captions]) examples, split by image."""
    test = None
    if data == "builtin":
        examples, source = builtin_examples(), "builtin scenes (synthetic, 3,000 images)"
    elif is_tfds_spec(data):
        splits, _ = load_tfds(data, ["image", "captions"], "--data FOLDER (images + captions.csv)")
        examples = [
            (tf.io.encode_png(img).numpy(), [_plain(t) for t in caps["text"]])
            for img, caps in splits["train"]
        ]
        if "test" in splits:
            test = [
                (tf.io.encode_png(img).numpy(), [_plain(t) for t in caps["text"]])
                for img, caps in splits["test"]
            ]
        source = data
    else:
        by_image, folder = read_captions(config, data)
        examples = [(str(folder / k), v) for k, v in sorted(by_image.items())]
        source = f"{data} ({len(examples):,} images)"
        given = Path(data) if Path(data).is_dir() else Path(data).parent
        lists = _split_lists(config, [given, folder, folder.parent])
        if lists:
            name = {str(folder / k): k for k in by_image}
            parts = [[e for e in examples if name[e[0]] in part] for part in lists]
            result = Splits(train=parts[0], validation=parts[1], test=parts[2], source=source)
            result.train = limit(result.train, config.max_examples, config.seed)
            return result
    if test_data:
        by_image, folder = read_captions(config, test_data)
        test = [(str(folder / k), v) for k, v in sorted(by_image.items())]
    result = make_splits(
        examples,
        test,
        seed=config.seed,
        validation_size=config.validation_size,
        test_size=config.test_size,
        source=source,
    )
    result.train = limit(result.train, config.max_examples, config.seed)
    if len(result.train) < 2 or not result.validation or not result.test:
        raise UserError(
            f"expected enough images for train, validation and test splits, found "
            f"{result.sizes()} in {data}"
        )
    return result


def _plain(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _standardize(config: Config):
    return text_lib.split_punctuation_lower if config.lowercase else text_lib.split_punctuation


def fit_preprocessing(config: Config, train: list, run_dir: Path | None = None) -> dict:
    """The caption vocabulary (training captions only) and where image features are cached."""
    captions = [c for _, caps in train for c in caps]
    vocab = text_lib.fit_vocabulary(captions, config.vocab_size - 2, _standardize(config))
    cache = config.feature_cache or (str(run_dir / "features") if run_dir else "")
    return {"vocabulary": MARKERS + vocab, "feature_cache": cache}


# ----------------------------------------------------------------------------- image encoder


def _frozen(config: Config) -> bool:
    return config.backbone != "small_cnn" and config.weights != "none" and config.fine_tune == 0


def _weights(config: Config):
    if config.weights == "none":
        return None
    if config.weights != "imagenet":
        path = Path(config.weights).expanduser()
        if not path.is_file():
            raise UserError(f"expected a weights file at weights={config.weights}, found none")
        return str(path)
    # Keras downloads ImageNet weights on first use; offline that hangs, so check first.
    names = {
        "mobilenet_v2": (
            f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{config.image_size}_no_top.h5"
        ),
        "mobilenet": "mobilenet_2_5_224_tf_no_top.h5",
    }
    # Where Keras itself looks: $KERAS_HOME, else ~/.keras.
    home = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser()
    cached = home / "models" / names[config.backbone]
    if cached.is_file():
        return "imagenet"
    from lstm_recipes.data.tfds import _online

    if _online():
        return "imagenet"
    raise UserError(
        f"ImageNet weights for {config.backbone} are not on this machine (looked for {cached}) "
        f"and the network is not reachable. Pass the file: --set weights=PATH/{names[config.backbone]}"
        " (e.g. from ../shared/models/), or --set weights=none to train a small CNN"
    )


def build_encoder(config: Config) -> keras.Model:
    """Image (size, size, 3) with values 0..255 -> feature grid (positions, channels)."""
    size = config.image_size
    image = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(image)
    if config.backbone == "small_cnn":
        if config.weights != "none":
            raise UserError("backbone=small_cnn has no pretrained weights; set weights=none")
        for filters in (32, 64, 128):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = keras.layers.MaxPooling2D()(x)
    else:
        app = {
            "mobilenet_v2": lambda **k: keras.applications.MobileNetV2(alpha=1.0, **k),
            "mobilenet": lambda **k: keras.applications.MobileNet(alpha=0.25, **k),
        }[config.backbone]
        backbone = app(input_shape=(size, size, 3), include_top=False, weights=_weights(config))
        backbone.trainable = not _frozen(config)
        if config.fine_tune and config.weights != "none":
            for layer in backbone.layers[: -config.fine_tune]:
                layer.trainable = False
        x = backbone(x, training=False)
    grid = keras.layers.Reshape((-1, x.shape[-1]), name="grid")(x)
    return keras.Model(image, grid, name="image_encoder")


def decode_images(data, size: int) -> tf.Tensor:
    """(batch, size, size, 3) float32 0..255 from a batch of JPEG/PNG byte strings.

    A string that is not a JPEG, PNG, GIF or BMP image fails with InvalidArgumentError.
    """

    def one(b):
        image = tf.io.decode_image(b, channels=3, expand_animations=False)
        return tf.image.resize(tf.cast(image, tf.float32), [size, size], antialias=True)

    return tf.map_fn(one, data, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))


def _cache_key(config: Config) -> str:
    weights = config.weights
    if weights not in ("imagenet", "none") and Path(weights).is_file():
        stat = Path(weights).stat()
        weights = f"{Path(weights).resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
    text = f"{config.backbone}|{weights}|{config.image_size}|v1"
    return f"{config.backbone}-{config.image_size}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def _ref_key(ref) -> str:
    if isinstance(ref, bytes):
        return hashlib.sha1(ref).hexdigest()
    if ref.startswith("builtin:"):
        return ref.replace(":", "-")
    stat = Path(ref).stat()
    text = f"{Path(ref).resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
    return hashlib.sha1(text.encode()).hexdigest()


class FeatureCache:
    """Frozen-backbone features, one ``.npy`` per image under ``folder/<backbone key>/``.

    Args:
        config: the recipe config (backbone, weights, image size).
        folder: the cache folder (shared by every run that points at it).
    """

    def __init__(self, config: Config, folder: str):
        if not folder:
            raise UserError("expected a feature cache folder (feature_cache), found none")
        self.config = config
        self.folder = Path(folder) / _cache_key(config)
        self.computed = 0
        self._encoder = None

    def features(self, refs: list, batch: int = 32) -> np.ndarray:
        """(len(refs), positions, channels) float16 features; computes only the missing ones."""
        self.folder.mkdir(parents=True, exist_ok=True)
        paths = [self.folder / f"{_ref_key(r)}.npy" for r in refs]
        missing = [i for i, p in enumerate(paths) if not p.exists()]
        if missing:
            if self._encoder is None:
                self._encoder = build_encoder(self.config)
            encode = tf.function(self._encoder, reduce_retracing=True)
            t0 = time.time()
            print(f"computing image features for {len(missing):,} images...", flush=True)
            for start in range(0, len(missing), batch):
                chunk = missing[start : start + batch]
                data = [_checked_image(refs[i]) for i in chunk]
                grid = encode(decode_images(tf.constant(data), self.config.image_size)).numpy()
                for i, g in zip(chunk, grid):
                    tmp = paths[i].with_suffix(".tmp.npy")
                    np.save(tmp, g.astype(np.float16))
                    tmp.replace(paths[i])  # atomic: a killed run leaves no half-written file
            self.computed += len(missing)
            print(f"  done in {time.time() - t0:.0f}s, cached in {self.folder}", flush=True)
        return np.stack([np.load(p) for p in paths])


def _checked_image(ref) -> bytes:
    data = image_bytes(ref)
    try:
        tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        name = "an in-memory image" if isinstance(ref, bytes) else str(ref)
        raise UserError(f"expected a JPEG or PNG image, could not decode {name}") from None
    return data


# ----------------------------------------------------------------------------- batches


def _encode_captions(config: Config, prep: dict, captions: list[str]):
    vectorizer = text_lib.make_vectorizer(prep["vocabulary"], _standardize(config), "captions")
    return text_lib.encode(vectorizer, captions, config.max_length + 1)


def _augment(image, seed):
    size = tf.shape(image)[0]
    crop = tf.cast(tf.cast(size, tf.float32) * 0.9, tf.int32)
    image = tf.image.stateless_random_crop(image, [crop, crop, 3], seed)
    image = tf.image.resize(image, [size, size])
    image = tf.image.stateless_random_brightness(image, 20.0, seed + 1)
    return tf.clip_by_value(image, 0.0, 255.0)


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
    if _frozen(config):
        grid = tf.constant(
            FeatureCache(config, prep["feature_cache"]).features([r for r, _ in examples])
        )

        def inputs(i):
            return {"features": tf.cast(tf.gather(grid, i), tf.float32)}
    else:
        encoded = tf.constant([_checked_image(r) for r, _ in examples])

        def inputs(i):
            image = decode_images(encoded[i][None], config.image_size)[0]
            if training and config.augment:
                image = _augment(image, tf.stack([i, 0]))
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


class Head(keras.layers.Layer):
    """Feature grid -> decoder memory, its mask (all positions real) and initial state."""

    def __init__(self, feature_dim: int, units: int, dropout: float, pooled: bool, **kwargs):
        super().__init__(**kwargs)
        self.feature_dim, self.units, self.dropout, self.pooled = (
            feature_dim,
            units,
            dropout,
            pooled,
        )
        self.drop = keras.layers.Dropout(dropout)
        self.project = keras.layers.Dense(feature_dim, activation="relu", name="project")
        self.bridge_h = keras.layers.Dense(units, activation="tanh", name="bridge_h")
        self.bridge_c = keras.layers.Dense(units, activation="tanh", name="bridge_c")

    def build(self, shape):
        self.project.build(shape)
        self.bridge_h.build((shape[0], self.feature_dim))
        self.bridge_c.build((shape[0], self.feature_dim))
        self.built = True

    def call(self, grid, training=None):
        memory = self.project(self.drop(grid, training=training))
        mean = ops.mean(memory, axis=1)
        if self.pooled:
            memory = ops.expand_dims(mean, 1)
        mask = ops.ones_like(memory[:, :, 0], dtype="bool")
        return memory, mask, self.bridge_h(mean), self.bridge_c(mean)

    def compute_output_spec(self, grid, training=None):
        positions = 1 if self.pooled else grid.shape[1]
        return (
            keras.KerasTensor((grid.shape[0], positions, self.feature_dim)),
            keras.KerasTensor((grid.shape[0], positions), dtype="bool"),
            keras.KerasTensor((grid.shape[0], self.units)),
            keras.KerasTensor((grid.shape[0], self.units)),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "feature_dim": self.feature_dim,
            "units": self.units,
            "dropout": self.dropout,
            "pooled": self.pooled,
        }


def build_model(config: Config, prep: dict) -> keras.Model:
    target_in = keras.Input((None,), dtype="int32", name="target_in")
    if _frozen(config):
        channels = {"mobilenet_v2": 1280, "mobilenet": 256}[config.backbone]
        grid_input = keras.Input((None, channels), name="features")
        grid, inputs = grid_input, {"features": grid_input}
    else:
        image = keras.Input((config.image_size, config.image_size, 3), name="image")
        grid, inputs = build_encoder(config)(image), {"image": image}
    memory, mask, h0, c0 = Head(
        config.feature_dim, config.units, config.dropout, config.decoder == "init", name="head"
    )(grid)
    logits = blocks.AttentionDecoder(
        len(prep["vocabulary"]) + 2,
        config.embedding_dim,
        config.units,
        1,
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


class Captioner(tf.Module):
    """Image bytes (or cached features) in, caption out: encode, search, detokenize in-graph."""

    def __init__(self, config: Config, model: keras.Model, prep: dict):
        super().__init__()
        self.config = config
        self.words = tf.constant(["", "[UNK]", *prep["vocabulary"]])
        self.head = model.get_layer("head")
        self.decoder = model.get_layer("decoder")
        self.encoder = (
            build_encoder(config) if _frozen(config) else model.get_layer("image_encoder")
        )

    def memory(self, grid):
        memory, mask, h, c = self.head(grid, training=False)
        return memory, mask, self.decoder.start_states(h, c)

    def search(self, grid, beam_width: int):
        memory, mask, states = self.memory(grid)
        return decoding.search_attention_decoder(
            self.decoder,
            states,
            memory,
            mask,
            START,
            END,
            self.config.max_length + 1,
            beam_width,
            self.config.length_penalty,
        )

    def text(self, out):
        words = decoding.output_words(self.words, out, START, END)
        return text_lib.detokenize(tf.strings.reduce_join(words, axis=-1, separator=" "))

    def grid(self, data):
        return self.encoder(decode_images(data, self.config.image_size), training=False)

    def caption(self, data, beam_width: int):
        return self.text(self.search(self.grid(data), beam_width))

    def attention(self, grid, out):
        memory, mask, states = self.memory(grid)
        target_in = tf.concat([tf.fill([tf.shape(out)[0], 1], START), out[:, :-1]], 1)
        _, weights, _ = self.decoder.decode(target_in, memory, mask, states, training=False)
        return weights


# ----------------------------------------------------------------------------- evaluation


def _grids(config: Config, prep: dict, captioner: Captioner, refs: list) -> np.ndarray:
    if _frozen(config):
        return FeatureCache(config, prep["feature_cache"]).features(refs).astype(np.float32)
    out = []
    for start in range(0, len(refs), 32):
        data = tf.constant([image_bytes(r) for r in refs[start : start + 32]])
        out.append(captioner.grid(data).numpy())
    return np.concatenate(out)


def caption_all(captioner: Captioner, grids: np.ndarray, beam_width: int, batch: int = 32):
    fn = tf.function(
        lambda g: captioner.text(captioner.search(g, beam_width)),
        input_signature=[tf.TensorSpec([None, *grids.shape[1:]], tf.float32)],
        autograph=False,
    )
    out = []
    for start in range(0, len(grids), batch):
        out += [t.decode("utf-8", "replace") for t in fn(grids[start : start + batch]).numpy()]
    return out


def evaluate(config: Config, model: keras.Model, prep: dict, examples: list, run_dir: Path) -> dict:
    """BLEU-1..4 against all references (greedy and beam), token accuracy, attention plots."""
    forced = model.evaluate(
        batches(config, prep, examples, training=False), verbose=0, return_dict=True
    )
    captioner = Captioner(config, model, prep)
    refs = [r for r, _ in examples]
    grids = _grids(config, prep, captioner, refs)
    references = [caps for _, caps in examples]
    result = {"images": len(examples), "loss": float(forced["loss"])}
    result["token_accuracy"] = float(forced["masked_accuracy"])
    outputs = {}
    for name, width in (("greedy", 1), ("beam", config.beam_width)):
        t0 = time.time()
        outputs[name] = caption_all(captioner, grids, width)
        result[f"{name}_images_per_second"] = round(len(refs) / max(time.time() - t0, 1e-9), 1)
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
    _attention_plots(config, captioner, prep, examples, grids, run_dir)
    result["examples"] = [
        {"image": "(in memory)" if isinstance(r, bytes) else str(r), "beam": b, "reference": c[0]}
        for (r, c), b in list(zip(examples, outputs["beam"]))[:5]
    ]
    return result


def _attention_plots(config, captioner, prep, examples, grids, run_dir: Path) -> None:
    n = min(config.attention_plots, len(examples))
    if n == 0 or config.decoder != "attention":
        return
    grid = tf.constant(grids[:n])
    out = captioner.search(grid, config.beam_width)
    weights = captioner.attention(grid, out).numpy()
    vocab = ["", "[UNK]", *prep["vocabulary"]]
    side = int(round(grids.shape[1] ** 0.5))
    for i in range(n):
        row = out[i].numpy()
        length = int(decoding.until_end(row[None], END).numpy().sum())
        words = [vocab[t] for t in row[:length]] + ["[END]"]
        image = decode_images(tf.constant([image_bytes(examples[i][0])]), config.image_size)
        plots.caption_attention(
            image[0].numpy().astype(np.uint8),
            words,
            weights[i, : len(words)].reshape(len(words), side, side),
            run_dir / "plots" / f"attention_{i}.png",
        )


# ----------------------------------------------------------------------------- export


def serving(config: Config, model: keras.Model, prep: dict) -> Serving:
    """Image bytes in; caption out, beam search and greedy."""
    captioner = Captioner(config, model, prep)
    spec = [tf.TensorSpec([None], tf.string, name="image_bytes")]

    @tf.function(input_signature=spec, autograph=False)
    def beam(image_bytes):
        return {"caption": captioner.caption(image_bytes, config.beam_width)}

    @tf.function(input_signature=spec, autograph=False)
    def greedy(image_bytes):
        return {"caption": captioner.caption(image_bytes, 1)}

    samples = [
        tf.io.encode_png(scene(1, 48)[0]).numpy(),
        tf.io.encode_jpeg(scene(2, 80)[0]).numpy(),
    ]
    sample = {"image_bytes": binary_sample(samples)}
    return Serving(
        {"serving_default": beam, "greedy": greedy},
        [model, captioner.encoder],
        {"serving_default": sample, "greedy": sample},
    )


keras.saving.register_keras_serializable(package="lstm_recipes")(Head)
