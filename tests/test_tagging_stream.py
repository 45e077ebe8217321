"""tagging on CoNLL shards: the hash split of sentences, the bounded fitting pass, streamed
batches equal to the in-memory ones, bad lines mid-shard, and a run end to end."""

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_ok
from test_tagging import chunk_sentences

from lstm_recipes import recipe as recipe_lib
from lstm_recipes.data import conll, reading, stream
from lstm_recipes.errors import UserError

tagging = recipe_lib.load_recipe("tagging")
TINY = dataclasses.replace(tagging.PRESETS["tiny"], max_examples=0)


def numbered(n: int, seed: int = 0) -> list[list[tuple[str, str, str]]]:
    # A counter word makes every sentence distinct, so each has its own place in the split.
    return [[(f"w{i}", "CD", "B-NP"), *s] for i, s in enumerate(chunk_sentences(n, seed))]


def write_shards(folder: Path, sentences, n: int = 3, suffix: str = ".conll.gz") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        part = sentences[k::n]
        text = "\n\n".join("\n".join(" ".join(t) for t in s) for s in part) + "\n"
        with gzip.open(folder / f"part-{k}{suffix}", "wt", encoding="utf-8") as f:
            f.write(text)
    return str(folder / f"part-*{suffix}")


def as_sentence(s) -> conll.Sentence:
    return [w for w, _, _ in s], [t for _, _, t in s], []


def train_sentences(train: stream.Stream) -> list[conll.Sentence]:
    return [conll.from_row(row) for batch in train.batches() for row in zip(*batch)]


def test_conll_shards_split_sentences_by_hash_disjointly_and_stably(tmp_path):
    sentences = numbered(300)
    spec = write_shards(tmp_path / "s", sentences)
    splits = tagging.load_data(TINY, spec)
    assert isinstance(splits.train, stream.Stream)
    train = train_sentences(splits.train)
    parts = [train, splits.validation, splits.test]
    keys = [{" ".join(tokens) for tokens, _, _ in part} for part in parts]
    assert sum(len(k) for k in keys) == len(sentences)  # disjoint, nothing lost
    assert set().union(*keys) == {" ".join(w for w, _, _ in s) for s in sentences}
    # Whole sentences with their tags come back.
    by_tokens = {" ".join(t): (t, g, f) for t, g, f in train + splits.validation + splits.test}
    assert all(by_tokens[" ".join(as_sentence(s)[0])] == as_sentence(s) for s in sentences)
    again = tagging.load_data(TINY, str(tmp_path / "s"))  # the folder: the same shards
    assert sorted(again.test) == sorted(splits.test)
    assert sorted(again.validation) == sorted(splits.validation)


def test_streamed_fitting_equals_fitting_on_the_same_sentences(tmp_path):
    spec = write_shards(tmp_path / "s", numbered(200))
    splits = tagging.load_data(TINY, spec)
    streamed = tagging.fit_preprocessing(TINY, splits.train)
    in_memory = tagging.fit_preprocessing(TINY, train_sentences(splits.train))
    for key in ("words", "chars", "features", "labels", "constrained"):
        assert streamed[key] == in_memory[key], key
    assert streamed["constrained"] is True  # the generated chunks are legal IOB2


def test_streamed_batches_equal_the_in_memory_batches(tmp_path):
    spec = write_shards(tmp_path / "s", numbered(120))
    splits = tagging.load_data(TINY, spec)
    prep = tagging.fit_preprocessing(TINY, splits.train)
    sentences = train_sentences(splits.train)

    def examples(ds):
        out = []
        for x, y in ds:
            for i in range(y.shape[0]):
                n = int(np.count_nonzero(y[i]))
                words, chars = x["words"][i, :n].numpy(), x["chars"][i, :n].numpy()
                out.append((tuple(words), chars.tobytes(), tuple(y[i, :n].numpy())))
        return sorted(out)

    streamed = examples(tagging.batches(TINY, prep, splits.train, training=True))
    in_memory = examples(tagging.batches(TINY, prep, sentences, training=True))
    assert len(streamed) == len(sentences)
    assert streamed == in_memory


