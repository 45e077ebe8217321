"""Serving speed of exported SavedModels.

Sentiment: the run's model is exported afresh by the current code (into a temporary folder,
the run is not touched), reloaded with ``tf.saved_model.load`` as a server would, and called on
raw review strings; the reference in the same process is Keras ``model.predict`` of the same
trained model on the same reviews, already vectorized (so vectorization is not even counted
against ``predict``). Batch-1 latency p50/p99 over N single-review requests, and batch-256
throughput. Goal: the served model's batch-1 p50 at most half of ``predict``'s.

Translation: beam-4 decoding (the export's ``serving_default``) of the first 1,000 test
sentences of a trained run's data split, in batches, through the exported SavedModel.

    python benchmarks/serving.py --sentiment-run RUN_DIR \\
        [--translation-run RUN_DIR --translation-data ../shared/data/translation/spa-eng/spa-eng.zip]
    python benchmarks/serving.py --quick     # trains a tiny sentiment run first; 50 requests
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import SHARED_DATA, Timer, machine, percentile, say


def _tiny_run(root: Path) -> Path:
    import csv
    import random

    rng = random.Random(0)
    good, bad, filler = (
        ["great", "superb", "fun"],
        ["awful", "dull", "bad"],
        ["a", "the", "film", "was"],
    )
    path = root / "reviews.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(400):
            label = "pos" if i % 2 else "neg"
            words = rng.choices(filler, k=8) + [rng.choice(good if label == "pos" else bad)]
            writer.writerow([" ".join(words), label])
    run_dir = root / "run"
    subprocess.run(
        ["lstm-recipes", "train", "sentiment", "--preset", "tiny", "--data", str(path),
         "--run-dir", str(run_dir)],
        check=True, capture_output=True,
    )  # fmt: skip
    return run_dir


def _latencies(call, inputs, warmup: int = 5) -> list[float]:
    for item in inputs[:warmup]:
        call(item)
    times = []
    for item in inputs:
        with Timer() as t:
            call(item)
        times.append(t.seconds)
    return times


def sentiment(run_dir: Path, requests: int, root: Path) -> None:
    import tensorflow as tf

    from lstm_recipes import export as export_lib
    from lstm_recipes import rundir, training
    from lstm_recipes.data import text as text_lib

    module, config, _ = rundir.load_run(run_dir)
    prep = rundir.read_json(run_dir / "preprocessing.json")
    model = training.load_model(module, config, prep, run_dir)
    with Timer() as t:
        serving = module.serving(config, model, prep)
        path = export_lib.export_saved_model(serving, root / "export", {"recipe": "sentiment"})
    say(f"sentiment: exported {path} (verified in a fresh process) in {t.seconds:.1f} s")
    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]

    test = _texts(run_dir, module, config)
    rng = np.random.default_rng(0)
    texts = [test[i] for i in rng.integers(0, len(test), requests)]
    vectorizer = text_lib.make_vectorizer(prep["vocabulary"])
    ids = [text_lib.dense_ids(vectorizer([t]), config.max_length).numpy() for t in texts]

    served = _latencies(lambda t: serve(text=tf.constant([t])), texts)
    predicted = _latencies(lambda x: model.predict(x, verbose=0), ids)
    called = _latencies(lambda x: model(x, training=False), ids)
    p50s, p50p = percentile(served, 50), percentile(predicted, 50)
    say(f"| batch-1 latency ({requests} requests) | p50 | p99 |")
    say("|---|---|---|")
    say(
        f"| SavedModel `serving_default(text)` | {p50s * 1e3:.2f} ms | {percentile(served, 99) * 1e3:.2f} ms |"
    )
    say(
        f"| Keras `model.predict(ids)` | {p50p * 1e3:.2f} ms | {percentile(predicted, 99) * 1e3:.2f} ms |"
    )
    say(
        f"| Keras `model(ids)` (a direct eager call, for comparison) | {percentile(called, 50) * 1e3:.2f} ms | {percentile(called, 99) * 1e3:.2f} ms |"
    )
    say(
        f"served p50 / predict p50 = {p50s / p50p:.3f} (goal <= 0.5: {'met' if p50s <= 0.5 * p50p else 'missed'})"
    )

    batch = [test[i] for i in rng.integers(0, len(test), 256)]
    batch_ids = text_lib.dense_ids(vectorizer(tf.constant(batch)), config.max_length).numpy()
    serve(text=tf.constant(batch))
    model.predict(batch_ids, batch_size=256, verbose=0)
    rounds = 5
    with Timer() as ts:
        for _ in range(rounds):
            serve(text=tf.constant(batch))
    with Timer() as tp:
        for _ in range(rounds):
            model.predict(batch_ids, batch_size=256, verbose=0)
    say(f"batch-256 throughput: SavedModel {256 * rounds / ts.seconds:,.0f} reviews/s, "
        f"model.predict {256 * rounds / tp.seconds:,.0f} reviews/s "
        f"(padded to {batch_ids.shape[1]} tokens for predict)")  # fmt: skip


def _texts(run_dir: Path, module, config) -> list[str]:
    from lstm_recipes import rundir
    from lstm_recipes.data import reading

    info = rundir.read_json(run_dir / "run.json")
    # The run's own encoding and bad-row bound, as its training read the same files.
    with reading.options_of(config):
        splits = module.load_data(config, info["data"], info.get("test_data"))
    return [t for t, _ in splits.test]


def translation(run_dir: Path, data: str | None, sentences: int, batch: int) -> None:
    import tensorflow as tf

    from lstm_recipes import export as export_lib
    from lstm_recipes import rundir
    from lstm_recipes.data import reading

    module, config, info = rundir.load_run(run_dir)
    with reading.options_of(config):
        splits = module.load_data(config, data or info["data"], info.get("test_data"))
    sources = [pair[0] for pair in splits.test][:sentences]
    from lstm_recipes.serve import load_saved

    path = export_lib.latest_version(run_dir / "export")
    loaded = load_saved(path)  # imports tensorflow_text first for a subword model
    beam = loaded.signatures["serving_default"]
    beam(text=tf.constant(sources[:batch]))  # trace and warm up
    with Timer() as t:
        out = [
            beam(text=tf.constant(sources[i : i + batch])) for i in range(0, len(sources), batch)
        ]
    n = sum(int(o["translation"].shape[0]) for o in out)
    say(f"translation: beam-4 decoding of {n:,} test sentences through {path}: "
        f"{t.seconds:.1f} s, {n / t.seconds:,.0f} sentences/s (batches of {batch})")  # fmt: skip
    say(f"  e.g. {sources[0]!r} -> {out[0]['translation'][0].numpy().decode()!r}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentiment-run", type=Path)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--translation-run", type=Path)
    parser.add_argument("--translation-data", default=None)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    say("machine:", machine())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_dir = args.sentiment_run
        if run_dir is None:
            if not args.quick:
                sys.exit("expected --sentiment-run RUN_DIR (a trained sentiment run), or --quick")
            run_dir = _tiny_run(root)
        sentiment(run_dir, 50 if args.quick else args.requests, root)
    if args.translation_run:
        translation(args.translation_run, args.translation_data, args.sentences, args.batch)
    elif not args.quick:
        say(f"translation: skipped (pass --translation-run; data under {SHARED_DATA})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
