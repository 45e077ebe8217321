"""A generated translation-like corpus (synthetic): dates written many ways -> ISO 8601.

Each source is one date in one of 14 surface forms (English, Spanish, French and German words,
US ``M/D/YYYY``, European ``D.M.YYYY``, weekdays, ordinals, abbreviations); the target is its
``YYYY-MM-DD`` form. The model must learn word order, month names in four languages, number
formatting and (for weekday forms) to ignore redundant words: a real sequence-to-sequence task
that trains offline in minutes. Deterministic for a given seed.
"""

from __future__ import annotations

import datetime
import random

_EN = "January February March April May June July August September October November December"
_ES = "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre"
_FR = "janvier février mars avril mai juin juillet août septembre octobre novembre décembre"
_DE = "Januar Februar März April Mai Juni Juli August September Oktober November Dezember"
MONTHS = {"en": _EN.split(), "es": _ES.split(), "fr": _FR.split(), "de": _DE.split()}
WEEKDAYS = {
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "es": ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"],
}


def _ordinal(day: int) -> str:
    if day in (11, 12, 13):
        return f"{day}th"
    return f"{day}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th') }"


def _forms(d: datetime.date) -> list[str]:
    en, es = MONTHS["en"][d.month - 1], MONTHS["es"][d.month - 1]
    fr, de = MONTHS["fr"][d.month - 1], MONTHS["de"][d.month - 1]
    return [
        f"{en} {d.day}, {d.year}",
        f"{d.day} {en} {d.year}",
        f"{en[:3]} {d.day} {d.year}",
        f"the {_ordinal(d.day)} of {en}, {d.year}",
        f"{WEEKDAYS['en'][d.weekday()]}, {en} {_ordinal(d.day)} {d.year}",
        f"{d.month}/{d.day}/{d.year}",
        f"{d.day}.{d.month}.{d.year}",
        f"{d.year}/{d.month:02d}/{d.day:02d}",
        f"{d.day} de {es} de {d.year}",
        f"{WEEKDAYS['es'][d.weekday()]}, {d.day} de {es} de {d.year}",
        f"le {d.day} {fr} {d.year}",
        f"{d.day} {fr} {d.year}",
        f"{d.day}. {de} {d.year}",
        f"am {d.day}. {de} {d.year}",
    ]


def date_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (written date, ISO date) pairs for dates in 1950-2049.

    Args:
        n: number of pairs.
        seed: the same seed gives the same pairs.
    """
    rng = random.Random(seed)
    first = datetime.date(1950, 1, 1).toordinal()
    last = datetime.date(2049, 12, 31).toordinal()
    pairs = []
    for _ in range(n):
        d = datetime.date.fromordinal(rng.randint(first, last))
        pairs.append((rng.choice(_forms(d)), d.isoformat()))
    return pairs
