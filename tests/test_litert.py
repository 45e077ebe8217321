"""LiteRT export: conversion, the fresh-process interpreter, atomic versions, refusals."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import LITERT_APP, cli_ok, fresh_python, readme_block

from lstm_recipes import litert
from lstm_recipes.cli import main
from lstm_recipes.errors import UserError

pytestmark = pytest.mark.xdist_group("litert")

# What an app's Python does: the LiteRT interpreter only, TensorFlow blocked.
APP = (
    LITERT_APP
    + r"""
runner = Interpreter(model_path=sys.argv[1]).get_signature_runner("serving_default")
frames = np.asarray(json.loads(sys.argv[2]), np.float32)
out = runner(frames=frames)
print(json.dumps({"probabilities": out["probabilities"].tolist(),
                  "labels": [b.decode() for b in out["labels"][0]]}))
"""
)


@pytest.fixture(scope="module")
def frames_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("litert") / "run"
    cli_ok("train", "frame_labeling", "--preset", "tiny", "--run-dir", str(run_dir))
    return run_dir


def test_litert_export_equals_the_keras_model_in_a_litert_only_process(frames_run):
    result = cli_ok("export", str(frames_run), "--format", "tflite")
    version = frames_run / "export" / "litert" / result.output.split("litert/")[-1].strip()
    meta = json.loads((version / litert.METADATA_FILE).read_text())
    assert meta["quantize"] == "none" and meta["recipe"] == "frame_labeling"
    assert meta["streaming"] == "no (bidirectional)"  # the tiny preset's BiLSTM cannot step
    from lstm_recipes.run import Run

    run = Run.reopen(frames_run)
    frames = np.random.default_rng(3).normal(size=(1, 50, run.prep["features"]))
    frames = frames.astype("float32")
    frames[0, -4:] = np.nan  # padding rows
    got = fresh_python(
        APP, str(version / litert.MODEL_FILE), json.dumps(frames.tolist()), cwd=version
    )
    logits = run.model({"frames": tf.constant(frames)}, training=False)[..., 1:]
    want = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(np.asarray(got["probabilities"]), want, atol=1e-4)
    names = [meta["labels"][i] for i in want[0].argmax(-1)]
    assert got["labels"] == names


def test_dynamic_and_float16_quantization_convert_and_are_versioned(frames_run):
    before = {p.name for p in (frames_run / "export" / "litert").glob("*")}
    for quantize in ("dynamic", "float16"):
        cli_ok("export", str(frames_run), "--format", "litert", "--quantize", quantize)
    after = {p.name for p in (frames_run / "export" / "litert").glob("*")}
    new = sorted(after - before, key=int)
    assert len(new) == 2, f"expected two new versions, found {sorted(after)}"
    kinds = [
        json.loads((frames_run / "export" / "litert" / v / "metadata.json").read_text())["quantize"]
        for v in new
    ]
    assert kinds == ["dynamic", "float16"]


def test_a_failed_verification_leaves_no_version_and_earlier_ones_intact(frames_run, monkeypatch):
    root = frames_run / "export" / "litert"
    cli_ok("export", str(frames_run), "--format", "litert")
    before = {p.name: (p / "model.tflite").read_bytes() for p in root.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("the LiteRT model failed to load or run in a fresh process: test")

    monkeypatch.setattr(litert, "verify_in_fresh_process", broken)
    result = CliRunner().invoke(main, ["export", str(frames_run), "--format", "litert"])
    assert result.exit_code != 0
    after = {p.name: (p / "model.tflite").read_bytes() for p in root.iterdir()}
    assert after == before, "a failed export changed the versions folder"


def test_an_op_without_a_litert_kernel_is_refused_in_one_line_naming_it():
    @tf.function(input_signature=[tf.TensorSpec([1], tf.string, name="text")])
    def parse(text):
        return {"number": tf.strings.to_number(text)}

    portable = litert.Portable({"serving_default": parse}, {"serving_default": {"text": ["1"]}})
    with pytest.raises(UserError, match="StringToNumber") as caught:
        litert.convert(portable)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--quantize", "int8"], "int8 does not convert"),
        (["--quantize", "dynamic", "--format", "savedmodel"], "expected --quantize with"),
    ],
)
def test_export_option_errors_exit_2_in_one_line(frames_run, args, expected):
    root = frames_run / "export"
    before = sorted(os.listdir(root)) if root.exists() else []
    extra = [] if "--format" in args else ["--format", "litert"]
    result = CliRunner().invoke(main, ["export", str(frames_run), *extra, *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    after = sorted(os.listdir(root)) if root.exists() else []
    assert after == before


def test_a_causal_models_step_signature_equals_the_full_sequence_in_both_exports(tmp_path):
    run_dir = tmp_path / "run"
    cli_ok("train", "frame_labeling", "--preset", "tiny", "--set", "bidirectional=false",
           "--set", "layers=2", "--run-dir", str(run_dir))  # fmt: skip
    cli_ok("export", str(run_dir))
    version = cli_ok("export", str(run_dir), "--format", "litert").output.split()[-1]
    from lstm_recipes.run import Run

    run = Run.reopen(run_dir)
    frames = np.random.default_rng(5).normal(size=(1, 30, run.prep["features"]))
    frames = frames.astype("float32")
    logits = run.model({"frames": tf.constant(frames)}, training=False)[..., 1:]
    want = tf.nn.softmax(logits).numpy()[0]
    saved = tf.saved_model.load(str(run_dir / "export" / "1")).signatures["step"]
    from ai_edge_litert.interpreter import Interpreter

    meta = json.loads(Path(version, "metadata.json").read_text())
    assert (meta["layers"], meta["num_states"], meta["units"]) == (2, 2, run.config.units)
    interpreter = Interpreter(model_path=f"{version}/model.tflite")
    assert set(interpreter.get_signature_list()) == {"serving_default", "step"}
    device = interpreter.get_signature_runner("step")
    states = np.zeros((1, 2 * 2, run.config.units), np.float32)
    lite_states = states
    for t in range(frames.shape[1]):
        out = saved(frame=tf.constant(frames[:, t]), states=tf.constant(states))
        states = out["states"].numpy()
        np.testing.assert_allclose(out["probabilities"].numpy()[0], want[t], atol=1e-5)
        lite = device(frame=frames[:, t], states=lite_states)
        lite_states = lite["states"]
        np.testing.assert_allclose(lite["probabilities"][0], want[t], atol=1e-4)


# The app's side of sentiment: README's reference tokenizer, vocabulary.txt, LiteRT only.
TEXT_APP = (
    LITERT_APP
    + r"""
