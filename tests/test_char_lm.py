"""char_lm: step-wise sampling equals the full-sequence model, export round trip, reproducibility."""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import REPO, cli_ok
from serving_edges import run_edge_inputs

from lstm_recipes import decoding
from lstm_recipes import recipe as recipe_lib
from lstm_recipes.cli import main
from lstm_recipes.data.chars import CharCodec

# Its tests share a module fixture (a trained run): one pytest-xdist worker runs them all.
pytestmark = pytest.mark.xdist_group("char_lm")

char_lm = recipe_lib.load_recipe("char_lm")


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("char")
    text = root / "poem.txt"
    text.write_text("the cat sat on the mat. the dog sat on the log.\n" * 200, encoding="utf-8")
    run_dir = root / "run"
    cli_ok(
        "run",
        "char_lm",
        "--preset",
        "tiny",
        "--data",
        str(text),
        "--run-dir",
        str(run_dir),
        "--set",
        "epochs=3",
        "--set",
        "max_examples=0",
        "--set",
        "dynamic_lr=0.3",
    )
    return run_dir


def test_codec_handles_unseen_characters_and_bytes():
    codec = CharCodec("chars", list("abc"))
    np.testing.assert_array_equal(codec.encode("abz"), [1, 2, 0])
    ids = codec.ids(codec.split(tf.constant(["ab", "zé"])))
    assert ids.to_list() == [[1, 2], [0, 0]]
    bytes_codec = CharCodec("bytes")
    np.testing.assert_array_equal(bytes_codec.encode("é"), [0xC3 + 1, 0xA9 + 1])
    ids = bytes_codec.ids(bytes_codec.split(tf.constant(["é"])))
    assert ids.to_list() == [[0xC3 + 1, 0xA9 + 1]]
    assert bytes_codec.text(tf.constant([[0xC3 + 1, 0xA9 + 1]])).numpy()[0].decode() == "é"


def test_stepwise_generation_matches_the_full_sequence_model():
    config = char_lm.PRESETS["tiny"]
    prep = {"unit": "chars", "vocabulary": list("abcdefgh")}
    model = char_lm.build_model(config, prep)
    generator = char_lm.Generator(config, model, prep)
    # Greedy generation one step at a time must equal argmax of the whole-sequence model.
    text = generator.generate(tf.constant("abc"), 6, 0.0, 0).numpy().decode()
    ids = CharCodec("chars", prep["vocabulary"]).encode("\n" + text)
    ids[0] = CharCodec("chars", prep["vocabulary"]).index.get("\n", 0)
    logits = model(ids[None, :-1]).numpy()[0]
    assert text.startswith("abc") and len(text) == 9
    np.testing.assert_array_equal(logits.argmax(-1)[3:], ids[4:])


def test_top_k_one_is_greedy():
    logits = tf.constant([[0.1, 2.0, 0.3], [1.0, 0.0, 5.0]])
    for seed in range(5):
        picked = decoding.pick(logits, tf.constant(1.5), tf.constant(1), seed, 0)
        assert picked.numpy().tolist() == [1, 2]


def test_run_writes_metrics_and_sample(char_run):
    metrics = json.loads((char_run / "metrics.json").read_text())
    assert metrics["bits_per_char"] == pytest.approx(metrics["nats_per_char"] / np.log(2))
    assert (char_run / "sample.txt").read_text(encoding="utf-8") == metrics["sample"]
    # A repetitive text is easy: well under the 4.6 bits of a uniform guess over its characters.
    assert metrics["bits_per_char"] < 3.5
    # The test text read as one stream, then adapting to it: a text that repeats is learned.
    assert metrics["dynamic_nats_per_char"] < metrics["stream_nats_per_char"]
    assert metrics["dynamic_bits_per_char"] == pytest.approx(
        metrics["dynamic_nats_per_char"] / np.log(2)
    )


REPLAY = r"""
import json, sys
import tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
gen = m.signatures["generate"]
out = {}
for prompt, seed in [("the cat", 3), ("", 3), ("ZZ ✨", 5)]:
    t = gen(prompt=tf.constant(prompt), num_chars=tf.constant(40), temperature=tf.constant(1.0),
            seed=tf.constant(seed))["text"].numpy().decode("utf-8")
    out[f"{prompt}|{seed}"] = t
score = m.signatures["serving_default"](text=tf.constant(["the cat sat", "", "qqqq✨"]))
out["bits"] = score["bits_per_char"].numpy().tolist()
assert "lstm_recipes" not in sys.modules
print(json.dumps(out))
"""


