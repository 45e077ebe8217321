"""Dynamic evaluation: a stream scored in segments equals one pass; adapting never sees a
character before predicting it, lowers the loss on a text that repeats, and leaves the trained
weights as they were."""

import keras
import numpy as np
import pytest

from lstm_recipes import dynamic
from lstm_recipes import recipe as recipe_lib

char_lm = recipe_lib.load_recipe("char_lm")
TEXT = "To be, or not to be, that is the question. " * 30


@pytest.fixture(scope="module")
def tiny():
    config = recipe_lib.resolve_config(char_lm, "tiny", ["layers=2"])
    prep = char_lm.fit_preprocessing(config, TEXT)
    keras.utils.set_random_seed(3)
    model = char_lm.build_model(config, prep)
    generator = char_lm.Generator(config, model, prep)
    return config, model, generator, generator.codec.encode(TEXT)[:500]


def test_a_static_stream_in_segments_equals_one_pass_of_the_model(tiny):
    config, model, generator, ids = tiny
    whole = keras.losses.sparse_categorical_crossentropy(
        ids[None, 1:], model(ids[None, :-1]), from_logits=True
    )
    for segment in (7, 50, 1000):
        got = dynamic.stream_loss(config, generator.layers(), ids, segment=segment)
        assert got["nats_per_char"] == pytest.approx(float(np.mean(whole)), rel=1e-5)


def test_the_first_segment_is_scored_before_any_update(tiny):
    config, _, generator, ids = tiny
    first = ids[:21]  # one segment of 20 predictions: no step is taken before it is scored
    static = dynamic.stream_loss(config, generator.layers(), first, segment=20)
    adapted = dynamic.stream_loss(config, generator.layers(), first, 1.0, segment=20)
    assert adapted["nats_per_char"] == pytest.approx(static["nats_per_char"], rel=1e-6)


def test_adapting_lowers_the_loss_on_a_repeating_text_and_restores_the_weights(tiny):
    config, model, generator, ids = tiny
    before = [w.copy() for w in model.get_weights()]
    static = dynamic.stream_loss(config, generator.layers(), ids, segment=20)
    adapted = dynamic.stream_loss(config, generator.layers(), ids, 0.5, 0.01, segment=20)
    assert adapted["nats_per_char"] < static["nats_per_char"] - 0.1
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("kwargs", [{"learning_rate": -1.0}, {"decay": 1.0}, {"segment": 0}])
def test_bad_settings_are_refused(tiny, kwargs):
    config, _, generator, ids = tiny
    with pytest.raises(ValueError, match="expected learning_rate >= 0"):
        dynamic.stream_loss(config, generator.layers(), ids, **kwargs)