def test_a_ragged_line_mid_shard_names_its_file_and_line_or_is_skipped(tmp_path):
    sentences = numbered(60)
    spec = write_shards(tmp_path / "s", sentences)
    shard = tmp_path / "s" / "part-1.conll.gz"
    lines = gzip.decompress(shard.read_bytes()).decode().split("\n")
    lines[9] = "too many columns here"
    shard.write_bytes(gzip.compress("\n".join(lines).encode()))
    refused = pytest.raises(UserError, match=r"part-1\.conll\.gz:10: expected 3 columns")
    with refused, reading.options(skip_bad_rows=0):
        tagging.load_data(TINY, spec)
    with reading.options(skip_bad_rows=1) as report:
        splits = tagging.load_data(TINY, spec)
    assert report.skipped_count == 1
    total = len(splits.train) + len(splits.validation) + len(splits.test)
    assert total == len(sentences) - 1  # only the broken line's sentence is dropped


def test_tagging_trains_on_conll_shards_with_a_validation_file(tmp_path):
    spec = write_shards(tmp_path / "s", numbered(240))
    validation = tmp_path / "valid.conll"
    validation.write_text(
        "\n\n".join("\n".join(" ".join(t) for t in s) for s in numbered(30, seed=9)) + "\n"
    )
    run = tmp_path / "run"
    cli_ok(
        "run",
        "tagging",
        "--preset",
        "tiny",
        "--data",
        spec,
        "--validation-data",
        str(validation),
        "--set",
        "max_examples=0",
        "--run-dir",
        str(run),
    )
    info = json.loads((run / "run.json").read_text())
    assert info["validation_data"] == str(validation)
    assert info["sizes"]["validation"] == 30  # the file, not a carved share
    # With a validation file nothing is carved for validation: train + test cover the shards.
    assert info["sizes"]["train"] + info["sizes"]["test"] == 240
    assert json.loads((run / "metrics.json").read_text())["accuracy"] > 0.0
    assert list((run / "export").glob("*/saved_model.pb"))


def test_a_tfds_tagging_dataset_streams_with_tag_names(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    import tensorflow as tf

    def as_dataset(self, split, **kwargs):
        # Aligned tokens and tags (the default mock draws lengths independently).
        n = {"train": 40, "validation": 6, "test": 8}[str(split)]
        tokens = [[f"w{i}", "the", "cat"] for i in range(n)]
        ner = [[1, 0, 2]] * n
        return tf.data.Dataset.from_tensor_slices(
            {"tokens": tf.ragged.constant(tokens), "ner": tf.ragged.constant(ner, tf.int64)}
        ).map(lambda e: {"tokens": e["tokens"], "ner": e["ner"]})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        splits = tagging.load_data(TINY, "tfds:conll2003")
        train = train_sentences(splits.train)
    names = tfds.builder("conll2003").info.features["ner"].feature.names
    assert isinstance(splits.train, stream.Stream)
    # The mock's metadata lists no splits: train and test are read, validation carved by hash.
    assert len(train) + len(splits.validation) == 40 and len(splits.test) == 8
    assert len(splits.validation) > 0
    assert train[0][1] == [names[1], names[0], names[2]]  # tag ids as their names
    assert train[0][0][1:] == ["the", "cat"]


@pytest.mark.parametrize("fmt", ["parquet", "tfrecord"])
def test_parquet_and_tfrecord_sentences_stream_like_conll_shards(tmp_path, fmt):
    import tensorflow as tf

    sentences = numbered(150)
    conll_spec = write_shards(tmp_path / "conll", sentences)
    path = tmp_path / f"sentences.{fmt}"
    tokens = [[w for w, _, _ in s] for s in sentences]
    tags = [[t for _, _, t in s] for s in sentences]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"tokens": tokens, "tags": tags}), path, row_group_size=40)
    else:
        with tf.io.TFRecordWriter(str(path)) as writer:
            for words, labels in zip(tokens, tags):
                feature = {
                    name: tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[v.encode() for v in values])
                    )
                    for name, values in (("tokens", words), ("tags", labels))
                }
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                writer.write(example.SerializeToString())
    from_conll = tagging.load_data(TINY, conll_spec)
    from_records = tagging.load_data(TINY, str(path))
    assert isinstance(from_records.train, stream.Stream)
    assert sorted(train_sentences(from_records.train)) == sorted(train_sentences(from_conll.train))
    assert sorted(from_records.test) == sorted(from_conll.test)
    assert sorted(from_records.validation) == sorted(from_conll.validation)


def test_a_record_sentence_with_fewer_tags_than_tokens_is_a_bad_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"tokens": [["a", "b"], ["c"]], "tags": [["X"], ["Y"]]}), path)
    with pytest.raises(UserError, match=r"example 1: expected as many 'tags' tags as tokens"):
        tagging.load_data(TINY, str(path))
