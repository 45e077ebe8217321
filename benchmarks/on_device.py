"""On-device export: LiteRT file sizes, batch-1 latency and agreement with the SavedModel.

For a trained frame_labeling run: the run is exported afresh by the current code (SavedModel
and LiteRT with each quantization, into a temporary copy of its export folder; the run itself
is not touched). Per quantization it prints the file size, batch-1 latency (p50, p99) of the
LiteRT interpreter and of the reloaded SavedModel on one window of test frames, and the share
of test frames whose label the LiteRT model (windows of ``window`` every ``stride``, averaged
in NumPy as an app would) agrees on with the SavedModel's ``serving_default``, and both
accuracies. Goals: float agreement >= 99.9%, quantized accuracy within 0.5 points, dynamic
size <= 1/3 of float.

    python benchmarks/on_device.py --run RUN_DIR [--requests 200]
    python benchmarks/on_device.py --quick     # trains a tiny run first
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained frame_labeling run directory")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import tensorflow as tf
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
        config, test = run.config, run.splits.test
        say(f"# on-device benchmark, {machine()}, run {source}")
        saved = tf.saved_model.load(str(run.export())).signatures["serving_default"]
        window = test[0].frames[: config.window][None].astype(np.float32)
        gold = np.concatenate([r.labels for r in test]).astype(str)
        reference = np.concatenate(
            [saved(frames=tf.constant(r.frames[None]))["labels"].numpy()[0] for r in test]
        ).astype(str)
        times = []
        for _ in range(args.requests):
            with Timer() as t:
                saved(frames=tf.constant(window))
            times.append(t.seconds)
        saved_ms = (percentile(times, 50) * 1e3, percentile(times, 99) * 1e3)
        say(f"SavedModel: p50 {saved_ms[0]:.2f} ms, p99 {saved_ms[1]:.2f} ms per window")
        say(f"SavedModel test accuracy {np.mean(reference == gold):.4f}")
        rows = {}
        for quantize in ("none", "dynamic", "float16"):
            folder = run.export_litert(quantize)
            meta = json.loads((folder / "metadata.json").read_text())
            runner = Interpreter(model_path=str(folder / "model.tflite")).get_signature_runner()
            labels = np.array(meta["labels"])
            predicted = np.concatenate(
                [
                    labels[windowed(runner, r.frames, config.window, config.stride).argmax(-1)]
                    for r in test
                ]
            )
            times = []
            for _ in range(args.requests):
                with Timer() as t:
                    runner(frames=window)
                times.append(t.seconds)
            rows[quantize] = {
                "mb": meta["bytes"] / 2**20,
                "p50_ms": percentile(times, 50) * 1e3,
                "p99_ms": percentile(times, 99) * 1e3,
                "agreement": float(np.mean(predicted == reference)),
                "accuracy": float(np.mean(predicted == gold)),
            }
            r = rows[quantize]
            say(
                f"LiteRT {quantize}: {r['mb']:.3f} MB, p50 {r['p50_ms']:.2f} ms, p99 "
                f"{r['p99_ms']:.2f} ms, agreement {r['agreement']:.4%}, accuracy "
                f"{r['accuracy']:.4f}"
            )
        say(f"frames {len(gold)}, window {config.window}, requests {args.requests}")
        say(f"dynamic / float size: {rows['dynamic']['mb'] / rows['none']['mb']:.3f}")
        say(f"LiteRT float p50 / SavedModel p50: {rows['none']['p50_ms'] / saved_ms[0]:.3f}")
        print(json.dumps({"savedmodel_ms": saved_ms, "litert": rows}), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
