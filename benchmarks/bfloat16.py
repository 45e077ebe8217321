"""float32 against ``--set precision=mixed_bfloat16`` on each recipe's real-data preset.

Each recipe's documented real-data preset (``peak_memory.PRESETS``) trains twice, one precision
after the other, as its own ``lstm-recipes train`` process with the same time budget
(``--minutes``, at most ``--epochs``; sentiment has no budget field), then ``lstm-recipes
evaluate`` scores it on the test split; ``--minutes 0 --epochs 0`` trains the preset as
documented. Figures per run: the training speed the run prints at the end of each epoch
(examples per second after its first step: tracing excluded), over all its epochs, and the
recipe's main test metric (``MAIN_METRIC``). At an equal time budget, the faster precision
trains more steps: "wins without loss" means faster at an equal or better metric.

bfloat16 needs a CPU with bfloat16 instructions (``avx512_bf16`` or ``amx_bf16``); elsewhere the
runs are refused, and this script says so and stops.

    python benchmarks/bfloat16.py                   # all five, one epoch or 3 minutes each
    python benchmarks/bfloat16.py sentiment --minutes 0 --epochs 0     # the whole preset
    python benchmarks/bfloat16.py char_lm --minutes 10 --epochs 0
    python benchmarks/bfloat16.py tagging --preset ud-upos --minutes 0 --epochs 0
    python benchmarks/bfloat16.py --quick           # the tiny preset of each, builtin data
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, say
from peak_memory import PRESETS, D, missing_data, parse_recipes, shown

PRECISIONS = ("float32", "mixed_bfloat16")
# The line a run prints at the end of each epoch (lstm_recipes.training.Progress).
EPOCH = re.compile(
    r"^epoch \d+: ([\d,]+) steps \(([\d,]+) examples/s after the first step\)$", re.M
)
# Real-data presets besides the documented one each recipe runs here (PRESETS), for --preset.
OTHER_PRESETS = {
    ("tagging", "ud-upos"): ["--preset", "ud-upos",
                             "--data", f"{D}/labeling/ud-english-ewt/en_ewt-ud-train.conllu.gz",
                             "--test-data", f"{D}/labeling/ud-english-ewt/en_ewt-ud-test.conllu.gz"],
}  # fmt: skip
LAYERS = re.compile(r"^precision mixed_bfloat16: layers compute (.*)$", re.M)


def _main_metric(recipe: str) -> str:
    from lstm_recipes import recipe as recipe_lib

    return getattr(recipe_lib.load_recipe(recipe), "MAIN_METRIC", "accuracy")


def speed(epochs: list[tuple[int, float]]) -> float:
    """Examples per second over every epoch: their steps over their time (each epoch's rate
    excludes its first step), so a short last epoch counts for what it trained."""
    seconds = sum(steps / rate for steps, rate in epochs if rate > 0)
    return sum(steps for steps, _ in epochs) / seconds if seconds else float("nan")


def one_run(recipe: str, flags: list[str], precision: str, run_dir: Path, env: dict) -> dict:
    """Train and evaluate once; the figures, or the reason it failed."""
    log = run_dir.with_suffix(".log")
    train = ["lstm-recipes", "train", recipe, *flags, "--set", f"precision={precision}"]
    start = time.time()
    with log.open("w") as out:
        status = subprocess.call(
            [*train, "--run-dir", str(run_dir)], stdout=out, stderr=out, env=env
        )
        if status == 0:
            status = subprocess.call(
                ["lstm-recipes", "evaluate", str(run_dir)], stdout=out, stderr=out, env=env
            )
    text = log.read_text(errors="replace")
    if status != 0:
        return {"error": f"exit {status} (log {log})", "seconds": time.time() - start}
    epochs = [(int(n.replace(",", "")), float(r.replace(",", ""))) for n, r in EPOCH.findall(text)]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    layers = LAYERS.search(text)
    return {
        "examples_per_second": speed(epochs),
        "epochs": len(epochs),
        "metric": metrics.get(_main_metric(recipe), float("nan")),
        "seconds": time.time() - start,
        "layers": layers.group(1) if layers else "all float32",
    }


def flags_for(
    recipe: str, minutes: float, epochs: int, quick: bool, preset: str | None = None
) -> list[str]:
    if quick:
        return ["--preset", "tiny", "--set", "epochs=1"]
    flags = list(OTHER_PRESETS[recipe, preset] if preset else PRESETS[recipe])
    if epochs:
        flags += ["--set", f"epochs={epochs}"]
    if minutes and recipe != "sentiment":
        flags += ["--set", f"max_minutes={minutes}"]
    return flags


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=3.0, help="training time per run (0: the preset's)"
    )
    parser.add_argument("--epochs", type=int, default=1, help="most epochs (0: the preset's)")
    others = ", ".join(f"{r} {p}" for r, p in OTHER_PRESETS)
    parser.add_argument("--preset", help=f"another real-data preset of one recipe: {others}")
    args = parse_recipes(parser, argv)
    if args.preset and (
        len(args.recipes) != 1 or (args.recipes[0], args.preset) not in OTHER_PRESETS
    ):
        sys.exit(
            f"expected --preset with one recipe among: {others}; found "
            f"{' '.join(args.recipes)} --preset {args.preset}"
        )
    from lstm_recipes import precision as precision_lib

    flags_found = precision_lib.cpu_bf16_flags()
    if not flags_found and not args.quick:
        sys.exit(
            "expected a CPU with avx512_bf16 or amx_bf16 (grep flags /proc/cpuinfo); none here"
        )
    say(machine())
    say(f"CPU bfloat16 flags: {', '.join(flags_found) or 'none (emulated, --quick only)'}")
    # A smoke run where the CPU lacks bfloat16 runs it emulated (slow, but the same code path).
    env = {**os.environ, **({} if flags_found else {"LSTM_RECIPES_EMULATED_BF16": "1"})}
    root = args.keep or Path(tempfile.mkdtemp(prefix="bfloat16_"))
    root.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    for recipe in args.recipes:
        flags = flags_for(recipe, args.minutes, args.epochs, args.quick, args.preset)
        if missing_data(recipe, flags):
            continue
        found = {}
        for precision in PRECISIONS:
            found[precision] = one_run(
                recipe, flags, precision, root / f"{recipe}-{precision}", env
            )
            failed += "error" in found[precision]
            say(f"{recipe} {precision}: {found[precision]}")
        rows.append((recipe, flags, found))
    say("")
    say("| recipe | flags | metric | float32 | mixed_bfloat16 | speed-up |")
    say("|---|---|---|---|---|---|")
    for recipe, flags, found in rows:
        cells = []
        for precision in PRECISIONS:
            r = found[precision]
            cells.append(
                r["error"]
                if "error" in r
                else f"{r['examples_per_second']:,.0f} ex/s, {r['metric']:.4f}"
            )
        f32, bf16 = (found[p].get("examples_per_second") for p in PRECISIONS)
        ratio = f"{bf16 / f32:.2f}x" if f32 and bf16 else "n/a"
        say(
            f"| {recipe} | `{shown(flags)}` | {_main_metric(recipe)} | {cells[0]} | {cells[1]} | {ratio} |"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