def test_export_matches_the_in_process_sampler_and_is_reproducible(char_run):
    path = str(char_run / "export" / "1")
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-I", "-c", REPLAY, path],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]  # the same seed gives the same text
    assert runs[0]["|3"] != "" and runs[0]["the cat|3"].startswith("the cat")
    assert runs[0]["ZZ ✨|5"].startswith("ZZ ✨")
    assert runs[0]["bits"][1] == 0.0 and runs[0]["bits"][2] > runs[0]["bits"][0]

    from lstm_recipes import rundir, training

    module, config, _ = rundir.load_run(char_run)
    prep = json.loads((char_run / "preprocessing.json").read_text())
    model = training.load_model(module, config, prep, char_run)
    generator = char_lm.Generator(config, model, prep)
    here = tf.function(generator.generate)(tf.constant("the cat"), 40, 1.0, 3).numpy().decode()
    assert here == runs[0]["the cat|3"]


def test_predict_prompt(char_run):
    result = CliRunner().invoke(
        main, ["predict", str(char_run), "--prompt", "the ", "--chars", "30", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("the ") and len(result.output.rstrip("\n")) == 34


def test_too_short_text_is_a_clear_error(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("hello", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        [
            "run",
            "char_lm",
            "--preset",
            "tiny",
            "--data",
            str(path),
            "--run-dir",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 2 and "expected at least 66 training" in result.output


def test_test_metrics_come_from_text_that_did_not_pick_the_checkpoint(tmp_path):
    # Without --test-data the test part is carved after the validation part; with it, the
    # validation part is the text's end and the test text is the file given.
    path = tmp_path / "t.txt"
    path.write_text("".join(f"line {i}. " for i in range(2000)), encoding="utf-8")
    config = recipe_lib.resolve_config(char_lm, "tiny", ["max_examples=0", "test_size=0.1"])
    splits = char_lm.load_data(config, str(path))
    text = path.read_text(encoding="utf-8")
    assert splits.train + splits.validation + splits.test == text
    assert splits.test and splits.test not in splits.validation
    assert len(splits.test) == round(0.1 * len(text))
    other = tmp_path / "other.txt"
    other.write_text("another text. " * 100, encoding="utf-8")
    given = char_lm.load_data(config, str(path), str(other))
    assert given.test == other.read_text(encoding="utf-8")
    assert given.train + given.validation == text


def test_stateful_training_runs(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefgh " * 3000, encoding="utf-8")
    cli_ok(
        "train",
        "char_lm",
        "--preset",
        "tiny",
        "--data",
        str(path),
        "--set",
        "stateful=true",
        "--run-dir",
        str(tmp_path / "run"),
    )


def test_time_budget_and_lr_decay(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefgh " * 3000, encoding="utf-8")
    run_dir = tmp_path / "run"
    result = cli_ok(
        "train",
        "char_lm",
        "--preset",
        "tiny",
        "--data",
        str(path),
        "--set",
        "epochs=3",
        "--set",
        "lr_decay=0.5",
        "--run-dir",
        str(run_dir),
    )
    rates = [float(r["learning_rate"]) for r in csv.DictReader((run_dir / "history.csv").open())]
    assert rates == pytest.approx([3e-3, 1.5e-3, 7.5e-4])

    run_dir = tmp_path / "budget"
    result = cli_ok(
        "train",
        "char_lm",
        "--preset",
        "tiny",
        "--data",
        str(path),
        "--set",
        "epochs=50",
        "--set",
        "max_minutes=0.0001",
        "--run-dir",
        str(run_dir),
    )
    assert "time budget of 0.0001 minutes reached" in result.output
    assert len(list(csv.DictReader((run_dir / "history.csv").open()))) == 1


def test_data_forms_text_gzip_folder_and_tfds(tmp_path):
    import gzip

    config = recipe_lib.resolve_config(char_lm, "tiny", ["max_examples=0"])
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("first part. " * 50, encoding="utf-8")
    with gzip.open(tmp_path / "texts" / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write("second part. " * 50)
    splits = char_lm.load_data(config, str(tmp_path / "texts"))
    whole = splits.train + splits.validation + splits.test
    assert whole.startswith("first part.") and whole.endswith("second part. ")
    assert len(splits.validation) == len(splits.test) == round(0.05 * len(whole))

    tfds = pytest.importorskip("tensorflow_datasets")
    short = recipe_lib.resolve_config(char_lm, "tiny", ["seq_length=4"])
    with tfds.testing.mock_data(num_examples=3):  # three short random texts
        splits = char_lm.load_data(short, "tfds:tiny_shakespeare")
    assert len(splits.train) > 0


def test_bytes_unit_end_to_end(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("naïve café ünïcödé " * 300, encoding="utf-8")
    run_dir = tmp_path / "run"
    result = cli_ok(
        "run",
        "char_lm",
        "--preset",
        "tiny",
        "--data",
        str(path),
        "--set",
        "unit=bytes",
        "--run-dir",
        str(run_dir),
    )
    assert json.loads((run_dir / "preprocessing.json").read_text())["unit"] == "bytes"
    result = CliRunner().invoke(main, ["predict", str(run_dir), "--prompt", "naï", "--chars", "10"])
    assert result.exit_code == 0 and result.output.startswith("naï")


def test_served_char_lm_edge_inputs(char_run):
    results = run_edge_inputs(char_run / "export" / "1")
    assert {r["signature"] for r in results} == {"serving_default", "generate", "step"}


# ----------------------------------------------------------------------------- streamed shards

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "dog",
    "log",
    "ran",
    "far",
    "away",
    "home",
    "naïve",
    "café",
    "🎭",
]


def text_shards(folder, files: int = 4, lines: int = 300, seed: int = 0):
    """Numbered lines of words dealt into .txt.gz files; returns their glob and every line."""
    import gzip
    import random

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    every = []
    for i in range(files):
        part = [f"{folder.name} {i}:{n} " + " ".join(rng.choices(WORDS, k=6)) for n in range(lines)]
        with gzip.open(folder / f"part-{i:03d}.txt.gz", "wt", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in part)
        every += part
    return str(folder / "part-*.txt.gz"), every


def train_blocks(splits) -> list[str]:
    return [block for (column,) in splits.train.batches() for block in column]


@pytest.fixture
def small_blocks(monkeypatch):
    from lstm_recipes.data import charstream

    # Blocks of 600 characters: a corpus of a few hundred KB has about a hundred of them.
    monkeypatch.setattr(charstream, "BLOCK_CHARS", 600)
    return 600


def test_text_shards_give_disjoint_blocks_that_cover_the_corpus_the_same_on_a_rerun(
    tmp_path, small_blocks
):
    config = recipe_lib.resolve_config(
        char_lm, "tiny", ["max_examples=0", "validation_size=0.1", "test_size=0.1"]
    )
    spec, lines = text_shards(tmp_path / "corpus")
    splits = char_lm.load_data(config, spec)
    blocks = train_blocks(splits)
    assert all(len(b) <= small_blocks and b.endswith("\n") for b in blocks)  # cut at line ends
    train = [line for b in blocks for line in b.splitlines()]
    validation, test = splits.validation.splitlines(), splits.test.splitlines()
    assert validation and test and len(splits.train) == len(blocks)
    assert not set(train) & set(validation) and not set(train) & set(test)
    assert not set(validation) & set(test)
    assert sorted(train + validation + test) == sorted(lines)  # each line exactly once
    again = char_lm.load_data(config, spec)
    assert (again.validation, again.test, train_blocks(again)) == (
        splits.validation,
        splits.test,
        blocks,
    )
    # A new file joins the corpus: every old block keeps its split.
    text_shards(tmp_path / "corpus", files=5, lines=300)
    grown = char_lm.load_data(config, spec)
    grown_train = {line for b in train_blocks(grown) for line in b.splitlines()}
    assert set(grown.validation.splitlines()) & set(lines) == set(validation)
    assert set(grown.test.splitlines()) & set(lines) == set(test)
    assert grown_train & set(lines) == set(train)


def test_max_examples_on_shards_keeps_about_that_many_characters_in_whole_blocks(
    tmp_path, small_blocks
):
    config = recipe_lib.resolve_config(char_lm, "tiny", ["max_examples=6000"])
    splits = char_lm.load_data(config, text_shards(tmp_path / "corpus")[0])
    blocks = train_blocks(splits)
    assert len(blocks) == len(splits.train) and 10 <= len(blocks) <= 12  # 6,000 / 600
    assert sum(map(len, blocks)) <= 12 * small_blocks


@pytest.mark.parametrize("unit", ["chars", "bytes"])
def test_streamed_batches_are_the_in_memory_encoding_of_each_block(tmp_path, small_blocks, unit):
    config = recipe_lib.resolve_config(char_lm, "tiny", ["max_examples=0", f"unit={unit}"])
    splits = char_lm.load_data(config, text_shards(tmp_path / "corpus")[0])
    blocks = train_blocks(splits)
    prep = char_lm.fit_preprocessing(config, splits.train)
    if unit == "chars":
        assert prep["vocabulary"] == sorted(set("".join(blocks)))
        # A character training never saw maps to id 0 in both paths, as CharCodec does.
        prep["vocabulary"].remove("🎭")
    streamed = [
        (tuple(x), tuple(y))
        for xs, ys in char_lm.batches(config, prep, splits.train, training=True)
        for x, y in zip(xs.numpy().tolist(), ys.numpy().tolist())
    ]
    in_memory = [
        (tuple(x), tuple(y))
        for block in blocks
        for xs, ys in char_lm.batches(config, prep, block, training=False)
        for x, y in zip(xs.numpy().tolist(), ys.numpy().tolist())
    ]
    assert len(streamed) > 100 and sorted(streamed) == sorted(in_memory)
    assert any(0 in x for x, _ in streamed) == (unit == "chars")
    assert streamed != in_memory  # shuffled


def test_validation_data_is_a_plain_file_for_a_file_and_for_shards(tmp_path, small_blocks):
    config = recipe_lib.resolve_config(char_lm, "tiny", ["max_examples=0", "test_size=0.1"])
    path, held = tmp_path / "t.txt", tmp_path / "held.txt"
    path.write_text("".join(f"line {i}. " for i in range(2000)), encoding="utf-8")
    held.write_text("held-out text. " * 40, encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    splits = char_lm.load_data(config, str(path), validation_data=str(held))
    assert splits.validation == held.read_text(encoding="utf-8")
    # The in-order cut keeps what would have been validation in training.
    assert splits.train + splits.test == text and len(splits.test) == round(0.1 * len(text))

    spec, lines = text_shards(tmp_path / "corpus")
    streamed = char_lm.load_data(config, spec, validation_data=str(held))
    assert streamed.validation == held.read_text(encoding="utf-8")
    train = [line for b in train_blocks(streamed) for line in b.splitlines()]
    assert sorted(train + streamed.test.splitlines()) == sorted(lines)

    # And a glob as the validation text of a file: its lines in file order.
    from_glob = char_lm.load_data(config, str(path), validation_data=spec)
    assert from_glob.validation == "".join(line + "\n" for line in lines)


def test_stateful_training_on_shards_is_refused_in_one_line(tmp_path, small_blocks):
    spec, _ = text_shards(tmp_path / "corpus")
    result = CliRunner().invoke(
        main,
        ["train", "char_lm", "--preset", "tiny", "--data", spec, "--set", "stateful=true"],
    )
    assert result.exit_code == 2 and "expected the text in order for stateful=true" in result.output
    assert "give one file or a folder" in result.output and "Traceback" not in result.output


def test_a_non_utf8_line_in_a_text_shard_names_its_file_and_line_and_replace_counts_it(
    tmp_path, small_blocks
):
    import gzip

    from lstm_recipes.data import reading

    spec, _ = text_shards(tmp_path / "corpus")
    bad = tmp_path / "corpus" / "part-002.txt.gz"
    lines = gzip.decompress(bad.read_bytes()).split(b"\n")
    lines[122] = lines[122].replace(b"corpus", b"caf\xe9", 1)
    bad.write_bytes(gzip.compress(b"\n".join(lines)))
    args = ["run", "char_lm", "--preset", "tiny", "--data", spec, "--run-dir", str(tmp_path / "r")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    message = [line for line in result.output.splitlines() if "0xe9" in line]
    assert len(message) == 1 and f"{bad}:123: expected utf-8 text, found byte 0xe9" in message[0]
    # --set decode_errors=replace: the run reads its data with these options.
    config = recipe_lib.resolve_config(char_lm, "tiny", ["decode_errors=replace", "max_examples=0"])
    with reading.options_of(config) as report:
        splits = char_lm.load_data(config, spec)
    assert report.replaced == 1 and report.replaced_in == {str(bad): 1}
    everything = "".join(train_blocks(splits)) + splits.validation + splits.test
    assert everything.count("caf\ufffd 2:122 ") == 1


def test_char_lm_trains_evaluates_and_exports_on_a_glob_of_text_shards(tmp_path):
    # Real block size (16,384 characters): about 50 blocks, 5 each held out.
    spec, _ = text_shards(tmp_path / "corpus", files=3, lines=6000)
    run_dir = tmp_path / "run"
    result = cli_ok(
        "run",
        "char_lm",
        "--preset",
        "tiny",
        "--data",
        spec,
        "--set",
        "validation_size=0.1",
        "--set",
        "test_size=0.1",
        "--run-dir",
        str(run_dir),
    )
    assert "train: blocks of up to 16,384 characters, streamed" in result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert np.isfinite(metrics["bits_per_char"]) and metrics["characters"] > 16_384
    assert len(list(csv.DictReader((run_dir / "history.csv").open()))) == 1
    meta = json.loads((run_dir / "export/1/assets.extra/lstm_recipes.json").read_text())
    assert set(meta["signatures"]) == {"generate", "serving_default", "step"}
    prep = json.loads((run_dir / "preprocessing.json").read_text())
    assert "🎭" in prep["vocabulary"]


@pytest.mark.parametrize("fmt", ["parquet", "tfrecord"])
def test_parquet_and_tfrecord_documents_stream_as_the_same_blocks_as_text_files(
    tmp_path, small_blocks, fmt
):
    spec, lines = text_shards(tmp_path / "corpus", files=2, lines=200)
    documents = [lines[:200], lines[200:]]  # one document per text file, its lines kept
    path = tmp_path / f"docs.{fmt}"
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"body": ["\n".join(d) for d in documents]}), path)
    else:
        with tf.io.TFRecordWriter(str(path)) as writer:
            for d in documents:
                text = tf.train.BytesList(value=["\n".join(d).encode()])
                example = tf.train.Example(
                    features=tf.train.Features(feature={"body": tf.train.Feature(bytes_list=text)})
                )
                writer.write(example.SerializeToString())
    config = recipe_lib.resolve_config(char_lm, "tiny", ["max_examples=0", "text_column=body"])
    from_text = char_lm.load_data(config, spec)
    from_records = char_lm.load_data(config, str(path))
    # A document is read as the lines of a text file: the same blocks, hence the same split.
    assert sorted(train_blocks(from_records)) == sorted(train_blocks(from_text))
    assert from_records.validation.splitlines() == from_text.validation.splitlines()
    assert from_records.test.splitlines() == from_text.test.splitlines()


def test_inspect_reads_a_file_with_a_user_probe_and_refuses_bad_input_untouched(char_run, tmp_path):
    from click.testing import CliRunner

    from lstm_recipes.cli import main

    out = tmp_path / "inspect"
    text = tmp_path / "text.txt"
    text.write_text('the cat said "the dog sat" on the mat.\n' * 6, encoding="utf-8")
    args = ["inspect", str(char_run), "--file", str(text), "--out", str(out), "--cells", "3"]
    result = CliRunner().invoke(main, [*args, "--probe", "cat=cat|dog", "--layer", "1"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = (out / "probes.csv").read_text().splitlines()
    assert {row.split(",")[0] for row in rows[1:]} == {
        "inside quotes",
        "position in the line",
        "start of a word",
        "cat",
    }
    assert all(row.split(",")[1] == "1" for row in rows[1:]), "--layer 1 ranks layer 1 only"
    page = (out / "inspect.html").read_text()
    assert "said &quot;the dog" not in page and ">&quot;</span>" in page, "each step a span"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    base = ["inspect", str(char_run), "--out", str(out)]
    for extra, expected in [
        (["--probe", "x=(", "words"], "expected --probe NAME=REGEX with a valid regex"),
        (["--layer", "9", "words"], "expected --layer between 1 and"),
        (["  "], "expected text to inspect, found an empty input"),
    ]:
        result = CliRunner().invoke(main, [*base, *extra])
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"Error: {expected}"), result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "earlier output intact"


def test_dynamic_eval_benchmark_picks_the_rate_on_validation_and_reports_its_test(char_run):
    script = REPO / "benchmarks" / "dynamic_eval.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--run", str(char_run), "--rates", "0.3,3.0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(
        r"^rate: ([\d.]+) \| validation: ([\d.]+) .*test: ([\d.]+) \|", proc.stdout, re.M
    )
    table = {float(rate): (float(val), float(test)) for rate, val, test in rows}
    assert set(table) == {0.0, 0.3, 3.0}, proc.stdout
    chosen = re.search(
        r"chosen rate \(lowest validation\): ([\d.]+) \| validation: [\d.]+ \| test: ([\d.]+)",
        proc.stdout,
    )
    rate = float(chosen.group(1))
    assert table[rate][0] == min(val for val, _ in table.values())
    assert float(chosen.group(2)) == table[rate][1]
