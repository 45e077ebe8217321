"""Captioned images into train/validation/test splits, split by image: the built-in scenes,
a TFDS dataset, or a folder of images with a captions file (``captions``), with its own split
lists when it has them (Flickr8k's).
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from lstm_recipes.data import Splits, limit, make_splits
from lstm_recipes.data import captions as captions_lib
from lstm_recipes.data.scenes import builtin_examples
from lstm_recipes.data.tfds import is_tfds_spec, load_tfds
from lstm_recipes.errors import UserError


def _folder_examples(config, spec: str) -> tuple[list, Path, dict[str, list[str]]]:
    by_image, folder = captions_lib.read_captions(spec, config.image_column, config.caption_column)
    return [(str(folder / k), v) for k, v in sorted(by_image.items())], folder, by_image


def _tfds_examples(split) -> list:
    return [
        (tf.io.encode_png(img).numpy(), [_plain(t) for t in caps["text"]]) for img, caps in split
    ]


def _plain(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def load_splits(
    config,
    data: str = "builtin",
    test_data: str | None = None,
    validation_data: str | None = None,
) -> Splits:
    """Train/validation/test (image reference, [captions]) examples, split by image.

    Args:
        config: an image_captioning ``Config`` (columns, split files, sizes, seed).
        data: ``--data``: builtin, tfds:NAME, or a folder of images with a captions file.
        test_data: a separate test set, or None to carve one.
        validation_data: a separate validation set, or None to carve one.
    """
    test = None
    validation = _folder_examples(config, validation_data)[0] if validation_data else None
    if data == "builtin":
        examples, source = builtin_examples(), "builtin scenes (synthetic, 3,000 images)"
    elif is_tfds_spec(data):
        splits, _ = load_tfds(data, ["image", "captions"], "--data FOLDER (images + captions.csv)")
        examples, source = _tfds_examples(splits["train"]), data
        test = _tfds_examples(splits["test"]) if "test" in splits else None
    else:
        examples, folder, by_image = _folder_examples(config, data)
        source = f"{data} ({len(examples):,} images)"
        given = Path(data) if Path(data).is_dir() else Path(data).parent
        lists = captions_lib.read_split_lists(config.split_files, [given, folder, folder.parent])
        if lists:
            name = {str(folder / k): k for k in by_image}
            parts = [[e for e in examples if name[e[0]] in part] for part in lists]
            result = Splits(parts[0], validation or parts[1], parts[2], source=source)
            result.train = limit(result.train, config.max_examples, config.seed)
            return result
    if test_data:
        test = _folder_examples(config, test_data)[0]
    result = make_splits(
        examples,
        test,
        validation=validation,
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
