"""Peak memory (RSS) of each recipe's documented real-data preset, run end to end.

Each recipe runs as its own ``lstm-recipes run`` process (data loading, preprocessing, one
training epoch cut to ``--minutes``, evaluation on the whole test split, export with its
fresh-process verification); the figure is the peak resident set size that the kernel reports
for that process (``wait4``'s ``ru_maxrss``). Training is shortened because a model's
memory is the same in epoch 1 as in epoch 30: data, vocabularies, weights and the optimizer's
slots are all in place after the first steps.

    python benchmarks/peak_memory.py                 # all five, about 25 minutes
    python benchmarks/peak_memory.py sentiment       # one
    python benchmarks/peak_memory.py --quick         # the tiny preset of each, builtin data
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, SHARED_DATA, say

MODELS = REPO.parent / "shared" / "models"
D = SHARED_DATA

# The commands in each recipe's docstring and README (real data, documented preset).
PRESETS = {
    "sentiment": ["--preset", "imdb", "--data", f"{D}/sentiment/imdb/train.csv.gz",
                  "--test-data", f"{D}/sentiment/imdb/test.csv.gz"],
    "char_lm": ["--preset", "shakespeare", "--data", f"{D}/charlm/tinyshakespeare/input.txt"],
    "translation": ["--preset", "spa-eng", "--data", f"{D}/translation/spa-eng/spa-eng.zip"],
    "tagging": ["--preset", "conll2000", "--data", f"{D}/labeling/conll2000/train.txt",
                "--test-data", f"{D}/labeling/conll2000/test.txt"],
    "image_captioning": ["--preset", "flickr8k", "--data", f"{D}/captioning/flickr8k-1000",
                         "--set", "weights=" + str(MODELS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")],
}  # fmt: skip


def missing_data(recipe: str, flags: list[str]) -> bool:
    """Says so and returns True when a shared file the flags name is absent."""
    missing = [f for f in flags if f.startswith(str(D)) and not Path(f).exists()]
    if missing:
        say(f"{recipe}: skipped, expected {missing[0]} (see ../shared/data/README.md)")
    return bool(missing)


def shown(flags: list[str]) -> str:
    """The flags as a table shows them: shared paths relative to the repository."""
    return (
        " ".join(flags).replace(str(D), "../shared/data").replace(str(MODELS), "../shared/models")
    )


def shortened(recipe: str, minutes: float) -> list[str]:
    # sentiment has no time budget field; one IMDB epoch is a few minutes.
    if recipe == "sentiment":
        return ["--set", "epochs=1"]
    return ["--set", "epochs=1", "--set", f"max_minutes={minutes}"]


def peak_rss(command: list[str], log: Path) -> tuple[int, float, int]:
    """(exit status, wall seconds, peak RSS in MiB) of one process."""
    start = time.time()
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.time() - start, usage.ru_maxrss // 1024


def parse_recipes(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse the options every per-recipe benchmark takes (recipes, ``--quick``, ``--keep``)
    besides ``parser``'s own, and exit with a clear message on an unknown recipe."""
    parser.add_argument("recipes", nargs="*", default=list(PRESETS))
    parser.add_argument("--quick", action="store_true", help="tiny presets on builtin data")
    parser.add_argument("--keep", type=Path, help="keep run directories and logs here")
    args = parser.parse_args(argv)
    unknown = set(args.recipes) - set(PRESETS)
    if unknown:
        sys.exit(f"expected recipes among {', '.join(PRESETS)}; found {', '.join(sorted(unknown))}")
    return args


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="training time per recipe")
    args = parse_recipes(parser, argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="peak_memory_"))
    root.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    for recipe in args.recipes:
        if args.quick:
            flags = ["--preset", "tiny", "--set", "epochs=1"]
        else:
            flags = PRESETS[recipe] + shortened(recipe, args.minutes)
            if missing_data(recipe, flags):
                continue
        command = ["lstm-recipes", "run", recipe, *flags, "--run-dir", str(root / recipe)]
        status, seconds, mib = peak_rss(command, root / f"{recipe}.log")
        failed += status != 0
        rows.append((recipe, flags, status, seconds, mib))
        say(
            f"{recipe}: peak RSS {mib:,} MiB, {seconds:.0f} s, exit {status} (log {root / recipe}.log)"
        )
    say("")
    say("| recipe | flags | peak RSS | wall time | exit |")
    say("|---|---|---|---|---|")
    for recipe, flags, status, seconds, mib in rows:
        say(f"| {recipe} | `{shown(flags)}` | {mib:,} MiB | {seconds:.0f} s | {status} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
