"""Loading a GloVe-sized vectors file: time and memory of ``vectors.load`` for one vocabulary.

No 400,000-word file can be downloaded here, so this writes one of the same shape as GloVe 6B
100d (400,000 words x 100 numbers with 5 decimals, ~360 MB, like ``glove.6B.100d.txt``) unless
``--file`` names a real one, then loads a 10,000-word vocabulary's rows from it (half of them in
the file) and prints the seconds and the most memory the load allocated (tracemalloc, in a
second load).

    python benchmarks/vectors_load.py [--words 400000] [--dim 100] [--vocabulary 10000]
        [--file glove.6B.100d.txt]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
from common import Timer, machine, say


def peak_mib() -> float:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_file(path: Path, words: int, dim: int) -> None:
    """A GloVe-format file of ``words`` rows named w0, w1, ... with random numbers."""
    rng = np.random.default_rng(0)
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, words, 10_000):
            block = rng.normal(0, 0.4, (min(10_000, words - start), dim))
            lines = (
                f"w{start + i} " + " ".join(f"{x:.5f}" for x in row) + "\n"
                for i, row in enumerate(block)
            )
            f.writelines(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--vocabulary", type=int, default=10_000)
    parser.add_argument("--file", default="", help="a real vectors file instead of a written one")
    args = parser.parse_args()
    from lstm_recipes.data import vectors

    say(machine())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.file) if args.file else Path(folder) / "vectors.txt"
        if not args.file:
            with Timer() as t:
                write_file(path, args.words, args.dim)
            say(
                f"wrote {args.words:,} x {args.dim} ({path.stat().st_size / 2**20:,.0f} MiB) in {t.seconds:.1f} s"
            )
        # Half the vocabulary is in the file (spread over it), half is not.
        step = max(1, args.words // args.vocabulary)
        vocabulary = [f"w{i * step * 2}" for i in range(args.vocabulary // 2)]
        vocabulary += [f"missing{i}" for i in range(args.vocabulary - len(vocabulary))]
        with Timer() as t:
            found = vectors.load(path, vocabulary)
        coverage = found.coverage()
        # Again under tracemalloc (slower, so not timed): the most the load itself allocated.
        tracemalloc.start()
        vectors.load(path, vocabulary)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        say(
            f"loaded {coverage['found']:,} of {coverage['words']:,} vocabulary words "
            f"(dimension {found.dim}) from {path.stat().st_size / 2**20:,.0f} MiB in "
            f"{t.seconds:.1f} s; the load allocated at most {peak:.1f} MiB (the matrix kept: "
            f"{found.matrix.nbytes / 2**20:.1f} MiB); process peak {peak_mib():,.0f} MiB"
        )


if __name__ == "__main__":
    main()
