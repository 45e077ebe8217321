"""Dynamic evaluation of a char_lm run: the learning rate chosen on validation, reported on test.

Reads the run's validation and test text as one stream each: statically (no adaptation), then
adapting with one SGD step per segment at each ``--rates`` value (``lstm_recipes.dynamic``).
The rate with the lowest validation loss is the one to put in ``--set dynamic_lr=``; its test
figure is the one to report. The test text never picks anything.

    python benchmarks/dynamic_eval.py --run runs/shakespeare --rates 0.003,0.01,0.03,0.1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import machine, say, say_figures


def sweep(run_dir: Path, rates: list[float], decay: float, chars: int) -> dict:
    """Validation and test nats/char for each rate (0: static), and the rate validation picks."""
    from lstm_recipes import dynamic
    from lstm_recipes.run import Run

    run = Run.reopen(run_dir)
    if run.name != "char_lm":
        raise SystemExit(f"expected a char_lm run; {run_dir} is a {run.name} run")
    module, config, splits = run.module, run.config, run.splits
    generator = module.Generator(
        config, module.inference_model(config, run.model, run.prep), run.prep
    )
    texts = {"validation": splits.validation, "test": splits.test}
    ids = {k: generator.codec.encode(v[:chars] if chars else v) for k, v in texts.items()}
    say(f"{run_dir}: validation {len(ids['validation']):,} and test {len(ids['test']):,} chars")
    table = {}
    for rate in [0.0, *rates]:
        row = {}
        for split, split_ids in ids.items():
            # Segments of the training windows' length; the static pass is the same at any.
            got = dynamic.stream_loss(
                config, generator.layers(), split_ids, rate, decay, config.seq_length
            )
            row[split] = got["nats_per_char"]
            row[f"{split} s"] = got["seconds"]
        say_figures({"rate": rate, **{k: round(v, 4) for k, v in row.items()}})
        table[rate] = row
    best = min(table, key=lambda r: table[r]["validation"])
    return {
        "chosen rate (lowest validation)": best,
        "validation": round(table[best]["validation"], 4),
        "test": round(table[best]["test"], 4),
        "test, static stream": round(table[0.0]["test"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained char_lm run directory")
    parser.add_argument("--rates", default="0.003,0.01,0.03,0.1", help="SGD rates to try")
    parser.add_argument("--decay", type=float, default=0.0, help="pull toward trained weights")
    parser.add_argument("--chars", type=int, default=0, help="score only the first N (0: all)")
    args = parser.parse_args()
    say(machine())
    rates = [float(r) for r in args.rates.split(",")]
    say_figures(sweep(Path(args.run), rates, args.decay, args.chars))


if __name__ == "__main__":
    main()
