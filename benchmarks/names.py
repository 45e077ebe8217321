"""Does a translation run copy a name it never saw? A probe with hundreds of names, not four.

Takes the run's test pairs whose source and reference both keep a probe name (``--name``, "Tom"
by default: Tatoeba's most common), puts a real name that no training source holds in its
place on both sides (a list of 40, from many languages, cycled), translates the new sources
with greedy and beam search, and counts the outputs that hold the new name as a word. The same
count on the untouched sources says how often the probe name itself comes through.

    python benchmarks/names.py --data ../shared/data/translation/spa-eng/spa-eng.zip \\
        --run runs/copy --run runs/copy_name_swap
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from common import machine, say, say_figures

NAMES = [
    "Zbigniew",
    "Oluwaseun",
    "Siobhan",
    "Kazuhiro",
    "Ngozi",
    "Bartholomew",
    "Dagny",
    "Dmitri",
    "Priyanka",
    "Anneliese",
    "Thandiwe",
    "Keanu",
    "Ravindra",
    "Svetlana",
    "Ignatius",
    "Mirela",
    "Chidi",
    "Wojciech",
    "Leocadia",
    "Tarquin",
    "Ebenezer",
    "Xiomara",
    "Yevgeny",
    "Ottilie",
    "Fenwick",
    "Gudrun",
    "Hamish",
    "Jolanta",
    "Kwame",
    "Lorcan",
    "Mehmet",
    "Oksana",
    "Radek",
    "Saoirse",
    "Ulrike",
    "Vesna",
    "Wendell",
    "Yusuf",
    "Zainab",
    "Masha",
]


def _word(name: str) -> re.Pattern:
    return re.compile(rf"\b{re.escape(name)}\b", re.IGNORECASE)


def probe(run_dir: Path, data: str | None, name: str) -> dict:
    """The copy counts of one run (see the module docstring)."""
    from lstm_recipes import rundir, seq2seq, training
    from lstm_recipes.data import reading

    module, config, info = rundir.load_run(run_dir)
    if info.get("recipe") != "translation":
        raise SystemExit(f"expected a translation run; {run_dir} is a {info.get('recipe')} run")
    prep = rundir.read_json(run_dir / "preprocessing.json")
    with reading.options_of(config):
        splits = module.load_data(config, data or info["data"], info.get("test_data"))
    seen = {w.lower() for source, _ in splits.train for w in re.findall(r"\w+", source)}
    unseen = [n for n in NAMES if n.lower() not in seen]
    pattern = _word(name)
    pairs = [(s, t) for s, t in splits.test if pattern.search(s) and pattern.search(t)]
    if not pairs:
        raise SystemExit(f"expected test pairs that keep {name!r} on both sides; found none")
    swapped = [unseen[i % len(unseen)] for i in range(len(pairs))]
    sources = [pattern.sub(new, s) for (s, _), new in zip(pairs, swapped)]
    model = training.load_model(module, config, prep, run_dir)
    search = module.translator(config, model, prep)
    result = {"run": str(run_dir), "pairs": len(pairs), "names": len(unseen)}
    for search_name, width in (("greedy", 1), ("beam", config.beam_width)):
        out = seq2seq.decode_all(search, sources, width)
        copied = sum(bool(_word(new).search(o)) for new, o in zip(swapped, out))
        kept = seq2seq.decode_all(search, [s for s, _ in pairs], width)
        result[f"{search_name}: unseen name copied"] = f"{copied} ({copied / len(pairs):.1%})"
        result[f"{search_name}: {name} kept"] = sum(bool(pattern.search(o)) for o in kept)
        result[f"{search_name} examples"] = list(zip(sources, out))[:3]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="a trained run directory")
    parser.add_argument("--data", help="the --data the run trained on (default: its own)")
    parser.add_argument("--name", default="Tom", help="the name the probe replaces")
    args = parser.parse_args()
    say(machine())
    for run in args.run:
        say_figures(probe(Path(run), args.data, args.name))


if __name__ == "__main__":
    main()
