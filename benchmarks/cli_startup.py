"""CLI start-up time: ``lstm-recipes --help`` and ``lstm-recipes list`` (goal: < 0.5 s each).

Each command runs as a fresh process, as a user would type it; the figure is the median wall
time of N runs, with ``python -c pass`` (the interpreter alone) as the reference in the same run.

    python benchmarks/cli_startup.py            # 10 runs each
    python benchmarks/cli_startup.py --quick    # 3 runs each
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

GOAL_SECONDS = 0.5


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else args.runs
    script = shutil.which("lstm-recipes")
    if script is None:
        sys.exit("expected the lstm-recipes command on PATH (pip install .); not found")
    commands = {
        "python -c pass (reference)": [sys.executable, "-c", "pass"],
        "lstm-recipes --help": [script, "--help"],
        "lstm-recipes list": [script, "list"],
    }
    medians = {}
    for name, command in commands.items():
        wall(command)  # warm the file cache
        times = [wall(command) for _ in range(runs)]
        medians[name] = statistics.median(times)
        print(
            f"{name:<28} median {medians[name]:.3f} s  max {max(times):.3f} s  ({runs} runs)",
            flush=True,
        )
    failed = [n for n in list(commands)[1:] if medians[n] >= GOAL_SECONDS]
    print(f"goal < {GOAL_SECONDS} s: {'missed by ' + ', '.join(failed) if failed else 'met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
