"""Data adapters and pipelines. Adapters return plain Python examples; pipelines make tf.data."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Sequence

from lstm_recipes.errors import UserError


@dataclasses.dataclass
class Splits:
    """Raw examples of the three splits, plus what the adapter learned about the data.

    Args:
        train: training examples (the only split preprocessing is fitted on).
        validation: examples for early stopping and checkpoint selection.
        test: held-out examples for the final metrics.
        source: a short human description of where the data came from.
        info: adapter facts such as class names in their dataset order.
    """

    train: list
    validation: list
    test: list
    source: str
    info: dict = dataclasses.field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def split_examples(
    examples: Sequence, fractions: Sequence[float], seed: int, key: Callable | None = None
) -> list[list]:
    """Shuffle with a fixed seed and cut into parts of the given fractions (the last takes the rest).

    Args:
        examples: the examples to split.
        fractions: the fraction of each part but the last, e.g. ``(0.8, 0.1)`` for three parts.
        seed: shuffling seed; the same seed and input give the same split.
        key: example -> group; examples of one group stay in one part (e.g. the translations
            of one source sentence, so none of a test source's translations is trained on).
    """
    items = list(examples)
    random.Random(seed).shuffle(items)
    if key is not None:
        return _split_groups(items, fractions, key)
    parts, start = [], 0
    for fraction in fractions:
        end = start + int(round(fraction * len(items)))
        parts.append(items[start:end])
        start = end
    parts.append(items[start:])
    return parts


def _split_groups(items: list, fractions: Sequence[float], key: Callable) -> list[list]:
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    room = [int(round(f * len(items))) for f in fractions]
    parts: list[list] = [[] for _ in range(len(fractions) + 1)]
    # First fit in shuffled group order: a part takes whole groups while they fit, so the held-out
    # parts get exactly their sizes when small groups remain (most sources have one translation).
    for group in groups.values():
        n = next((i for i, r in enumerate(room) if len(group) <= r), len(fractions))
        parts[n].extend(group)
        if n < len(room):
            room[n] -= len(group)
    return parts


def share(size: float, total: int) -> float:
    """The fraction of ``total`` examples that a ``validation_size``/``test_size`` field asks for.

    Sizes below 1 are shares; from 1 on they count examples (as in scikit-learn's
    ``train_test_split``), capped at half the data.

    Args:
        size: a share (0 <= size < 1) or a number of examples (size >= 1).
        total: how many examples there are.
    """
    return size if size < 1 else min(size / max(total, 1), 0.5)


def make_splits(
    train: list,
    test: list | None,
    *,
    seed: int,
    validation_size: float = 0.1,
    test_size: float = 0.1,
    validation: list | None = None,
    source: str = "",
    info: dict | None = None,
    key: Callable | None = None,
) -> Splits:
    """Build train/validation/test from what the user gave, carving missing splits with a seed.

    Args:
        train: examples of the training file (or the only file).
        test: examples of a separate test file, or None to carve a test split from ``train``.
        seed: split seed.
        validation_size: share (< 1) or number of ``train`` examples held out for validation
            when none is given (see ``share``).
        test_size: share or number held out for test when ``test`` is None.
        validation: examples of a separate validation split, if the data has one.
        source: description for the run's records.
        info: adapter facts kept with the splits.
        key: example -> group; a carved split takes whole groups (see ``split_examples``).
    """
    validation_fraction = share(validation_size, len(train))
    test_fraction = share(test_size, len(train))
    if test is None:
        if validation is None:
            test, validation, train = split_examples(
                train, (test_fraction, validation_fraction), seed, key
            )
        else:
            test, train = split_examples(train, (test_fraction,), seed, key)
    elif validation is None:
        validation, train = split_examples(train, (validation_fraction,), seed, key)
    return Splits(train, validation, test, source, info or {})


def limit(examples: list, n: int | None, seed: int) -> list:
    """At most ``n`` examples, sampled with a fixed seed (all when ``n`` is None or 0)."""
    if not n or len(examples) <= n:
        return examples
    return random.Random(seed).sample(examples, n)


def check_labels_seen(
    splits: Splits,
    labels_of: Callable[[object], Iterable[str]],
    data: str,
    names: Iterable[str] = ("validation", "test"),
    seen: Iterable[str] | None = None,
):
    """Fail before training when validation or test data hold a label training never saw.

    Such a label could only be reported when evaluation reaches it, after all the training.

    Args:
        splits: the loaded splits.
        labels_of: example -> its labels (one for a classifier, one per step for a tagger).
        data: the --data (and --test-data) specs, for the message.
        names: the splits to check (a tagger's evaluation scores unseen test tags as errors,
            as conlleval does, so it checks validation only).
        seen: the training labels, when the train split is streamed (counted by its pass).
    """
    if seen is None:
        seen = {str(y) for example in splits.train for y in labels_of(example)}
    seen = {str(y) for y in seen}
    for name in names:
        unseen = sorted(
            {str(y) for example in getattr(splits, name) for y in labels_of(example)} - seen
        )
        if unseen:
            raise UserError(
                f"expected the {name} labels of {data} to be among the {len(seen)} seen in "
                f"training, found {', '.join(map(repr, unseen[:5]))}"
                + (f" and {len(unseen) - 5} more" if len(unseen) > 5 else "")
                + " (give training examples of them, or remove them)"
            )
