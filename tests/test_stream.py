"""Streamed corpora: every shard format, the hash split, the bounded passes, bad rows mid-stream,
multi-worker shard assignment, and sentiment and translation trained end to end on shards."""

from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import random
from pathlib import Path

import pytest
import tensorflow as tf
from conftest import cli_ok, make_reviews

from lstm_recipes.data import corpus, reading, shards, stream
from lstm_recipes.data import text as text_lib
from lstm_recipes.data.shards import Fields
from lstm_recipes.errors import UserError

FIELDS = Fields(("text", "label"))


def write_shards(folder: Path, rows, fmt: str, n: int = 3, gz: bool = True) -> str:
    """``rows`` dealt into ``n`` shards of format ``fmt``; returns a glob of them."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = [rows[i::n] for i in range(n)]
    for i, part in enumerate(parts):
        name = folder / f"part-{i:03d}.{fmt}"
        if fmt in ("tsv", "csv", "jsonl"):
            name = Path(f"{name}.gz") if gz else name
            opener = gzip.open if gz else open
            with opener(name, "wt", encoding="utf-8", newline="") as f:
                if fmt == "jsonl":
                    f.writelines(json.dumps({"text": t, "label": y}) + "\n" for t, y in part)
                else:
                    sep = "\t" if fmt == "tsv" else ","
                    f.write(f"text{sep}label\n")
                    f.writelines(f'"{t}",{y}\n' if sep == "," else f"{t}\t{y}\n" for t, y in part)
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({"text": [t for t, _ in part], "label": [y for _, y in part]})
            pq.write_table(table, name, row_group_size=50)
        elif fmt == "tfrecord":
            with tf.io.TFRecordWriter(str(name)) as writer:
                for t, y in part:
                    feature = {
                        "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[t.encode()])),
                        "label": tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[y.encode()])
                        ),
                    }
                    example = tf.train.Example(features=tf.train.Features(feature=feature))
                    writer.write(example.SerializeToString())
    return str(folder / "part-*")


def rows_of(n: int = 400, seed: int = 0) -> list[tuple[str, str]]:
    # Distinct rows (a counter), so that every row has its own place in the hash split.
    return [(f"{t} no{i}", y) for i, (t, y) in enumerate(make_reviews(n, seed))]


def load(spec: str, **kwargs) -> corpus.Loaded:
    settings = dict(seed=42, validation_size=0.1, test_size=0.1, separate_test=False, count_field=1)
    return corpus.load(spec, FIELDS, **{**settings, **kwargs})


def train_rows(loaded: corpus.Loaded) -> list[tuple[str, ...]]:
    return [row for batch in loaded.train.batches() for row in zip(*batch)]


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl", "parquet", "tfrecord"])
def test_every_shard_format_gives_the_same_rows_and_splits(tmp_path, fmt):
    rows = rows_of()
    reference = load(write_shards(tmp_path / "ref", rows, "tsv"))
    loaded = load(write_shards(tmp_path / fmt, rows, fmt))
    assert loaded.rows == len(rows)
    assert sorted(loaded.validation) == sorted(reference.validation)
    assert sorted(loaded.test) == sorted(reference.test)
    assert sorted(train_rows(loaded)) == sorted(train_rows(reference))
    assert len(loaded.train) == len(train_rows(loaded)) == loaded.counts.total()
    assert set(loaded.counts) == {"pos", "neg"}


def test_a_folder_of_shards_and_plain_files_are_specs(tmp_path):
    spec = write_shards(tmp_path / "corpus", rows_of(), "csv", gz=False)
    folder = str(Path(spec).parent)
    assert shards.is_shards_spec(folder) and shards.is_shards_spec(spec)
    assert not shards.is_shards_spec(str(Path(folder) / "part-000.csv"))  # one file: in memory
    assert load(folder).rows == 400


def test_the_hash_split_is_stable_across_reruns_workers_and_a_growing_corpus(tmp_path):
    rows = rows_of(600)
    first = load(write_shards(tmp_path / "a", rows, "tsv"))
    again = load(write_shards(tmp_path / "a", rows, "tsv"))
    assert first.validation == again.validation and first.test == again.test
    # Shards dealt differently (another worker's listing, another shard count): same split.
    regrouped = load(write_shards(tmp_path / "b", rows, "tsv", n=5))
    assert sorted(regrouped.validation) == sorted(first.validation)
    # The corpus grows by a third: every old row stays in its split.
    grown = load(write_shards(tmp_path / "c", rows + rows_of(300, seed=9), "tsv", n=4))
    old = set(rows)
    assert set(first.validation) == set(grown.validation) & old
    assert set(first.test) == set(grown.test) & old
    assert set(train_rows(first)) == set(train_rows(grown)) & old
    # Shares are about right, and another seed gives another split.
    assert 40 <= len(first.validation) <= 80 and 40 <= len(first.test) <= 80
    assert set(load(str(tmp_path / "a/part-*"), seed=7).test) != set(first.test)


def test_counts_as_split_sizes_and_max_examples(tmp_path):
    spec = write_shards(tmp_path / "s", rows_of(1000), "tsv")
    loaded = load(spec, validation_size=100, test_size=50, max_examples=300)
    assert 70 <= len(loaded.validation) <= 130 and 30 <= len(loaded.test) <= 70
    assert 250 <= len(train_rows(loaded)) <= 350
    assert len(loaded.train) == len(train_rows(loaded))


def test_held_out_splits_are_capped(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(corpus, "HOLDOUT_CAP", 20)
    loaded = load(write_shards(tmp_path / "s", rows_of(600), "tsv"), validation_size=0.2)
    assert len(loaded.validation) == 20 and len(loaded.test) == 20
    assert "kept the first 20 validation and test examples each" in capsys.readouterr().out


def test_workers_read_disjoint_shards_that_cover_the_training_split(tmp_path, capsys):
    loaded = load(write_shards(tmp_path / "s", rows_of(600), "tsv", n=4))

    def rows(dataset):
        return {tuple(v.decode() for v in row) for row in dataset.as_numpy_iterator()}

    one, two = rows(loaded.train.dataset(0, 2)), rows(loaded.train.dataset(1, 2))
    assert one and two and not one & two
    assert one | two == set(train_rows(loaded))
    out = capsys.readouterr().out
    assert "worker 0 of 2 reads its own shards: part-000.tsv.gz, part-002.tsv.gz" in out
    # Fewer shards than workers: each keeps every other example of the same stream.
    single = load(write_shards(tmp_path / "one", rows_of(600), "tsv", n=1))
    halves = [rows(single.train.dataset(i, 2)) for i in range(2)]
    assert not halves[0] & halves[1] and halves[0] | halves[1] == set(train_rows(single))


def test_count_vocabularies_in_bounded_memory_keeps_the_frequent_tokens():
    rng = random.Random(0)
    # Zipf-like head of 50 words among 5,000 singletons: pruning must not lose the head.
    head = [f"w{i}" for i in range(50)]
    texts = []
    for i in range(5000):
        words = rng.choices(head, weights=[1 / (k + 1) for k in range(50)], k=8)
        texts.append(" ".join(words + [f"rare{i}"]))
    batches = [[texts[i : i + 500]] for i in range(0, 5000, 500)]
    counted = collections.Counter(word for text in texts for word in text.split())
    exact = [w for w, _ in sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))[:40]]
    lengths: list[int] = []
    (vocabulary,), stats = text_lib.count_vocabularies(
        batches, [(0, 42, text_lib.standardize)], cap=600, lengths=lengths
    )
    assert stats["prunings"] >= 5  # the cap bit: 5,000 distinct rare words went through it
    assert vocabulary == exact
    assert len(lengths) == 5000 and set(lengths) == {9}


def test_a_ragged_row_mid_stream_names_its_shard_and_line(tmp_path):
    spec = write_shards(tmp_path / "s", rows_of(300), "tsv", gz=False)
    bad = tmp_path / "s/part-001.tsv"
    lines = bad.read_text().splitlines()
    lines[37] = lines[37] + "\textra"
    lines[60] = "no tab here"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"{bad}:38: expected 2 tab-separated fields, found 3"):
        load(spec)
    with reading.options(skip_bad_rows=2) as report:
        loaded = load(spec)
    assert report.skipped_count == 2 and loaded.rows == 298
    assert report.skipped[1].startswith(f"{bad}:61: expected 2 tab-separated fields, found 1")
    with reading.options(skip_bad_rows=1), pytest.raises(UserError, match=rf"{bad}:61: .*1 bad"):
        load(spec)


def test_a_corrupt_gzip_member_and_a_non_utf8_line_are_one_line_errors(tmp_path):
    spec = write_shards(tmp_path / "s", rows_of(3000), "tsv")
    broken = tmp_path / "s/part-002.tsv.gz"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2] + bytes(len(data) // 2))
    with pytest.raises(UserError, match=rf"{broken}: cannot read past line [\d,]+"):
        load(spec)
    spec = write_shards(tmp_path / "t", rows_of(60), "tsv", gz=False)
    latin = tmp_path / "t/part-000.tsv"
    latin.write_bytes(latin.read_bytes().replace(b"film", b"caf\xe9", 1))
    with pytest.raises(UserError, match=rf"{latin}:\d+: expected utf-8 text, found byte 0xe9"):
        load(spec)
    with reading.options(decode_errors="replace") as report:
        assert load(spec).rows == 60
    assert report.replaced == 1 and report.replaced_in == {str(latin): 1}
    with reading.options(encoding="latin-1"):
        loaded = load(spec)
    everything = loaded.validation + loaded.test + train_rows(loaded)
    assert any("café" in text for text, _ in everything)


def test_missing_columns_and_no_matching_files(tmp_path):
    spec = write_shards(tmp_path / "s", rows_of(30), "csv")
    with pytest.raises(UserError, match="expected columns review, label in .*missing review"):
        corpus.load(
            spec,
            Fields(("review", "label")),
            seed=1,
            validation_size=0.1,
            test_size=0.1,
            separate_test=False,
        )
    with pytest.raises(UserError, match="expected files matching '.*nothing-\\*.csv', found none"):
        load(str(tmp_path / "nothing-*.csv"))


def test_sentiment_trains_and_exports_on_parquet_shards(tmp_path):
    spec = write_shards(tmp_path / "corpus", rows_of(600), "parquet")
    run_dir = tmp_path / "run"
    result = cli_ok(
        "run",
        "sentiment",
        "--preset",
        "tiny",
        "--data",
        spec,
        "--set",
        "epochs=3",
        "--set",
        "learning_rate=0.01",
        "--run-dir",
        str(run_dir),
    )
    assert "read 600 rows from 3 shard(s)" in result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # The synthetic reviews are separable: a model that learned from the stream beats chance.
    assert metrics["accuracy"] >= 0.8, metrics
    prep = json.loads((run_dir / "preprocessing.json").read_text())
    assert prep["labels"] == ["neg", "pos"] and "brilliant" in prep["vocabulary"]
    assert (run_dir / "export/1/saved_model.pb").exists()


def test_streamed_translation_pairs_are_split_by_source_sentence(tmp_path):
    from lstm_recipes import recipe as recipe_lib

    translation = recipe_lib.load_recipe("translation")

    folder = tmp_path / "pairs"
    folder.mkdir()
    with gzip.open(folder / "part-0.tsv.gz", "wt") as f:
        f.writelines(f"sentence {n % 60}\tfrase {n}\n" for n in range(600))
    for split_by, shared in (("source", False), ("pair", True)):
        config = recipe_lib.resolve_config(
            translation, "tiny", [f"split_by={split_by}", "max_examples=0", "test_size=0.2"]
        )
        splits = translation.load_data(config, str(folder))
        seen = {s for columns in splits.train.batches() for s in columns[0]}
        assert any(s in seen for s, _ in splits.test) == shared


def test_translation_trains_on_tsv_shards_of_pairs(tmp_path):
    from lstm_recipes.data.dates import date_pairs

    pairs = date_pairs(1200, seed=0)
    folder = tmp_path / "pairs"
    folder.mkdir()
    for i in range(3):
        with gzip.open(folder / f"part-{i}.tsv.gz", "wt") as f:
            f.writelines(f"{s}\t{t}\n" for s, t in pairs[i::3])
    run_dir = tmp_path / "run"
    result = cli_ok(
        "train",
        "translation",
        "--preset",
        "tiny",
        "--data",
        str(folder),
        "--set",
        "max_examples=0",
        "--set",
        "validation_size=100",
        "--set",
        "test_size=100",
        "--set",
        "epochs=1",
        "--run-dir",
        str(run_dir),
    )
    assert "read 1,200 rows from 3 shard(s)" in result.output
    prep = json.loads((run_dir / "preprocessing.json").read_text())
    assert prep["target_vocabulary"][:2] == ["[START]", "[END]"]
    assert len(prep["source_vocabulary"]) > 20


def test_fitting_samples_a_large_training_split_by_hash(tmp_path, capsys):
    loaded = load(write_shards(tmp_path / "s", rows_of(1000), "tsv"))
    sample = loaded.train.sample(200)
    rows = train_rows(corpus.Loaded(sample, [], [], collections.Counter(), 0, 0.0))
    assert len(rows) == len(sample) and 200 <= len(rows) <= 210
    assert set(rows) <= set(train_rows(loaded))
    assert "fitting on a sample of" in capsys.readouterr().out
    assert loaded.train.sample(10_000) is loaded.train


def test_a_key_field_keeps_every_row_of_a_group_in_one_split(tmp_path):
    # Labels as the key: 2 groups; each group's rows must all land in one split.
    rows = [(f"review {i}", f"group{i % 7}") for i in range(700)]
    spec = write_shards(tmp_path / "s", rows, "tsv")
    loaded = corpus.load(
        spec,
        Fields(("text", "label"), key=(1,)),
        seed=3,
        validation_size=0.2,
        test_size=0.2,
        separate_test=False,
    )
    groups = {
        "train": {y for _, y in train_rows(loaded)},
        "validation": {y for _, y in loaded.validation},
        "test": {y for _, y in loaded.test},
    }
    assert sum(len(g) for g in groups.values()) == 7  # no group is in two splits
    assert len(train_rows(loaded)) % 100 == 0  # whole groups of 100 rows


def _dataset_rows(train: stream.Stream) -> list[tuple[str, ...]]:
    return sorted(tuple(v.decode() for v in row) for row in train.dataset().as_numpy_iterator())


@pytest.mark.parametrize("headerless", [False, True])
def test_tsv_shards_parse_in_tf_data_to_the_checking_pass_rows(tmp_path, headerless):
    rows = rows_of(500)
    # Edge cases of the Python reader: a byte order mark, CRLF, blank lines, spaces around
    # fields, a non-breaking space (kept: it is not ASCII whitespace), a blank field.
    rows[1] = ("  padded text \u00a0", "pos")
    rows[2] = ("crlf line", "neg")
    rows[3] = ("", "pos")
    folder = tmp_path / "s"
    folder.mkdir()
    for k in range(3):
        part = rows[k::3]
        body = "".join(f"{t}\t{y}\r\n" if "crlf" in t else f"{t}\t{y}\n\n" for t, y in part)
        text = ("\ufeff" if k == 0 else "") + ("" if headerless else "text\tlabel\n") + body
        opener = gzip.open if k != 1 else open
        with opener(folder / f"part-{k}.tsv{'.gz' if k != 1 else ''}", "wt", encoding="utf-8") as f:
            f.write(text)
    fields = Fields(("text", "label"), (0, 1), skip_blank=True) if headerless else FIELDS
    loaded = corpus.load(
        str(folder / "part-*"),
        fields,
        seed=7,
        validation_size=0.1,
        test_size=0.1,
        separate_test=False,
        max_examples=300,
    )
    train = loaded.train
    assert train.native(train.files)  # every shard is clean UTF-8 TSV
    python_rows = sorted(train_rows(loaded))
    assert len(python_rows) == len(train) > 0
    assert _dataset_rows(train) == python_rows
    # The same rows as the generator path: the hash and the bins agree, not just the count.
    assert _dataset_rows(dataclasses.replace(train, clean=frozenset())) == python_rows


def test_a_shard_with_a_skipped_row_is_read_by_its_python_reader(tmp_path):
    spec = write_shards(tmp_path / "s", rows_of(300), "tsv", gz=False)
    broken = tmp_path / "s" / "part-001.tsv"
    broken.write_text(broken.read_text() + "one\ttoo\tmany\n")
    with reading.options(skip_bad_rows=1):
        loaded = load(spec)
    train = loaded.train
    assert str(broken) not in train.clean and not train.native(train.files)
    assert _dataset_rows(train) == sorted(train_rows(loaded))
    assert all(len(row) == 2 for row in _dataset_rows(train))
