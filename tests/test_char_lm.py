"""char_lm: step-wise sampling equals the full-sequence model, export round trip, reproducibility."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import cli_ok
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
    assert {r["signature"] for r in results} == {"serving_default", "generate"}
