"""Data adapters: every --data form of the sentiment recipe, and broken inputs."""

import gzip
import json
import time

import pytest
from conftest import make_reviews, write_csv

from lstm_recipes import recipe as recipe_lib
from lstm_recipes.data import files, make_splits, split_examples, stream
from lstm_recipes.errors import UserError

sentiment = recipe_lib.load_recipe("sentiment")
CONFIG = sentiment.PRESETS["tiny"]


def test_builtin_sample_is_real_and_two_class():
    splits = sentiment.load_data(sentiment.PRESETS["default"], "builtin")
    assert sum(splits.sizes().values()) == 12808
    assert {y for _, y in splits.train} == {"fresh", "rotten"}


def test_csv_tsv_jsonl_and_gzip_give_the_same_examples(tmp_path):
    rows = make_reviews(40)
    write_csv(tmp_path / "a.csv", rows)
    write_csv(tmp_path / "a.tsv", rows, delimiter="\t")
    (tmp_path / "a.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows)
    )
    with gzip.open(tmp_path / "a.csv.gz", "wt", encoding="utf-8") as f:
        f.write((tmp_path / "a.csv").read_text())
    loaded = [
        sentiment.load_data(CONFIG, str(tmp_path / name))
        for name in ("a.csv", "a.tsv", "a.jsonl", "a.csv.gz")
    ]
    for splits in loaded:
        assert splits.sizes() == loaded[0].sizes()
        assert sorted(splits.train) == sorted(loaded[0].train)
    assert sorted(loaded[0].train + loaded[0].validation + loaded[0].test) == sorted(rows)


def test_columns_named_by_set(tmp_path):
    path = write_csv(tmp_path / "r.csv", make_reviews(20), header=("review", "stars"))
    config = recipe_lib.resolve_config(
        sentiment, "tiny", ["text_column=review", "label_column=stars"]
    )
    assert len(sentiment.load_data(config, str(path)).train) == 16


def test_integer_labels_sort_as_numbers(tmp_path):
    rows = [(f"text {i}", str(i % 11)) for i in range(110)]
    path = write_csv(tmp_path / "ints.csv", rows)
    splits = sentiment.load_data(CONFIG, str(path))
    labels = sentiment._label_order({y for _, y in splits.train})
    assert labels[:3] == ["0", "1", "2"] and labels[-1] == "10"


def test_jsonl_integer_labels(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(
        "".join(
            json.dumps({"text": t, "label": int(y == "pos")}) + "\n" for t, y in make_reviews(20)
        )
    )
    splits = sentiment.load_data(CONFIG, str(path))
    assert {y for _, y in splits.train} == {"0", "1"}


def test_class_folders(tmp_path):
    for i, (text, label) in enumerate(make_reviews(30)):
        (tmp_path / label).mkdir(exist_ok=True)
        (tmp_path / label / f"{i}.txt").write_text(text)
    splits = sentiment.load_data(CONFIG, str(tmp_path))
    assert sum(splits.sizes().values()) == 30
    assert {y for _, y in splits.train} == {"pos", "neg"}


def test_separate_test_file_is_used_whole(tmp_path):
    train = write_csv(tmp_path / "train.csv", make_reviews(100, seed=1))
    test = write_csv(tmp_path / "test.csv", make_reviews(30, seed=2))
    splits = sentiment.load_data(CONFIG, str(train), str(test))
    assert splits.sizes() == {"train": 90, "validation": 10, "test": 30}


def test_splits_are_fixed_by_the_seed():
    items = list(range(100))
    assert split_examples(items, (0.1, 0.1), seed=3) == split_examples(items, (0.1, 0.1), seed=3)
    assert split_examples(items, (0.1, 0.1), seed=3) != split_examples(items, (0.1, 0.1), seed=4)
    splits = make_splits(items, None, seed=0)
    assert sorted(splits.train + splits.validation + splits.test) == items


def test_a_grouped_split_keeps_each_group_in_one_part_with_the_asked_sizes():
    # 60 sources with 1 to 4 translations each, as Tatoeba has.
    items = [(f"s{n}", f"t{n}.{k}") for n in range(60) for k in range(n % 4 + 1)]
    test, validation, train = split_examples(items, (0.1, 0.1), seed=5, key=lambda p: p[0])
    assert len(test) == len(validation) == round(0.1 * len(items))
    assert sorted(test + validation + train) == sorted(items)
    sources = [{s for s, _ in part} for part in (test, validation, train)]
    assert not (sources[0] & sources[2]) and not (sources[1] & sources[2])
    assert not (sources[0] & sources[1])
    # Without groups, this data shares sources between the parts.
    test, _, train = split_examples(items, (0.1, 0.1), seed=5)
    assert {s for s, _ in test} & {s for s, _ in train}


def test_translation_carves_its_splits_by_source_sentence(tmp_path):
    translation = recipe_lib.load_recipe("translation")

    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"Sentence {n % 50}.\tFrase {n}.\n" for n in range(400)))
    for split_by, shared in (("source", False), ("pair", True)):
        config = recipe_lib.resolve_config(translation, "tiny", [f"split_by={split_by}"])
        splits = translation.load_data(config, str(path))
        seen = {s.lower() for s, _ in splits.train}
        assert any(s.lower() in seen for s, _ in splits.test + splits.validation) == shared


