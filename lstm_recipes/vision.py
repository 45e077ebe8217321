"""Image encoders for the captioning recipe: backbones, the ImageNet-weights check, image
decoding and augmentation, a cache of frozen-backbone features, and the head that turns a
feature grid into an attention decoder's memory and start state.

An image reference is a file path, ``builtin:INDEX`` (a generated scene) or encoded bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from lstm_recipes.data import scenes
from lstm_recipes.data import tfds as tfds_lib
from lstm_recipes.errors import UserError

# Keras Applications' models: constructor, feature channels, and the input sizes that have
# their own ImageNet weight file (any other size loads the 224 file; the convolution weights
# do not depend on the size).
_APPS = {
    "mobilenet_v2": (lambda **k: keras.applications.MobileNetV2(alpha=1.0, **k), 1280),
    "mobilenet": (lambda **k: keras.applications.MobileNet(alpha=0.25, **k), 256),
}
_WEIGHT_SIZES = {"mobilenet_v2": (96, 128, 160, 192, 224), "mobilenet": (128, 160, 192, 224)}


def imagenet_file_name(backbone: str, image_size: int) -> str:
    """The no-top ImageNet weight file Keras Applications looks for (and would download).

    Args:
        backbone: ``mobilenet_v2`` (alpha 1.0) or ``mobilenet`` (alpha 0.25).
        image_size: the square input size.
    """
    rows = image_size if image_size in _WEIGHT_SIZES[backbone] else 224
    if backbone == "mobilenet_v2":
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
    return f"mobilenet_2_5_{rows}_tf_no_top.h5"


def _keras_model_dirs() -> list[Path]:
    # Where keras.utils.get_file keeps downloads: $KERAS_HOME, else ~/.keras, with /tmp/.keras
    # when that is not writable. Keras reads KERAS_HOME once at import, so both are looked at.
    homes = [os.environ.get("KERAS_HOME", ""), "~/.keras", "/tmp/.keras"]
    return [Path(h).expanduser() / "models" for h in homes if h]


def resolve_weights(backbone: str, weights: str, image_size: int) -> str | None:
    """What to give a Keras Applications backbone as ``weights``: None, a file, or
    ``imagenet`` only when the file is missing and the network answers (Keras downloads it).

    A found ImageNet file is passed as a path, so Keras never starts a download of its own.

    Args:
        backbone: ``mobilenet_v2`` or ``mobilenet``.
        weights: ``imagenet``, ``none`` or a path to a weights ``.h5`` file.
        image_size: the square input size (picks the ImageNet file name).
    """
    if weights == "none":
        return None
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"expected a weights file at weights={weights}, found none")
        return str(path)
    name = imagenet_file_name(backbone, image_size)
    for folder in _keras_model_dirs():
        if (folder / name).is_file():
            return str(folder / name)
    if tfds_lib._online():
        return "imagenet"
    raise UserError(
        f"expected ImageNet weights for {backbone} in {_keras_model_dirs()[0]}, found no {name} "
        f"and no network to download it; give the file: --set weights=PATH/{name} "
        f"(or --set weights=none with backbone=small_cnn)"
    )


@dataclasses.dataclass(frozen=True)
class Backbone:
    """An image encoder: image (size, size, 3) with values 0..255 -> feature grid.

    Args:
        name: ``mobilenet_v2``, ``mobilenet`` (Keras Applications) or ``small_cnn``.
        weights: ``imagenet``, ``none`` (random initialization) or a weights file.
        image_size: the square input size.
        fine_tune: train the last N backbone layers (0: frozen when pretrained).
    """

    name: str
    weights: str = "imagenet"
    image_size: int = 224
    fine_tune: int = 0

    @property
    def frozen(self) -> bool:
        """Pretrained and not trained: features can be computed once and cached."""
        return self.name != "small_cnn" and self.weights != "none" and self.fine_tune == 0

    @property
    def channels(self) -> int:
        """Feature channels of the grid (Keras Applications backbones)."""
        return _APPS[self.name][1]

    def build(self) -> keras.Model:
        """A ``keras.Model`` named ``image_encoder``: image -> (positions, channels)."""
        size = self.image_size
        image = keras.Input((size, size, 3), name="image")
        x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(image)
        if self.name == "small_cnn":
            if self.weights != "none":
                raise UserError("backbone=small_cnn has no pretrained weights; set weights=none")
            for filters in (32, 64, 128):
                x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
                x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
                x = keras.layers.MaxPooling2D()(x)
        else:
            weights = resolve_weights(self.name, self.weights, size)
            app = _APPS[self.name][0]
            backbone = app(input_shape=(size, size, 3), include_top=False, weights=weights)
            backbone.trainable = not self.frozen
            if self.fine_tune and self.weights != "none":
                for layer in backbone.layers[: -self.fine_tune]:
                    layer.trainable = False
            x = backbone(x, training=False)
        grid = keras.layers.Reshape((-1, x.shape[-1]), name="grid")(x)
        return keras.Model(image, grid, name="image_encoder")

    def cache_key(self) -> str:
        """A folder name that changes with anything that changes the features."""
        weights = self.weights
        if weights not in ("imagenet", "none") and Path(weights).is_file():
            stat = Path(weights).stat()
            weights = f"{Path(weights).resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
        text = f"{self.name}|{weights}|{self.image_size}|v1"
        return f"{self.name}-{self.image_size}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def image_bytes(ref) -> bytes:
    """The encoded image behind a reference: a file path, ``builtin:N`` or bytes.

    Args:
        ref: the reference.
    """
    if isinstance(ref, bytes):
        return ref
    index = scenes.scene_index(ref)
    if index is not None:
        return tf.io.encode_png(scenes.scene(index)[0]).numpy()
    try:
        return Path(ref).read_bytes()
    except OSError as e:
        raise UserError(f"expected a readable image file at {ref}, found: {e.strerror}") from None


def checked_image_bytes(ref) -> bytes:
    """``image_bytes(ref)``, checked to decode as an image (a clear error, not a TF one).

    Args:
        ref: the reference.
    """
    data = image_bytes(ref)
    try:
        tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        name = "an in-memory image" if isinstance(ref, bytes) else str(ref)
        raise UserError(f"expected a JPEG or PNG image, could not decode {name}") from None
    return data


def decode_images(data, size: int) -> tf.Tensor:
    """(batch, size, size, 3) float32 0..255 from a batch of JPEG/PNG byte strings.

    A string that is not a JPEG, PNG, GIF or BMP image fails with InvalidArgumentError.

    Args:
        data: (batch,) string tensor of encoded images.
        size: the square output size.
    """

    def one(b):
        image = tf.io.decode_image(b, channels=3, expand_animations=False)
        return tf.image.resize(tf.cast(image, tf.float32), [size, size], antialias=True)

    return tf.map_fn(one, data, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))


def augment(image, seed):
    """A random crop (90%, resized back) and brightness change of one 0..255 image; no flips,
    which would swap the left and right that captions name.

    Args:
        image: (size, size, 3) float32.
        seed: (2,) int32, a stateless seed.
    """
    size = tf.shape(image)[0]
    crop = tf.cast(tf.cast(size, tf.float32) * 0.9, tf.int32)
    image = tf.image.stateless_random_crop(image, [crop, crop, 3], seed)
    image = tf.image.resize(image, [size, size])
    image = tf.image.stateless_random_brightness(image, 20.0, seed + 1)
    return tf.clip_by_value(image, 0.0, 255.0)


def _ref_key(ref) -> str:
    if isinstance(ref, bytes):
        return hashlib.sha1(ref).hexdigest()
    if scenes.scene_index(ref) is not None:
        return ref.replace(":", "-")
    stat = Path(ref).stat()
    text = f"{Path(ref).resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
    return hashlib.sha1(text.encode()).hexdigest()


class FeatureCache:
    """Frozen-backbone features, one ``.npy`` per image under ``folder/<backbone key>/``.

    Args:
        backbone: the (frozen) image encoder.
        folder: the cache folder (shared by every run that points at it).
    """

    def __init__(self, backbone: Backbone, folder: str):
        if not folder:
            raise UserError("expected a feature cache folder (feature_cache), found none")
        self.backbone = backbone
        self.folder = Path(folder) / backbone.cache_key()
        self.computed = 0
        self._encoder = None

    def features(self, refs: list, batch: int = 32) -> np.ndarray:
        """(len(refs), positions, channels) float16 features; computes only the missing ones.

        Args:
            refs: image references.
            batch: images encoded together.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        paths = [self.folder / f"{_ref_key(r)}.npy" for r in refs]
        missing = [i for i, p in enumerate(paths) if not p.exists()]
        if missing:
            if self._encoder is None:
                self._encoder = self.backbone.build()
            encode = tf.function(self._encoder, reduce_retracing=True)
            t0 = time.time()
            print(f"computing image features for {len(missing):,} images...", flush=True)
            for start in range(0, len(missing), batch):
                chunk = missing[start : start + batch]
                data = [checked_image_bytes(refs[i]) for i in chunk]
                size = self.backbone.image_size
                grid = encode(decode_images(tf.constant(data), size)).numpy()
                for i, g in zip(chunk, grid):
                    tmp = paths[i].with_suffix(".tmp.npy")
                    np.save(tmp, g.astype(np.float16))
                    tmp.replace(paths[i])  # atomic: a killed run leaves no half-written file
            self.computed += len(missing)
            print(f"  done in {time.time() - t0:.0f}s, cached in {self.folder}", flush=True)
        return np.stack([np.load(p) for p in paths])


@keras.saving.register_keras_serializable(package="lstm_recipes")
class Head(keras.layers.Layer):
    """Feature grid -> an attention decoder's memory, its mask (all positions real) and start
    state ``h, c`` (tanh of the mean feature, as in Show, Attend and Tell).

    Args:
        feature_dim: width the features are projected to.
        units: the decoder's LSTM units.
        dropout: dropout on the features.
        pooled: one memory position, the mean (Show and Tell), instead of the whole grid.

    Keep the class name: Keras stores a model's weights under its layers' class names, so a
    new name would orphan the weights of every run trained before.
    """

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
