"""Helpers shared by the benchmarks: the machine line, data paths, timing and printing."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LSTM_RECIPES_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def machine() -> str:
    """One line naming the machine, the date and the library versions."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (
        f"{time.strftime('%Y-%m-%d')} | {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{'GPU: ' + ', '.join(g.name for g in gpus) if gpus else 'no GPU'} | Python "
        f"{platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}"
    )


def percentile(values, q: float) -> float:
    """The q-th percentile (0-100) of ``values``, linear interpolation."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def say(*parts) -> None:
    print(*parts, flush=True)


def say_figures(figures: dict) -> None:
    """One line of ``name: value`` figures, split by bars."""
    say(" | ".join(f"{k}: {v}" for k, v in figures.items()))


def need(path: Path, quick: bool) -> bool:
    """True when ``path`` exists; otherwise, in --quick mode, say so and return False (the
    caller falls back to generated data); in a full run, exit with a clear message."""
    if path.exists():
        return True
    if quick:
        say(f"note: {path} not found; --quick uses generated data instead")
        return False
    sys.exit(f"expected the real data at {path} (see ../shared/data/README.md); not found")


class SlotWorker:
    """A contender in its own process, serving timed slots: ``run(n)`` writes ``n`` on its
    stdin and returns the JSON line it prints. The process is ``python SCRIPT ARGS...``; its
    side reads one integer per line and answers one JSON line per request."""

    def __init__(self, script: str, args: list[str], env: dict | None = None):
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, script, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )  # fmt: skip

    def run(self, n: int) -> dict:
        import json

        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"a benchmark worker died (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def best_torch_threads(measure, choices=(1, 2)) -> tuple[int, dict]:
    """(the thread count with the highest rate, every count's rate): ``measure(threads)``
    returns a rate. PyTorch's OpenMP threads wait at a barrier after every op, so on a busy
    or small machine fewer threads can be faster; each contender races at its best."""
    rates = {n: measure(n) for n in choices if n <= (os.cpu_count() or 1)}
    return max(rates, key=rates.get), rates


def recipe_policy(asked: str) -> str:
    """The policy a recipe trains with for its config's ``precision`` (``auto`` resolved on
    this CPU), said in one line."""
    from lstm_recipes import precision

    policy = precision.resolve(asked)
    say(f"recipe precision: {precision.shown(asked, policy)}")
    return policy


def fastest_torch(measure, bf16_allowed: bool, unit: str) -> tuple[int, bool]:
    """(threads, bfloat16) PyTorch races with: ``measure(threads, bf16)`` returns a rate in
    ``unit``. bfloat16 (autocast) is tried only where the recipe trains in it; PyTorch takes
    whichever precision and thread count it is faster with, each probed and said."""
    best = {}
    for bf16 in sorted({False, bf16_allowed}):
        threads, rates = best_torch_threads(lambda n, bf16=bf16: measure(n, bf16))
        best[bf16] = threads, rates[threads]
        say(
            f"PyTorch threads probed, {torch_precision(bf16)} ("
            + ", ".join(f"{n}: {r:,.0f} {unit}" for n, r in rates.items())
            + ")"
        )
    bf16 = max(best, key=lambda b: best[b][1])
    return best[bf16][0], bf16


def torch_precision(bf16: bool) -> str:
    """How a table names PyTorch's precision."""
    return "bfloat16 autocast" if bf16 else "float32"


def batch_span():
    """A Keras callback timing a ``fit`` call from its first batch's start to its last batch's
    end (``seconds``, of the last ``fit``), and the time since that last batch (``after()``).

    Returning from ``fit`` can wait seconds for tf.data to let the epoch's autotuned iterator
    go (measured on char_lm's shape: up to 14 s, in about half of the calls; never with
    autotuning off). The recipes' own training turns autotuning off
    (``training.without_autotune``: Keras paid that wait at random epochs too); a pipeline
    built here may not, and PyTorch's loop pays nothing like it, so slots are timed by batches.
    """
    import keras

    class BatchSpan(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.end = time.perf_counter()
            self.seconds = self.end - self.start

        def after(self):
            return time.perf_counter() - self.end

    return BatchSpan()
