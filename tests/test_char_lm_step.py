"""char_lm's ``step`` signature: character by character, the SavedModel and the LiteRT file give
the full-sequence model's next-character distribution, and ``metadata.json`` encodes as the
codec does."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import LITERT_APP, cli_ok, fresh_python, readme_block

from lstm_recipes import cells
from lstm_recipes import recipe as recipe_lib
from lstm_recipes.data.chars import CharCodec

# Its tests share a module fixture (a trained run and its exports): one xdist worker runs them.
pytestmark = pytest.mark.xdist_group("char_lm_step")

char_lm = recipe_lib.load_recipe("char_lm")

# "?", "z" and "é" are not in the training text: they are unseen characters (id 0).
TEXT = "the dog sat on the mat? zé"

# What an app's Python does: the LiteRT interpreter and metadata.json only, TensorFlow blocked.
APP = (
    LITERT_APP
    + r"""
meta = json.load(open("metadata.json", encoding="utf-8"))
exec(sys.argv[3])  # the README's char_ids
ids = [meta["start_id"]] + char_ids(sys.argv[2], meta)
runner = Interpreter(model_path=sys.argv[1]).get_signature_runner("step")
shape = (1, meta["layers"] * meta["num_states"], meta["units"])
states, probabilities = np.zeros(shape, np.float32), []
for i in ids:
    out = runner(char=np.asarray([i], np.int32), states=states)
    states = out["states"]
    probabilities.append(out["probabilities"][0].tolist())
print(json.dumps({"ids": ids, "probabilities": probabilities}))
"""
)


@pytest.fixture(scope="module")
def step_run(tmp_path_factory):
    """A tiny two-layer run, exported as a SavedModel (version 1) and a LiteRT file."""
    root = tmp_path_factory.mktemp("char_step")
    text = root / "poem.txt"
    text.write_text("the cat sat on the mat. the dog sat on the log.\n" * 100, encoding="utf-8")
    run_dir = root / "run"
    cli_ok("train", "char_lm", "--preset", "tiny", "--data", str(text), "--set", "layers=2",
           "--run-dir", str(run_dir))  # fmt: skip
    cli_ok("export", str(run_dir))
    litert_dir = Path(cli_ok("export", str(run_dir), "--format", "litert").output.split()[-1])
    from lstm_recipes.run import Run

    run = Run.reopen(run_dir)
    return run, run_dir / "export" / "1", litert_dir


def full_sequence(run, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Ids of "\\n" + each text (as long as each other) and the model's softmax at every step."""
    codec = CharCodec(run.prep["unit"], run.prep["vocabulary"])
    ids = np.stack([codec.encode("\n" + text) for text in texts])
    return ids, tf.nn.softmax(run.model(ids, training=False)).numpy()


def test_the_saved_models_step_equals_the_full_sequence_model(step_run):
    run, saved_dir, _ = step_run
    ids, want = full_sequence(run, [TEXT, TEXT[::-1]])
    step = tf.saved_model.load(str(saved_dir)).signatures["step"]
    n = cells.num_states(run.config.cell)
    states = tf.zeros([2, run.config.layers * n, run.config.units])
    for t in range(ids.shape[1]):
        out = step(char=tf.constant(ids[:, t]), states=states)
        states = out["states"]
        np.testing.assert_allclose(out["probabilities"].numpy(), want[:, t], atol=1e-5)


def test_the_litert_step_in_an_app_without_tensorflow_equals_the_full_sequence_model(step_run):
    run, _, litert_dir = step_run
    ids, want = full_sequence(run, [TEXT])
    tokenizer = readme_block("char_ids")
    got = fresh_python(APP, "model.tflite", TEXT, tokenizer, cwd=litert_dir)
    assert got["ids"] == ids[0].tolist(), "README's char_ids encodes as the codec does"
    np.testing.assert_allclose(np.asarray(got["probabilities"]), want[0], atol=1e-4)


def test_the_readme_sampling_loop_runs_in_an_app_without_tensorflow(step_run):
    _, _, litert_dir = step_run
    app = APP.split("exec(")[0] + "folder = sys.argv[1]\nexec(sys.argv[2])\n"
    app += "print(json.dumps({'text': text}))\n"
    got = fresh_python(app, str(litert_dir), readme_block("char_ids", 1), cwd=litert_dir)
    assert got["text"].startswith("ROMEO:") and len(got["text"]) == 6 + 200, got


def test_litert_metadata_names_the_ids_the_states_and_the_start(step_run):
    run, _, litert_dir = step_run
    meta = json.loads((litert_dir / "metadata.json").read_text(encoding="utf-8"))
    codec = CharCodec(run.prep["unit"], run.prep["vocabulary"])
    assert meta["streaming"] == "step" and meta["recipe"] == "char_lm"
    assert (meta["layers"], meta["units"], meta["num_states"]) == (2, run.config.units, 2)
    assert meta["vocabulary_size"] == codec.size and meta["padding_id"] is None
    # The start id is what `generate` feeds first: the TensorFlow codec's id of "\n".
    assert meta["start_id"] == int(codec.ids(tf.constant(["\n"]))[0]) == 1
    index = {c: i for i, c in enumerate(meta["vocabulary"], 1)}
    app = [index.get(c, meta["unknown_id"]) for c in TEXT]
    assert app == codec.ids(codec.split(tf.constant(TEXT))).numpy().tolist()
    assert app.count(0) == 3  # "?", "z", "é"
    decoded = "".join(meta["vocabulary"][i - 1] for i in app if i)
    assert decoded == "".join(c for c in TEXT if c in index)


def test_bytes_metadata_maps_text_to_the_codecs_ids_and_the_start_to_the_newline_byte():
    config = dataclasses.replace(char_lm.PRESETS["tiny"], unit="bytes", cell="gru")
    prep = char_lm.fit_preprocessing(config, "unused")
    portable = char_lm.portable(config, char_lm.build_model(config, prep), prep)
    meta = json.loads(json.dumps(portable.metadata))  # JSON as written
    codec = CharCodec("bytes")
    text = "naïve 🎭"
    assert [b + 1 for b in text.encode("utf-8")] == codec.encode(text).tolist()
    assert meta["unit"] == "bytes" and meta["start_id"] == ord("\n") + 1
    assert meta["unknown_id"] is None and meta["vocabulary_size"] == 257
    assert meta["num_states"] == 1 and portable.samples["step"]["char"] == [ord("\n") + 1]


def test_a_stateful_model_steps_through_its_batch_free_twin():
    config = dataclasses.replace(char_lm.PRESETS["tiny"], stateful=True, batch_size=4)
    prep = {"unit": "chars", "vocabulary": list("\nabc ")}
    model = char_lm.build_model(config, prep)
    step = char_lm.serving(config, model, prep).endpoints["step"]
    states = tf.zeros([1, 2, config.units])
    out = step(char=tf.constant([1]), states=states)
    assert out["probabilities"].shape == (1, 6) and out["states"].shape == (1, 2, config.units)


def test_dynamic_quantization_exports_a_verified_step(step_run):
    run, _, _ = step_run
    result = cli_ok("export", str(run.run_dir), "--format", "litert", "--quantize", "dynamic")
    meta = json.loads(Path(result.output.split()[-1], "metadata.json").read_text())
    assert meta["quantize"] == "dynamic" and meta["streaming"] == "step"