def test_max_examples_limits_training_only(tmp_path):
    path = write_csv(tmp_path / "r.csv", make_reviews(1000))
    config = recipe_lib.resolve_config(sentiment, "tiny", ["max_examples=50"])
    splits = sentiment.load_data(config, str(path))
    assert splits.sizes() == {"train": 50, "validation": 100, "test": 100}


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (
            b"words,label\nhello,pos\n",
            "a.csv",
            "expected columns text, label in .*missing text, found words, label",
        ),
        (b"", "a.csv", "is empty; expected a header and at least one row"),
        (b"text,label\n", "a.csv", "has a header but no rows"),
        (
            b"text,label\ncaf\xe9,pos\n",
            "a.csv",
            "expected UTF-8 text in .*byte 0xe9 at offset 14 \\(line 2\\)",
        ),
        (b'{"text": "x"}\n', "a.jsonl", "a.jsonl:1: expected keys text, label; missing label"),
        (b'{"text": \n', "a.jsonl", "a.jsonl:1: expected one JSON object per line"),
        (b"text,label\nhello,\n", "a.csv", "row 2 has an empty 'label'"),
        (
            b"text,label\n" + b"a,pos\nb,pos\nc,pos\n" * 10,
            "a.csv",
            "expected at least 2 classes .* found 1: 'pos'",
        ),
        (
            b"text,label\n",
            "a.parquet",
            "expected a Parquet file at .*a.parquet, found: Parquet magic",
        ),
    ],
)
def test_broken_inputs_raise_clear_errors(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        sentiment.load_data(CONFIG, str(path))


def test_missing_path_lists_the_accepted_forms():
    with pytest.raises(UserError, match="expected --data to be builtin, tfds:NAME, a .csv"):
        sentiment.load_data(CONFIG, "no/such/file.csv")


def test_folder_without_class_folders(tmp_path):
    (tmp_path / "a.txt").write_text("hi")
    with pytest.raises(UserError, match="one sub-folder of .txt files per class"):
        sentiment.load_data(CONFIG, str(tmp_path))


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "a.csv.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="cannot read"):
        files.read_table(path, ["text"])


def test_tfds_spec_streams_its_train_split_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=24):
        splits = sentiment.load_data(CONFIG, "tfds:imdb_reviews")
        rows = [row for batch in splits.train.batches() for row in zip(*batch)]
    assert isinstance(splits.train, stream.Stream)  # never materialised into a list
    assert splits.sizes()["test"] == 24
    # Validation is carved by hash from the 24 training examples (imdb has no validation split).
    assert len(rows) + len(splits.validation) == 24 and len(rows) == len(splits.train)
    assert {y for _, y in rows} <= {"neg", "pos"} and set(splits.train.counts) <= {"neg", "pos"}


def test_tfds_offline_fails_fast_with_the_local_alternative(monkeypatch, tmp_path):
    from lstm_recipes.data import tfds as tfds_adapter

    monkeypatch.setattr(tfds_adapter, "_online", lambda timeout=3.0: False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    start = time.time()
    with pytest.raises(UserError, match="not prepared on this machine .* --data train.csv"):
        tfds_adapter.load_tfds(
            "tfds:imdb_reviews", ["text", "label"], "--data train.csv", data_dir=str(tmp_path)
        )
    assert time.time() - start < 30  # a retrying download would take minutes


def test_tfds_unknown_name():
    with pytest.raises(UserError, match="TFDS has no dataset named 'no_such_set'"):
        sentiment.load_data(CONFIG, "tfds:no_such_set")


def test_quantile_buckets_pad_less_than_geometric_ones():
    np = pytest.importorskip("numpy")
    tf = pytest.importorskip("tensorflow")
    from lstm_recipes.data import text as text_lib

    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(5.2, 0.7, 4000).astype(int), 1, 1000)
    edges = text_lib.quantile_boundaries(lengths, buckets=32)
    counts = np.bincount(np.searchsorted(edges, lengths, side="right"))
    # About equal example counts per bucket (ties at one length may merge two buckets).
    assert len(edges) >= 28 and counts.max() <= 3 * len(lengths) / 32
    ids = tf.ragged.constant([[1] * int(n) for n in lengths])
    ds = text_lib.bucketed_batches(
        ids, tf.zeros(len(lengths)), 32, training=True, seed=0, max_length=1000
    )
    real = padded = rows = 0
    for x, _ in ds:
        real += int(tf.math.count_nonzero(x))
        padded += int(tf.size(x))
        rows += int(x.shape[0])
    assert rows == len(lengths) and real == int(lengths.sum())
    assert real / padded > 0.93
    assert text_lib.quantile_boundaries([]) == [1]


def test_readme_states_the_offline_timeout_the_code_uses():
    from conftest import REPO

    from lstm_recipes.data import tfds as tfds_adapter

    readme = (REPO / "README.md").read_text()
    assert f"fail within {tfds_adapter.NETWORK_TIMEOUT_SECONDS:g} seconds" in readme
