"""Characters or bytes as token ids, in Python (for training data) and in TensorFlow (for export).

Id 0 stands for a character never seen in training, so unseen input never crashes a model.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import layers


class CharCodec:
    """Maps text to ids and back, by Unicode characters or by UTF-8 bytes.

    Args:
        unit: ``chars`` or ``bytes``.
        vocabulary: the characters seen in training (``chars`` only), in id order from 1.
    """

    def __init__(self, unit: str, vocabulary: list[str] | None = None):
        if unit not in ("chars", "bytes"):
            raise ValueError(f"expected unit chars or bytes, got {unit!r}")
        self.unit = unit
        self.vocabulary = list(vocabulary or [])
        if unit == "chars":
            self.lookup = layers.StringLookup(
                vocabulary=self.vocabulary, num_oov_indices=1, mask_token=None, name="char_lookup"
            )
            self.index = {c: i + 1 for i, c in enumerate(self.vocabulary)}
            pieces = ["\ufffd", *self.vocabulary]
        else:
            self.lookup = None
            pieces = [b"", *[bytes([i]) for i in range(256)]]
        self.pieces = tf.constant(pieces)

    @property
    def size(self) -> int:
        """Number of ids, the unseen-character id 0 included."""
        return len(self.vocabulary) + 1 if self.unit == "chars" else 257

    def facts(self) -> dict:
        """How text maps to ids, as JSON an app can use without this package."""
        if self.unit == "bytes":
            ids, unknown = "id = UTF-8 byte + 1 (id 0 is no text)", None
        else:
            ids, unknown = "id i >= 1 is vocabulary[i - 1] (a Unicode character); any other is 0", 0
        return {
            "unit": self.unit,
            "ids": ids,
            "vocabulary": self.vocabulary,
            "vocabulary_size": self.size,
            "unknown_id": unknown,
            "padding_id": None,  # none: 0 is an unseen character, not padding
        }

    def encode(self, text: str) -> np.ndarray:
        """Ids of a Python string (training data)."""
        if self.unit == "bytes":
            return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) + 1
        return np.fromiter((self.index.get(c, 0) for c in text), np.int32, len(text))

    def split(self, text):
        """A string tensor of shape S -> ragged pieces of shape S + [None]."""
        if self.unit == "bytes":
            return tf.strings.bytes_split(text)
        return tf.strings.unicode_split(text, "UTF-8", errors="replace")

    def ids(self, pieces):
        """Ragged (or dense) string pieces -> int32 ids of the same shape."""
        if self.unit == "bytes":
            flat = pieces.flat_values if isinstance(pieces, tf.RaggedTensor) else pieces
            values = tf.cast(tf.io.decode_raw(flat, tf.uint8)[..., 0], tf.int32) + 1
            return (
                pieces.with_flat_values(values) if isinstance(pieces, tf.RaggedTensor) else values
            )
        return tf.cast(self.lookup(pieces), tf.int32)

    def text(self, ids):
        """int32 ids (..., time) -> strings (...)."""
        return tf.strings.reduce_join(tf.gather(self.pieces, ids), axis=-1)


def window_batches(
    blocks: tf.data.Dataset,
    codec: CharCodec,
    length: int,
    batch_size: int,
    *,
    training: bool,
    seed: int,
    shuffle_blocks: int = 256,
    shuffle_windows: int = 20_000,
) -> tf.data.Dataset:
    """Batches of (window, next-character window) from a dataset of texts, in graph.

    Each text is cut as a text in memory is: windows of ``length`` ids and the same shifted by
    one, one after another (the last ``length + 1`` ids of one window overlap the next by
    one); the rest of a text too short for another window is dropped.

    Args:
        blocks: scalar strings (e.g. ``stream.Stream.dataset()``'s one-field rows).
        codec: maps characters (or bytes) to ids, unseen characters to 0.
        length: window length.
        batch_size: windows per batch.
        training: shuffle blocks and windows (within the buffers) when True.
        seed: shuffle seed.
        shuffle_blocks: blocks held for shuffling (the windows of one block are contiguous).
        shuffle_windows: windows held for shuffling.
    """

    def cut(text):
        ids = codec.ids(codec.split(text))
        windows = tf.maximum(tf.size(ids) - 1, 0) // length
        x = tf.reshape(ids[: windows * length], [windows, length])
        y = tf.reshape(ids[1 : windows * length + 1], [windows, length])
        return x, y

    if training:
        blocks = blocks.shuffle(shuffle_blocks, seed=seed, reshuffle_each_iteration=True)
    windows = blocks.map(cut, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    if training:
        windows = windows.shuffle(shuffle_windows, seed=seed, reshuffle_each_iteration=True)
    return windows.batch(batch_size).prefetch(tf.data.AUTOTUNE)
