"""Made-up names swapped into translation training pairs (``lstm_recipes.data.names``)."""

import dataclasses
import random
import re

import pytest

from lstm_recipes import recipe as recipe_lib
from lstm_recipes.data import names, stream
from lstm_recipes.errors import UserError

PAIRS = [
    ("Tom is here.", "Tom está aquí."),
    ("I saw Tom and Mary.", "Vi a Tom y a Mary."),
    ("Where is Mary?", "¿Dónde está Mary?"),
    ("I live in London.", "Vivo en Londres."),
    ("The cat sleeps.", "El gato duerme."),
    ("Is the cat here?", "¿Está el gato aquí?"),
    ("Ask Tom.", "Pregúntale a Tom."),
]


def test_names_are_words_capitalized_past_the_first_word():
    found = names.proper_nouns(PAIRS)
    assert {"tom", "mary", "london"} <= found
    # "The" opens sentences only; "the" past the first word is lowercase.
    assert "the" not in found and "cat" not in found


def test_every_name_kept_on_both_sides_gets_one_made_up_name_on_both():
    out, report = names.swap_names(PAIRS, 1.0, seed=3)
    assert report["pairs_keeping_a_name"] == report["pairs_swapped"] == 4
    for (source, target), (new_source, new_target) in zip(PAIRS, out):
        kept = [n for n in ("Tom", "Mary") if n in source and n in target]
        for name in kept:
            assert name not in new_source and name not in new_target
        if not kept:
            assert (new_source, new_target) == (source, target)
    # "Vi a Tom y a Mary.": two names, two different made-up ones, each on both sides.
    made_up = re.findall(r"[A-Z]\w+", out[1][0])
    assert len(set(made_up)) == 2 and all(n in out[1][1] for n in made_up)
    # London becomes Londres: not kept, so not swapped.
    assert out[3] == PAIRS[3]


def test_the_share_and_the_seed_fix_which_pairs_are_swapped():
    many = PAIRS * 200
    out, report = names.swap_names(many, 0.25, seed=1)
    assert report["pairs_keeping_a_name"] == 800
    assert 150 <= report["pairs_swapped"] <= 250
    assert sum(a != b for a, b in zip(many, out)) == report["pairs_swapped"]
    assert names.swap_names(many, 0.25, seed=1)[0] == out
    assert names.swap_names(many, 0.25, seed=2)[0] != out
    assert names.swap_names(many, 0.0, seed=1)[0] == many


def test_made_up_names_are_capitalized_letters():
    rng = random.Random(0)
    made = [names.made_up_name(rng) for _ in range(200)]
    assert all(re.fullmatch(r"[A-Z][a-z]+", n) for n in made)
    assert len(set(made)) > 190


def test_a_name_swap_outside_0_to_1_and_on_a_stream_is_refused():
    translation = recipe_lib.load_recipe("translation")
    config = dataclasses.replace(translation.PRESETS["tiny"], name_swap=1.5)
    with pytest.raises(UserError, match="expected name_swap from 0 to 1"):
        translation.fit_preprocessing(config, PAIRS)
    config = dataclasses.replace(config, name_swap=0.5)
    shards = stream.Stream.__new__(stream.Stream)
    with pytest.raises(UserError, match="expected pairs read into memory with name_swap"):
        translation.fit_preprocessing(config, shards)
