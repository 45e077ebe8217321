"""Decoding speed through an exported translation model, and the previous search beside it.

The run's model is exported afresh by the current code (into a temporary folder; the run is
not touched) and reloaded as a server would. Greedy (the ``greedy`` signature) and beam
(``serving_default``) decode the first N test sentences of the run's own split, in their order,
in batches: the median of 3 timed passes after an untimed one (which traces and makes the
kernels for each batch's shapes). The reference in the same process is the
search as it was before issue #22 (``decoding_reference.py``: every beam of every row on every
step, a step as a one-step sequence through the Keras layer) on the same trained model: its
rate, and how many of its strings differ from the export's (the goal is none). A run with
``copy=true`` gets the export's figures alone: the previous search has no copy path. Threads
are the CLI's (one per op, ops side by side: how `lstm-recipes predict` serves); ``--tf-threads``
keeps TensorFlow's defaults (how a plain TensorFlow process serves).

    python benchmarks/decoding.py --run RUN_DIR [--data ../shared/data/translation/spa-eng/spa-eng.zip]
    python benchmarks/decoding.py --quick     # trains a tiny translation run first
    python benchmarks/decoding.py --run RUN_DIR --decode-precision both   # float32 and bfloat16

Goals on 1,000 spa-eng test sentences: beam-4 < 5 s, greedy >= 1,000 sentences/s, beam <= 3x
greedy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from common import Timer, machine, say


def _tiny_run(root: Path) -> Path:
    run_dir = root / "run"
    subprocess.run(
        ["lstm-recipes", "train", "translation", "--preset", "tiny", "--run-dir", str(run_dir)],
        check=True, capture_output=True,
    )  # fmt: skip
    return run_dir


def _rate(fn, sources: list[str], batch: int, passes: int = 3) -> tuple[float, list[str]]:
    # (median seconds of the timed passes, the strings). The untimed first pass traces and
    # makes oneDNN's kernels for each batch's shapes, as a server's first requests would:
    # timing the pass that makes them moved greedy's figure by 20% from run to run.
    import statistics

    import tensorflow as tf

    times = []
    for _ in range(passes + 1):
        out = []
        with Timer() as t:
            for i in range(0, len(sources), batch):
                out += [s.decode() for s in fn(tf.constant(sources[i : i + batch])).numpy()]
        times.append(t.seconds)
    return statistics.median(times[1:]), out


def _projection(model, search, sources: list[str], batch: int) -> None:
    # The vocabulary layer alone, on greedy's row-steps (a row runs until it ends; then it
    # leaves): a floor under greedy's time that no loop can lower.
    import numpy as np
    import tensorflow as tf

    from lstm_recipes import decoding
    from lstm_recipes.seq2seq import END

    row_steps = 0
    for i in range(0, len(sources), batch):
        out = search.search(search.prepare(tf.constant(sources[i : i + batch])), 1).numpy()
        ended = decoding.until_end(out, END).numpy().sum(-1) + 1
        row_steps += int(np.minimum(ended, out.shape[1]).sum())
    layer = model.get_layer("decoder").logits
    units, vocab = layer.kernel.shape
    x = tf.random.normal([batch, 1, units])
    fn = tf.function(lambda: layer(x))
    fn()
    with Timer() as t:
        for _ in range(20):
            fn()
    per_row = t.seconds / 20 / batch
    say(f"the vocabulary layer ({units} x {vocab:,}) alone: {per_row * batch * 1e3:.1f} ms "
        f"per step of {batch} rows ({2 * units * vocab / per_row / 1e9:.0f} GFLOP/s); greedy "
        f"ran {row_steps:,} row-steps: {row_steps * per_row:.2f} s of that layer alone")  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a trained translation run directory")
    parser.add_argument("--data", default=None, help="the run's data, if it moved")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="a tiny run, 200 sentences")
    parser.add_argument("--tf-threads", action="store_true",
                        help="TensorFlow's default threads, not the CLI's one per op")  # fmt: skip
    parser.add_argument("--decode-precision", choices=["float32", "bfloat16", "both"],
                        default="float32", help="the exported search's vocabulary product")  # fmt: skip
    args = parser.parse_args(argv)
    say("machine:", machine())
    from lstm_recipes import fastpath

    # As `lstm-recipes predict` and `evaluate` run (one thread per op, ops side by side), or as
    # a plain TensorFlow process does.
    applied = not args.tf_threads and fastpath.configure_cpu_threads()
    say("threads: " + ("one per op, as the CLI sets them" if applied else "TensorFlow's default"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_dir = args.run
        if run_dir is None:
            if not args.quick:
                sys.exit("expected --run RUN_DIR (a trained translation run), or --quick")
            run_dir = _tiny_run(root)
        sentences = 200 if args.quick else args.sentences
        return measure(run_dir, args.data, sentences, args.batch, root, args.decode_precision)


def measure(
    run_dir: Path, data: str | None, sentences: int, batch: int, root: Path, products: str
) -> int:
    import dataclasses

    import tensorflow as tf
    from decoding_reference import reference_search

    from lstm_recipes import export as export_lib
    from lstm_recipes import rundir, training
    from lstm_recipes.data import reading
    from lstm_recipes.serve import load_saved

    module, config, info = rundir.load_run(run_dir)
    if info.get("recipe", "translation") != "translation":
        sys.exit(f"expected a translation run; {run_dir} is a {info['recipe']} run")
    prep = rundir.read_json(run_dir / "preprocessing.json")
    model = training.load_model(module, config, prep, run_dir)
    with reading.options_of(config):
        splits = module.load_data(config, data or info["data"], info.get("test_data"))
    sources = [pair[0] for pair in splits.test][:sentences]
    k, n = config.beam_width, len(sources)
    say(f"{n:,} test sentences of {run_dir}, in their order, batches of {batch}, "
        f"beam width {k}; median of 3 passes after an untimed one")  # fmt: skip
    seconds, out = {}, {}
    for precision in ("float32", "bfloat16") if products == "both" else (products,):
        # (A library from before decode_precision searches in float32.)
        exported = (
            dataclasses.replace(config, decode_precision=precision)
            if hasattr(config, "decode_precision")
            else config
        )
        with Timer() as t:
            path = export_lib.export_saved_model(
                module.serving(exported, model, prep), root / precision, {"recipe": "translation"}
            )
        say(f"exported {path} (vocabulary product in {precision}; verified in a fresh process) "
            f"in {t.seconds:.1f} s")  # fmt: skip
        loaded = load_saved(path)
        say("| search | seconds | sentences/s |")
        say("|---|---|---|")
        for name, signature in (("greedy", "greedy"), ("beam", "serving_default")):
            fn = loaded.signatures[signature]
            key = (precision, name)
            seconds[key], out[key] = _rate(
                lambda x, fn=fn: fn(text=x)["translation"], sources, batch
            )
            say(f"| export ({precision}), {name} | {seconds[key]:.2f} | {n / seconds[key]:,.0f} |")
    search = module.translator(config, model, prep)
    same = {}
    first = "float32" if products == "both" else products
    # The previous search has no copy path: a copy run gets the export's figures alone.
    for name, width in () if config.copy else (("greedy", 1), ("beam", k)):
        fn = tf.function(
            lambda x, width=width: search.text(reference_search(search, search.prepare(x), width)),
            input_signature=[tf.TensorSpec([None], tf.string)],
            autograph=False,
        )
        ref_seconds, ref_out = _rate(fn, sources, batch)
        same[name] = sum(a == b for a, b in zip(ref_out, out[(first, name)]))
        say(f"| previous search (in process), {name} | {ref_seconds:.2f} | "
            f"{n / ref_seconds:,.0f} |")  # fmt: skip
        seconds[("ref", name)] = ref_seconds
    if config.copy:
        say("a copy run: the previous search has no copy path, so no strings are compared")
    else:
        _projection(model, search, sources, batch)
    for name in same:
        say(f"{name} ({first}): {same[name]:,} of {n:,} strings equal the previous search's; "
            f"{seconds[('ref', name)] / seconds[(first, name)]:.2f}x its speed")  # fmt: skip
    if products == "both":
        for name in ("greedy", "beam"):
            equal = sum(a == b for a, b in zip(out[("float32", name)], out[("bfloat16", name)]))
            speed = seconds[("float32", name)] / seconds[("bfloat16", name)]
            say(f"{name}: bfloat16 product {speed:.2f}x float32's speed; {equal:,} of {n:,} "
                "strings equal")  # fmt: skip
    for precision in sorted({p for p, _ in seconds if p != "ref"}):
        beam, greedy = seconds[(precision, "beam")], seconds[(precision, "greedy")]
        say(f"goals, {precision} product: beam-{k} on {n:,} < 5 s: {beam:.2f} s "
            f"({'met' if beam < 5 else 'missed'}); greedy >= 1,000 sentences/s: {n / greedy:,.0f} "
            f"({'met' if n / greedy >= 1000 else 'missed'}); beam <= 3x greedy: "
            f"{beam / greedy:.2f}x ({'met' if beam <= 3 * greedy else 'missed'})")  # fmt: skip
    return 0 if all(same[name] == n for name in same) else 1


if __name__ == "__main__":
    sys.exit(main())