folder = sys.argv[1]
meta = json.load(open(f"{folder}/metadata.json"))
exec(sys.argv[2])  # the README's example: its tokenizer, and a first call
vocabulary = open(f"{folder}/vocabulary.txt", encoding="utf-8").read().splitlines()
classify = Interpreter(model_path=f"{folder}/model.tflite").get_signature_runner()
out = []
for text in json.loads(sys.argv[3]):
    ids = sentiment_ids(text, vocabulary, meta["tokenizer"]["max_length"])
    result = classify(tokens=np.array([ids], np.int32))
    out.append([result["label"][0].decode(), result["probabilities"][0].tolist()])
print(json.dumps(out))
"""
)


def test_sentiment_litert_with_the_readme_tokenizer_equals_the_savedmodel_on_raw_text(
    tiny_run, tmp_path
):
    run_dir = shutil.copytree(tiny_run, tmp_path / "run")
    version = cli_ok("export", str(run_dir), "--format", "litert").output.split()[-1]
    meta = json.loads((tmp_path / version / "metadata.json").read_text())
    assert meta["tokenizer"]["vocabulary"] == "vocabulary.txt"
    texts = ["a gripping, beautifully acted film", "dull and far too long!!", "", "ok " * 500,
             "It_was <br />GREAT? naïve café 映画 🎬 ½", "İSTANBUL ΣΊΣΥΦΟΣ Straße"]  # fmt: skip
    tokenizer = readme_block("sentiment_ids")
    got = fresh_python(TEXT_APP, version, tokenizer, json.dumps(texts), cwd=tmp_path)
    saved = sorted((run_dir / "export").glob("[0-9]*"), key=lambda p: int(p.name))[-1]
    serve = tf.saved_model.load(str(saved)).signatures["serving_default"]
    want = serve(text=tf.constant(texts))
    assert [label for label, _ in got] == [x.decode() for x in want["label"].numpy()]
    probabilities = np.array([p for _, p in got])
    np.testing.assert_allclose(probabilities, want["probabilities"].numpy(), atol=1e-5)
