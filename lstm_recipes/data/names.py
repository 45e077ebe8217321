"""Made-up names swapped into training pairs, so a translator learns to copy names it never saw.

Tatoeba's English-Spanish pairs name "Tom" in 19,390 pairs and "Mary" in 3,984, kept as they
are on both sides: a model learns those two as words, and copying an unseen name is never
rewarded. Swapping a share of those names for made-up ones (the same made-up name on both sides
of a pair) makes the unchanged name the only thing to learn from: the decoder must take it from
the source. It is copied monolingual data (Currey et al. 2017) in small, done where the pairs
already show what stays unchanged.

A name here is a word spelled the same on both sides of a pair and capitalized in at least 90%
of its training sources' occurrences past the first word (a sentence's first word is
capitalized anyway). The swap is fixed by the seed, so a resumed run trains on the same pairs.
"""

from __future__ import annotations

import collections
import random
import re

_WORD = re.compile(r"\b[^\W\d_][^\W_]*\b")
# Syllables of several languages' names, so the made-up names split into pieces of many kinds.
_ONSETS = [
    "b",
    "br",
    "ch",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "j",
    "k",
    "kh",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "sh",
    "st",
    "t",
    "th",
    "v",
    "w",
    "y",
    "z",
    "zh",
]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ei", "ou", "ia"]
_CODAS = ["", "", "", "n", "r", "l", "s", "k", "m", "sz", "x"]


def proper_nouns(pairs: list[tuple[str, str]], share: float = 0.9) -> set[str]:
    """Words capitalized in at least ``share`` of their occurrences past a source's first word.

    Args:
        pairs: (source, target) training pairs, raw text.
        share: the least capitalized share of a word's non-initial occurrences.
    """
    capitalized, seen = collections.Counter(), collections.Counter()
    for source, _ in pairs:
        for word in _WORD.findall(source)[1:]:
            seen[word.lower()] += 1
            capitalized[word.lower()] += word[0].isupper()
    return {w for w, n in seen.items() if capitalized[w] >= share * n and len(w) > 1}


def made_up_name(rng: random.Random) -> str:
    """A capitalized name of 2 or 3 random syllables, e.g. "Zhoukir" or "Brailesz"."""
    syllables = [
        rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
        for _ in range(rng.choice((2, 2, 3)))
    ]
    return "".join(syllables).capitalize()


def swap_names(
    pairs: list[tuple[str, str]], share: float, seed: int
) -> tuple[list[tuple[str, str]], dict]:
    """The pairs with ``share`` of those that keep a name on both sides given made-up names.

    Each chosen pair gets one new name per name it keeps, written the same on both sides; the
    other pairs are returned unchanged, in their order.

    Args:
        pairs: (source, target) training pairs, raw text.
        share: the share, from 0 to 1, of name-keeping pairs whose names are swapped.
        seed: fixes which pairs and which made-up names.

    Returns:
        The new pairs and a report: names found, pairs keeping one, pairs swapped.
    """
    names = proper_nouns(pairs)
    rng = random.Random(seed)
    out, keeping, swapped = [], 0, 0
    for source, target in pairs:
        target_words = set(_WORD.findall(target))
        kept = sorted(
            {w for w in _WORD.findall(source) if w.lower() in names and w in target_words}
        )
        keeping += bool(kept)
        if kept and rng.random() < share:
            swapped += 1
            for word in kept:
                new = made_up_name(rng)
                pattern = re.compile(rf"\b{re.escape(word)}\b")
                source, target = pattern.sub(new, source), pattern.sub(new, target)
        out.append((source, target))
    return out, {"names": len(names), "pairs_keeping_a_name": keeping, "pairs_swapped": swapped}


def swapped(pairs: list[tuple[str, str]], share: float, seed: int) -> list[tuple[str, str]]:
    """``swap_names``'s pairs, its report printed.

    Args:
        pairs: (source, target) training pairs, raw text.
        share: the share, from 0 to 1, of name-keeping pairs whose names are swapped.
        seed: fixes which pairs and which made-up names.
    """
    out, report = swap_names(pairs, share, seed)
    print(
        f"name swap: {report['pairs_swapped']:,} of {report['pairs_keeping_a_name']:,} training "
        f"pairs that keep a name ({report['names']:,} names found) now keep made-up ones",
        flush=True,
    )
    return out
