"""Sentence pairs into train/validation/test splits, from every form translation data comes in.

Files (``parallel``), TFDS datasets and sharded corpora (``corpus``); ``reverse`` swaps the sides.
Carved splits take whole source sentences (``split_by=source``): Tatoeba holds several
translations of one sentence, and a split by pair trains on most of the test's sources.
"""

from __future__ import annotations

from lstm_recipes.data import Splits, corpus, limit, make_splits, parallel, shards
from lstm_recipes.data import tfds as tfds_lib
from lstm_recipes.data.dates import date_pairs
from lstm_recipes.data.tfds import contained_tempfiles, is_tfds_spec, make_builder
from lstm_recipes.errors import UserError


def _pairs(config, spec: str) -> tuple[list[tuple[str, str]], str]:
    if spec == "builtin":
        return date_pairs(20000, seed=0), "builtin dates (synthetic, 20,000 pairs)"
    return parallel.read_pairs(spec, config.source_column, config.target_column, config.zip_member)


def _split_key(config):
    if config.split_by == "pair":
        return None
    # Tatoeba has several translations of one sentence: carving by pair put 467 of spa-eng's
    # 2,000 test sources in training too, with another translation, so part of the test was seen.
    if config.lowercase:
        return lambda pair: " ".join(pair[0].lower().split())
    return lambda pair: " ".join(pair[0].split())


def _tfds_keys(config, name: str) -> list[str]:
    keys = [config.source_column, config.target_column]
    if keys == ["source", "target"] or not all(keys):
        try:
            with contained_tempfiles():
                supervised = make_builder(name).info.supervised_keys
        except UserError:  # reported when the dataset is read
            supervised = None
        if supervised:
            keys = list(supervised)
    return keys


def load_splits(
    config,
    data: str = "builtin",
    test_data: str | None = None,
    validation_data: str | None = None,
) -> Splits:
    """Train/validation/test (source, target) pairs.

    Args:
        config: a translation ``Config`` (columns, zip member, reverse, sizes, split_by, seed).
        data: ``--data``: builtin, tfds:NAME, a pairs file, two aligned files or shards.
        test_data: a separate test set, or None to carve one.
        validation_data: a separate validation set, or None to carve one.
    """

    def read_file(spec: str) -> list[tuple[str, str]]:
        pairs = parallel.drop_blank(_pairs(config, spec)[0])
        return [(t, s) for s, t in pairs] if config.reverse else pairs

    # Headerless .tsv shards hold source<TAB>target, like a single pairs file.
    names, positions = (config.source_column, config.target_column), (0, 1)
    if is_tfds_spec(data):
        names = tuple(_tfds_keys(config, data.removeprefix("tfds:")))
    if config.reverse:
        names, positions = names[::-1], positions[::-1]
    # A streamed split hashes the source alone (names[0] after a reverse), as split_by asks.
    key = (0,) if config.split_by == "source" else ()
    fields = shards.Fields(names, positions, skip_blank=True, key=key)
    if shards.is_shards_spec(data):
        result = corpus.splits(data, test_data, fields, config, read_file, None, validation_data)
    elif is_tfds_spec(data):
        hint = "--data pairs.tsv (source<TAB>target per line) or SOURCE_FILE,TARGET_FILE"
        parts, _ = tfds_lib.stream_shards(data, list(names), hint)
        result = corpus.splits(
            parts["train"],
            test_data or parts.get("test"),
            corpus.Source(fields, tfds_lib.read_split),
            config,
            read_file,
            None,
            validation_data or parts.get("validation"),
            held_source=corpus.Source(shards.Fields(names, positions, True, key)),
        )
        result.source = f"{data} ({' -> '.join(names)})"
    else:
        pairs, source = _pairs(config, data)
        pairs = parallel.drop_blank(pairs)
        result = make_splits(
            [(t, s) for s, t in pairs] if config.reverse else pairs,
            read_file(test_data) if test_data else None,
            validation=read_file(validation_data) if validation_data else None,
            seed=config.seed,
            validation_size=config.validation_size,
            test_size=config.test_size,
            source=source,
            key=_split_key(config),
        )
        result.train = limit(result.train, config.max_examples, config.seed)
    if len(result.train) < 2 or not result.validation or not result.test:
        raise UserError(
            f"expected enough sentence pairs for train, validation and test splits, found "
            f"{result.sizes()} in {data}"
        )
    return result
