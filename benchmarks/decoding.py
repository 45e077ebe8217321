"""Decoding speed through an exported translation model, and the previous search beside it.

The run's model is exported afresh by the current code (into a temporary folder; the run is
not touched) and reloaded as a server would. Greedy (the ``greedy`` signature) and beam
(``serving_default``) decode the first N test sentences of the run's own split, in their order,
in batches, after one warm-up batch (which traces). The reference in the same process is the
search as it was before issue #22 (``decoding_reference.py``: every beam of every row on every
step, a step as a one-step sequence through the Keras layer) on the same trained model: its
rate, and how many of its strings differ from the export's (the goal is none). A run with
``copy=true`` gets the export's figures alone: the previous search has no copy path.

    python benchmarks/decoding.py --run RUN_DIR [--data ../shared/data/translation/spa-eng/spa-eng.zip]
    python benchmarks/decoding.py --quick     # trains a tiny translation run first

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


def _rate(fn, sources: list[str], batch: int) -> tuple[float, list[str]]:
    import tensorflow as tf

    fn(tf.constant(sources[:batch]))  # traces
    out = []
    with Timer() as t:
        for i in range(0, len(sources), batch):
            out += [s.decode() for s in fn(tf.constant(sources[i : i + batch])).numpy()]
    return t.seconds, out


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
    args = parser.parse_args(argv)
    say("machine:", machine())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_dir = args.run
        if run_dir is None:
            if not args.quick:
                sys.exit("expected --run RUN_DIR (a trained translation run), or --quick")
            run_dir = _tiny_run(root)
        return measure(run_dir, args.data, 200 if args.quick else args.sentences, args.batch, root)


def measure(run_dir: Path, data: str | None, sentences: int, batch: int, root: Path) -> int:
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
    with Timer() as t:
        path = export_lib.export_saved_model(
            module.serving(config, model, prep), root / "export", {"recipe": "translation"}
        )
    say(f"exported {path} (verified in a fresh process) in {t.seconds:.1f} s")
    loaded = load_saved(path)
    k = config.beam_width
    say(f"{len(sources):,} test sentences of {run_dir}, in their order, batches of {batch}, "
        f"beam width {k}; each after one warm-up batch")  # fmt: skip
    say("| search | seconds | sentences/s |")
    say("|---|---|---|")
    seconds, out = {}, {}
    for name, signature in (("greedy", "greedy"), ("beam", "serving_default")):
        fn = loaded.signatures[signature]
        seconds[name], out[name] = _rate(lambda x, fn=fn: fn(text=x)["translation"], sources, batch)
        say(f"| export, {name} | {seconds[name]:.2f} | {len(sources) / seconds[name]:,.0f} |")
    search = module.translator(config, model, prep)
    same = {}
    # The previous search has no copy path: a copy run gets the export's figures alone.
    for name, width in () if config.copy else (("greedy", 1), ("beam", k)):
        fn = tf.function(
            lambda x, width=width: search.text(reference_search(search, search.prepare(x), width)),
            input_signature=[tf.TensorSpec([None], tf.string)],
            autograph=False,
        )
        ref_seconds, ref_out = _rate(fn, sources, batch)
        same[name] = sum(a == b for a, b in zip(ref_out, out[name]))
        say(f"| previous search (in process), {name} | {ref_seconds:.2f} | "
            f"{len(sources) / ref_seconds:,.0f} |")  # fmt: skip
        seconds[f"ref_{name}"] = ref_seconds
    n = len(sources)
    if config.copy:
        say("a copy run: the previous search has no copy path, so no strings are compared")
    else:
        _projection(model, search, sources, batch)
    for name in same:
        say(f"{name}: {same[name]:,} of {n:,} strings equal the previous search's; "
            f"{seconds[f'ref_{name}'] / seconds[name]:.2f}x its speed")  # fmt: skip
    ratio = seconds["beam"] / seconds["greedy"]
    greedy_rate = n / seconds["greedy"]
    say(f"goal beam-{k} on {n:,} < 5 s: {seconds['beam']:.2f} s "
        f"({'met' if seconds['beam'] < 5 else 'missed'})")  # fmt: skip
    say(f"goal greedy >= 1,000 sentences/s: {greedy_rate:,.0f} "
        f"({'met' if greedy_rate >= 1000 else 'missed'})")  # fmt: skip
    say(f"goal beam <= 3x greedy: {ratio:.2f}x ({'met' if ratio <= 3 else 'missed'})")
    return 0 if all(same[name] == n for name in same) else 1


if __name__ == "__main__":
    sys.exit(main())
