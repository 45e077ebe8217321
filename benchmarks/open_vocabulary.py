"""What a translation run does with words it never saw: unknown markers and copied names.

Reads a finished run's ``translations.tsv`` (every test pair with its greedy and beam output) and
the run's own training split (the run's config and data, read again), then prints, per run:

- the share of beam and greedy outputs holding an unknown marker (``[UNK]``, or SentencePiece's
  ``⁇``);
- the test sources holding a word that no training source has, and for the unseen words that the
  reference also contains (names, numbers: words a translation keeps), how many the beam output
  has too;
- the same for rare words (in at most ``--rare`` training sources, 5 by default) that source and
  reference share: more of them, so a copy rate that two runs can be compared by;
- the numbers (digit runs) that source and reference share, and how many the beam output keeps;
- the beam outputs that keep a source word of more than three letters that the reference does
  not have (a copy where a translation was due).

    python benchmarks/open_vocabulary.py --data ../shared/data/translation/spa-eng/spa-eng.zip \\
        --run runs/words --run runs/subword
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import re
from pathlib import Path

from common import machine, say, say_figures

UNKNOWN = ("[UNK]", "\u2047")
WORD = re.compile(r"[\w']+")
DIGITS = re.compile(r"\d+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def report(run: Path, data: str, rare: int = 5) -> dict:
    """The figures of one run (see the module docstring)."""
    from lstm_recipes import recipe as recipe_lib

    module = recipe_lib.load_recipe("translation")
    config = recipe_lib.config_from_dict(module, json.loads((run / "config.json").read_text()))
    splits = module.load_data(config, data)
    counts = collections.Counter(w for source, _ in splits.train for w in set(words(source)))
    with open(run / "translations.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    marked = {k: sum(any(u in row[k] for u in UNKNOWN) for row in rows) for k in ("beam", "greedy")}
    with_unseen, kept, copied = 0, 0, 0
    shared = collections.Counter()
    over_copied = 0  # beam outputs that keep a source word (> 3 letters) the reference lacks
    for row in rows:
        unseen = [w for w in words(row["source"]) if w not in counts]
        with_unseen += bool(unseen)
        reference, output = set(words(row["reference"])), set(words(row["beam"]))
        for word in unseen:
            if word in reference:
                kept += 1
                copied += word in output
        source = set(words(row["source"]))
        over_copied += any(len(w) > 3 for w in (source & output) - reference)
        numbers = set(DIGITS.findall(row["source"])) & set(DIGITS.findall(row["reference"]))
        shared["numbers"] += len(numbers)
        shared["numbers kept"] += len(numbers & set(DIGITS.findall(row["beam"])))
        for word in source & reference:
            if counts[word] <= rare:
                shared["all"] += 1
                shared["beam"] += word in output
                shared["greedy"] += word in set(words(row["greedy"]))
    return {
        "run": str(run),
        "tokenizer": config.tokenizer,
        "pairs": len(rows),
        "beam outputs with an unknown marker": marked["beam"],
        "greedy outputs with an unknown marker": marked["greedy"],
        "sources with an unseen word": with_unseen,
        "unseen words the reference keeps": kept,
        "of those, in the beam output": copied,
        f"words in at most {rare} training sources that source and reference share": shared["all"],
        "of those, in the beam / greedy output": f"{shared['beam']} / {shared['greedy']}",
        "numbers that source and reference share": shared["numbers"],
        "numbers kept in the beam output": shared["numbers kept"],
        "beam outputs keeping a source word (> 3 letters) the reference lacks": over_copied,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="a finished run directory")
    parser.add_argument("--data", required=True, help="the --data the runs trained on")
    parser.add_argument("--rare", type=int, default=5, help="most training sources of a rare word")
    args = parser.parse_args()
    say(machine())
    for run in args.run:
        say_figures(report(Path(run), args.data, args.rare))


if __name__ == "__main__":
    main()
