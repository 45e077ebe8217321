"""On-device export: LiteRT file sizes, batch-1 latency and agreement with the SavedModel.

For a trained run of a recipe with a LiteRT export (frame_labeling, sentiment, tagging,
char_lm): the run is exported afresh by the current code (SavedModel and LiteRT with each
quantization, into a temporary copy of the run; the run itself is not touched). Per quantization
it prints the file size, batch-1 latency (p50, p99) of the LiteRT interpreter and of the reloaded
SavedModel on one test input, the share of the test split's labels on which LiteRT agrees with
the SavedModel's ``serving_default``, and both accuracies; with a ``step`` signature, the latency
of one step. Goals: float agreement >= 99.9%, quantized accuracy within 0.5 points, dynamic
size <= 1/3 of float.

What each recipe's LiteRT side is fed: frames as they are (windows of ``window`` every
``stride``, averaged in NumPy as an app would); sentiment and tagging the token ids of the run's
own vectorizer (the README's plain-Python tokenizers give the same ids: tested); char_lm the
test text one character at a time through ``step`` (its "labels": the most likely next
character; its accuracy: that character being right). The SavedModel's latency includes its
in-graph tokenizing; LiteRT's does not.

    python benchmarks/on_device.py --run RUN_DIR [--requests 200] [--limit 2000]
    python benchmarks/on_device.py --quick     # trains a tiny frame_labeling run first
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import Timer, machine, percentile, say


def windowed(runner, frames: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Per-frame probabilities of a whole sequence from a one-window LiteRT model: windows of
    ``window`` frames every ``stride`` (NaN-padded at the end), overlaps averaged."""
    steps = len(frames)
    total = max(window, steps)
    total = window + -(-(total - window) // stride) * stride
    padded = np.full((total, frames.shape[1]), np.nan, np.float32)
    padded[:steps] = frames
    summed, counts = None, np.zeros(total)
    for start in range(0, total - window + 1, stride):
        probs = runner(frames=padded[None, start : start + window])["probabilities"][0]
        if summed is None:
            summed = np.zeros((total, probs.shape[-1]))
        summed[start : start + window] += probs
        counts[start : start + window] += 1
    return (summed / counts[:, None])[:steps]


class Case:
    """One recipe's test inputs: ``gold`` and ``reference`` (the SavedModel's) labels, one
    request for latency (``saved_request`` raw, ``request`` as LiteRT takes it), and
    ``predict(runner, meta)``: LiteRT's labels on the whole test split."""

    def __init__(self, gold, reference, saved_request, request, predict, step_names=None):
        self.gold, self.reference = np.asarray(gold), np.asarray(reference)
        self.saved_request, self.request, self.predict = saved_request, request, predict
        self.step_names = step_names or {}  # request name -> the step signature's name


def decode(values) -> list[str]:
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


def frames_case(run, saved, limit: int) -> Case:
    config, test = run.config, run.splits.test
    window = test[0].frames[: config.window][None].astype(np.float32)
    gold = np.concatenate([r.labels for r in test]).astype(str)
    reference = np.concatenate(
        [decode(saved(frames=_tf().constant(r.frames[None]))["labels"].numpy()[0]) for r in test]
    )

    def predict(runner, meta):
        labels = np.array(meta["labels"])
        rows = [windowed(runner, r.frames, config.window, config.stride) for r in test]
        return np.concatenate([labels[p.argmax(-1)] for p in rows])

    request = {"frames": window}
    return Case(gold, reference, request, request, predict, {"frames": "frame"})


def sentiment_case(run, saved, limit: int) -> Case:
    from lstm_recipes.data import text as text_lib

    tf = _tf()
    test = run.splits.test[:limit]
    texts, gold = [t for t, _ in test], [y for _, y in test]
    reference = []
    for start in range(0, len(texts), 256):
        reference += decode(saved(text=tf.constant(texts[start : start + 256]))["label"].numpy())
    ragged = text_lib.encode(text_lib.make_vectorizer(run.prep["vocabulary"]), texts, 10**9)
    ids = [np.asarray(row, np.int32)[None] for row in ragged.numpy()]
    middle = int(np.argsort([len(t) for t in texts])[len(texts) // 2])

    def predict(runner, meta):
        return [runner(tokens=row)["label"][0].decode() for row in ids]

    request = {"tokens": ids[middle]}
    return Case(gold, reference, {"text": tf.constant([texts[middle]])}, request, predict)


def tagging_case(run, saved, limit: int) -> Case:
    from lstm_recipes.tagger import Tagger

    tf = _tf()
    test = run.splits.test[:limit]
    tagger = Tagger(run.config, run.model, run.prep)
    gold = [t for _, tags, _ in test for t in tags[: run.config.max_length]]
    reference, requests, raw = [], [], []
    for tokens, _, feats in test:
        args = {"tokens": tf.constant([list(tokens)])}
        if run.prep["features"]:
            args["features"] = tf.constant([np.array(feats, dtype=object).T.tolist()])
        reference += decode(saved(**args)["tags"].numpy()[0][: run.config.max_length])
        inputs, _ = tagger.inputs(*args.values())
        request = {"words": inputs["words"].numpy(), "chars": inputs["chars"].numpy()}
        if run.prep["features"]:
            request["features"] = inputs["features"].numpy()
        requests.append(request)
        raw.append(args)
    middle = int(np.argsort([len(t) for t, _, _ in test])[len(test) // 2])

    def predict(runner, meta):
        return [t.decode() for r in requests for t in runner(**r)["tags"][0]]

    return Case(gold, reference, raw[middle], requests[middle], predict)


def char_lm_case(run, saved, limit: int) -> Case:
    from lstm_recipes.data.chars import CharCodec

    tf = _tf()
    codec = CharCodec(run.prep["unit"], run.prep["vocabulary"])
    ids = codec.encode("\n" + run.splits.test[:limit])
    step = saved  # char_lm's SavedModel ``step``: the same signature as the LiteRT file's
    states = np.zeros(step.structured_input_signature[1]["states"].shape[1:], np.float32)[None]
    reference, saved_states, nats = [], states, []
    for i, following in zip(ids[:-1], ids[1:]):
        out = step(char=tf.constant([i], tf.int32), states=tf.constant(saved_states))
        saved_states, probabilities = out["states"].numpy(), out["probabilities"].numpy()[0]
        reference.append(int(probabilities.argmax()))
        nats.append(-np.log(probabilities[following]))
    say(f"SavedModel step by step: {np.mean(nats):.4f} nats/char")

    def predict(runner, meta):
        lite_states, out, nats = states, [], []
        for i, following in zip(ids[:-1], ids[1:]):
            result = runner(char=np.array([i], np.int32), states=lite_states)
            lite_states, probabilities = result["states"], result["probabilities"][0]
            out.append(int(probabilities.argmax()))
            nats.append(-np.log(probabilities[following]))
        say(f"LiteRT {meta['quantize']} step by step: {np.mean(nats):.4f} nats/char")
        return out

    request = {"char": np.array([ids[1]], np.int32), "states": states}
    saved_request = {k: tf.constant(v) for k, v in request.items()}
    return Case(list(ids[1:]), reference, saved_request, request, predict)


CASES = {
    "frame_labeling": (frames_case, "serving_default"),
    "sentiment": (sentiment_case, "serving_default"),
    "tagging": (tagging_case, "serving_default"),
    "char_lm": (char_lm_case, "step"),
}


def _tf():
    import tensorflow as tf

    return tf


def latency(fn, request: dict, requests: int) -> tuple[float, float]:
    """(p50, p99) milliseconds of ``fn(**request)``."""
    fn(**request)  # the first call builds what later calls reuse
    times = []
    for _ in range(requests):
        with Timer() as t:
            fn(**request)
        times.append(t.seconds)
    return percentile(times, 50) * 1e3, percentile(times, 99) * 1e3


def select_ops_size(run) -> int:
    """Bytes of sentiment's raw-text variant (its tokenizer as TensorFlow Select ops; weights
    frozen as in the exported file): not exported, since the LiteRT interpreter alone cannot
    run it, but measured for the comparison."""
    from lstm_recipes import compat, fused
    from lstm_recipes.data import text as text_lib

    tf = _tf()
    vectorizer = text_lib.make_vectorizer(run.prep["vocabulary"])
    labels = tf.constant(run.prep["labels"])

    @tf.function(input_signature=[tf.TensorSpec([1, None], tf.int32)], autograph=False)
    def classify(ids):
        return run.model(ids, training=False)

    with fused.keras_loop():
        frozen = compat.frozen_function(classify.get_concrete_function())

    @tf.function(input_signature=[tf.TensorSpec([1], tf.string, name="text")], autograph=False)
    def serve(text):
        ids = tf.cast(text_lib.dense_ids(vectorizer(text), run.config.max_length), tf.int32)
        probabilities = tf.nest.flatten(frozen(ids))[0]
        return {"label": tf.gather(labels, tf.argmax(probabilities, -1)), "p": probabilities}

    module = tf.Module()
    module.vectorizer, module.serve = vectorizer, serve
    with tempfile.TemporaryDirectory() as tmp:
        signatures = {"serving_default": serve.get_concrete_function()}
        tf.saved_model.save(module, tmp, signatures=signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS,
            tf.lite.OpsSet.SELECT_TF_OPS,
        ]
        return len(converter.convert())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained run of a recipe with LiteRT export")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--limit", type=int, default=2000, help="test examples (chars) used")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from ai_edge_litert.interpreter import Interpreter

    from lstm_recipes.run import Run

    tmp = Path(tempfile.mkdtemp())
    try:
        source = args.run
        if args.quick:
            source = tmp / "run"
            cmd = ["lstm-recipes", "train", "frame_labeling", "--preset", "tiny"]
            subprocess.run([*cmd, "--run-dir", str(source)], check=True, capture_output=True)
            args.requests = 30
        copy = tmp / "copy"
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("export", "backup"))
        run = Run.reopen(copy)
        if run.name not in CASES:
            sys.exit(f"expected a run of {', '.join(CASES)}, found a {run.name} run")
        make_case, signature = CASES[run.name]
        say(f"# on-device benchmark, {machine()}, run {source} ({run.name})")
        signatures = _tf().saved_model.load(str(run.export())).signatures
        case = make_case(run, signatures[signature], args.limit)
        saved_ms = latency(signatures[signature], case.saved_request, args.requests)
        say(f"SavedModel: p50 {saved_ms[0]:.2f} ms, p99 {saved_ms[1]:.2f} ms per {signature}")
        say(f"SavedModel test accuracy {np.mean(case.reference == case.gold):.4f}")
        if run.name == "sentiment":
            say(f"raw-text variant with Select TF ops: {select_ops_size(run) / 2**20:.3f} MB")
        rows = {}
        for quantize in ("none", "dynamic", "float16"):
            folder = run.export_litert(quantize)
            meta = json.loads((folder / "metadata.json").read_text())
            interpreter = Interpreter(model_path=str(folder / "model.tflite"))
            runner = interpreter.get_signature_runner(signature)
            predicted = np.asarray(case.predict(runner, meta))
            p50, p99 = latency(runner, case.request, args.requests)
            rows[quantize] = r = {
                "mb": meta["bytes"] / 2**20,
                "p50_ms": p50,
                "p99_ms": p99,
                "agreement": float(np.mean(predicted == case.reference)),
                "accuracy": float(np.mean(predicted == case.gold)),
            }
            extra = ""
            if signature != "step" and "step" in interpreter.get_signature_list():
                step = interpreter.get_signature_runner("step")
                r["step_p50_ms"], _ = latency(step, step_request(step, case), 50)
                extra = f", one step p50 {r['step_p50_ms']:.3f} ms"
            say(
                f"LiteRT {quantize}: {r['mb']:.3f} MB, p50 {r['p50_ms']:.2f} ms, p99 "
                f"{r['p99_ms']:.2f} ms, agreement {r['agreement']:.4%}, accuracy "
                f"{r['accuracy']:.4f}{extra}"
            )
        say(f"labels compared {len(case.gold)}, requests {args.requests}")
        say(f"dynamic / float size: {rows['dynamic']['mb'] / rows['none']['mb']:.3f}")
        say(f"LiteRT float p50 / SavedModel p50: {rows['none']['p50_ms'] / saved_ms[0]:.3f}")
        print(json.dumps({"savedmodel_ms": saved_ms, "litert": rows}), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def step_request(step, case: Case) -> dict:
    """One step's inputs (the first position of the latency request) and zero states."""
    first = {case.step_names.get(k, k): v[:, 0] for k, v in case.request.items()}
    shape = step.get_input_details()["states"]["shape"]
    return {**first, "states": np.zeros(shape, np.float32)}


if __name__ == "__main__":
    main()
