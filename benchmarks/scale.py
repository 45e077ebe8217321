"""Data at scale: peak memory, time to the first step and throughput of streamed corpora.

Generates corpora of N examples as shards of 250,000, ``.tsv.gz`` and Parquet: for
``--recipe translation`` (the default) sentence pairs, the Tatoeba spa-eng pairs repeated; for
``--recipe sentiment`` labelled rows, the built-in Rotten Tomatoes snippets repeated. Each example
gets a counter (``Go. (123456)``), so that no two are equal and the vocabulary keeps growing.
Then, for each size and format, it runs ``lstm-recipes run RECIPE`` (tiny model, one epoch cut
by ``max_minutes``, 2,000 validation and 1,000 test examples) as its own process and reports:

- peak RSS of the process (``wait4``'s ``ru_maxrss``);
- time from the process start to the first training step done (``Progress`` prints it);
- the checking pass's rows/s (``read N rows ... (R rows/s)``);
- training examples/s after the first step (``Progress``'s epoch line) and tokens/s (from the
  corpus' mean target length; for sentiment, its mean text length in words).

The same examples in one ``.tsv`` file, read into memory as before, give the reference
throughput (at the smallest size only: that path holds the corpus in memory).

    python benchmarks/scale.py                        # 100k, 1M and 10M pairs (about an hour)
    python benchmarks/scale.py --recipe sentiment     # the same for labelled rows
    python benchmarks/scale.py --sizes 100000 --quick # a small smoke run
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from common import SHARED_DATA, machine, say

SHARD_ROWS = 250_000
PAIRS_ZIP = SHARED_DATA / "translation/spa-eng/spa-eng.zip"
SNIPPETS = Path(__file__).resolve().parents[1] / "recipes/data/rotten_tomatoes.csv.gz"
# What a shard's two columns are called, per recipe (sentiment reads its columns by header).
COLUMNS = {"translation": ("source", "target"), "sentiment": ("text", "label")}


def base_rows(recipe: str, quick: bool) -> list[tuple[str, str]]:
    if recipe == "sentiment":
        with gzip.open(SNIPPETS, "rt", encoding="utf-8") as f:
            return [(r["text"], r["label"]) for r in csv.DictReader(f)]
    return base_pairs(quick)


def base_pairs(quick: bool) -> list[tuple[str, str]]:
    if PAIRS_ZIP.exists():
        with zipfile.ZipFile(PAIRS_ZIP) as archive:
            name = next(n for n in archive.namelist() if n.endswith("spa.txt"))
            lines = archive.read(name).decode("utf-8").splitlines()
        return [tuple(line.split("\t")[:2]) for line in lines if line.count("\t") >= 1]
    if not quick:
        sys.exit(f"expected the spa-eng pairs at {PAIRS_ZIP} (see ../shared/data/README.md)")
    say(f"note: {PAIRS_ZIP} not found; --quick uses generated date pairs")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lstm_recipes.data.dates import date_pairs

    return date_pairs(20_000, seed=0)


def pairs(base: list, n: int):
    for i in range(n):
        source, target = base[i % len(base)]
        yield f"{source} ({i})", target


def write_corpus(folder: Path, base: list, n: int, fmt: str, recipe: str = "translation") -> str:
    """Shards of ``n`` examples under ``folder`` (kept between runs); returns their glob."""
    done = folder / ".complete"
    suffix = "tsv.gz" if fmt == "tsv" else "parquet"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        rows = pairs(base, n)
        for shard in range((n + SHARD_ROWS - 1) // SHARD_ROWS):
            chunk = [next(rows) for _ in range(min(SHARD_ROWS, n - shard * SHARD_ROWS))]
            path = folder / f"part-{shard:05d}.{suffix}"
            first, second = COLUMNS[recipe]
            if fmt == "tsv":
                with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
                    if recipe == "sentiment":
                        f.write(f"{first}\t{second}\n")
                    f.writelines(f"{s}\t{t}\n" for s, t in chunk)
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.table({first: [s for s, _ in chunk], second: [t for _, t in chunk]})
                pq.write_table(table, path, row_group_size=50_000)
        done.touch()
        say(f"  wrote {n:,} examples as {fmt} shards in {time.time() - t0:.0f}s")
    return str(folder / f"part-*.{suffix}")


def run(data: str, minutes: float, workdir: Path, name: str, recipe: str = "translation") -> dict:
    """One ``lstm-recipes run RECIPE`` process; its figures."""
    run_dir = workdir / "runs" / name
    command = [
        str(Path(sys.executable).parent / "lstm-recipes"),
        "run", recipe, "--preset", "tiny", "--data", data,
        "--set", "max_examples=0", "--set", "validation_size=2000", "--set", "test_size=1000",
        "--set", "epochs=1", "--set", f"max_minutes={minutes}", "--run-dir", str(run_dir),
    ]  # fmt: skip
    log = workdir / f"{name}.log"
    start = time.time()
    first_step = None
    with log.open("w") as out:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        for line in proc.stdout:
            out.write(line)
            if first_step is None and line.startswith("first training step done"):
                first_step = time.time() - start
        _, status, usage = os.wait4(proc.pid, 0)
    text = log.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{name} failed; see {log}:\n{text[-2000:]}")
    pass_rate = re.search(
        r"read [\d,]+ rows from \d+ shard\(s\) in [\d.]+s \(([\d,]+) rows/s\)", text
    )
    rate = re.search(r"epoch 1: [\d,]+ steps \(([\d,]+) examples/s after the first step\)", text)
    return {
        "peak_rss_mib": usage.ru_maxrss // 1024,
        "first_step_s": first_step,
        "pass_rows_per_s": int(pass_rate.group(1).replace(",", "")) if pass_rate else None,
        "pairs_per_s": int(rate.group(1).replace(",", "")) if rate else None,
        "wall_s": time.time() - start,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=sorted(COLUMNS), default="translation")
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--formats", default="tsv,parquet")
    parser.add_argument("--minutes", type=float, default=1.0, help="training budget per run")
    parser.add_argument("--workdir", default=None, help="where corpora and runs go (kept)")
    parser.add_argument("--quick", action="store_true", help="allow generated pairs")
    parser.add_argument("--repeats", type=int, default=2, help="alternated throughput pairs")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    recipe = args.recipe
    base = base_rows(recipe, args.quick)
    if recipe == "sentiment":
        tokens = sum(len(s.split()) + 1 for s, _ in base) / len(base)  # words + the counter
    else:
        tokens = sum(len(t.split()) + 1 for _, t in base) / len(base)  # target tokens + END
    say(machine())
    say(f"{recipe}; work folder: {workdir}; mean tokens per example {tokens:.2f}")
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    # The in-memory reference: the smallest corpus as one .tsv file, read as before.
    single = workdir / f"single-{recipe}-{sizes[0]}.tsv"
    if not single.exists():
        with single.open("w", encoding="utf-8") as f:
            if recipe == "sentiment":
                f.write("\t".join(COLUMNS[recipe]) + "\n")
            f.writelines(f"{s}\t{t}\n" for s, t in pairs(base, sizes[0]))
    # Throughput, in-memory against streamed on the same pairs: alternated, as the machine's
    # speed drifts (shared machines).
    prefix = "" if recipe == "translation" else f"{recipe}-"  # translation corpora as before
    streamed = write_corpus(workdir / f"{prefix}tsv-{sizes[0]}", base, sizes[0], "tsv", recipe)
    rates = {"memory": [], "streamed": []}
    for turn in range(args.repeats):
        for kind, data in (("memory", str(single)), ("streamed", streamed)):
            say(f"throughput {turn + 1}/{args.repeats}: {kind}, {sizes[0]:,} examples ...")
            figures = run(data, args.minutes, workdir, f"{prefix}{kind}-{turn}", recipe)
            rates[kind].append(figures["pairs_per_s"])
            if kind == "memory" and turn == 0:
                rows.append(("in memory (one .tsv)", sizes[0], figures))
    for size in sizes:
        for fmt in args.formats.split(","):
            say(f"streamed, {size:,} examples, {fmt} shards ...")
            data = write_corpus(workdir / f"{prefix}{fmt}-{size}", base, size, fmt, recipe)
            name = f"{prefix}{fmt}-{size}"
            rows.append((f"streamed ({fmt})", size, run(data, args.minutes, workdir, name, recipe)))
    say("")
    say(f"training examples/s, in memory: {rates['memory']}; streamed: {rates['streamed']}")
    ratio = sum(rates["streamed"]) / max(sum(rates["memory"]), 1)
    say(f"streamed / in memory: {ratio:.3f}")
    say("")
    say(
        "| data | examples | peak RSS | time to first step | checking pass | training examples/s "
        "| tokens/s |"
    )
    say("|---|---|---|---|---|---|---|")
    for label, size, r in rows:
        pairs_s = r["pairs_per_s"] or 0
        say(
            f"| {label} | {size:,} | {r['peak_rss_mib']:,} MiB | "
            f"{r['first_step_s']:.0f} s | "
            + (f"{r['pass_rows_per_s']:,} rows/s" if r["pass_rows_per_s"] else "-")
            + f" | {pairs_s:,.0f} | {pairs_s * tokens:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
