"""The recipe contract: lookup by name or path, presets, typed --set overrides."""

import dataclasses
from typing import Literal

import pytest

from lstm_recipes import recipe as recipe_lib
from lstm_recipes.errors import UserError


def test_builtin_recipes_are_found_without_registration():
    assert "sentiment" in recipe_lib.list_recipes()


def test_set_overrides_are_parsed_by_field_type():
    module = recipe_lib.load_recipe("sentiment")
    config = recipe_lib.resolve_config(
        module,
        "tiny",
        ["units=12", "dropout=0.25", "bidirectional=false", "pooling=last", "text_column=review"],
    )
    assert (config.units, config.dropout, config.bidirectional, config.pooling) == (
        12,
        0.25,
        False,
        "last",
    )
    assert config.text_column == "review"
    assert module.PRESETS["tiny"].units == 8  # presets are not mutated


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("unitz=3", "unknown config key 'unitz'; valid keys: text_column"),
        ("units=many", "--set units: expected int, got 'many'"),
        ("bidirectional=maybe", "--set bidirectional: expected true or false"),
        ("pooling=median", "--set pooling: expected one of last, max, mean, max_mean"),
        ("units", "expected --set KEY=VALUE"),
    ],
)
def test_bad_overrides_say_what_was_expected(item, message):
    module = recipe_lib.load_recipe("sentiment")
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("?", r"\?")):
        recipe_lib.resolve_config(module, "default", [item])


def test_unknown_preset_lists_the_presets():
    module = recipe_lib.load_recipe("sentiment")
    with pytest.raises(UserError, match="expected one of tiny, default, imdb"):
        recipe_lib.resolve_config(module, "huge", [])


def test_parse_value_handles_optional_and_tuples():
    assert recipe_lib.parse_value("none", int | None, "k") is None
    assert recipe_lib.parse_value("3", int | None, "k") == 3
    assert recipe_lib.parse_value("1, 2,3", tuple[int, ...], "k") == (1, 2, 3)
    assert recipe_lib.parse_value("b", Literal["a", "b"], "k") == "b"


def test_field_comments_come_from_the_source():
    comments = recipe_lib.field_comments(recipe_lib.load_recipe("sentiment").Config)
    assert comments["units"] == "LSTM units per direction"
    assert len(comments) == len(dataclasses.fields(recipe_lib.load_recipe("sentiment").Config))


def test_recipe_by_path(tmp_path):
    source = recipe_lib.recipes_dir() / "sentiment.py"
    copy = tmp_path / "my_sentiment.py"
    copy.write_text(source.read_text())
    module = recipe_lib.load_recipe(str(copy))
    assert module.TOPOLOGY == "many-to-one"
    assert recipe_lib.recipe_name(module) == "my_sentiment"


def test_incomplete_recipe_module_names_what_is_missing(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("TOPOLOGY = 'many-to-one'\n")
    with pytest.raises(UserError, match="lacks DATA_FORMS, SIGNATURES, Config"):
        recipe_lib.load_recipe(str(path))


def test_missing_recipe_file():
    with pytest.raises(UserError, match="found no file at nowhere.py"):
        recipe_lib.load_recipe("nowhere.py")


def test_config_round_trips_through_json_form():
    module = recipe_lib.load_recipe("sentiment")
    config = module.PRESETS["imdb"]
    assert recipe_lib.config_from_dict(module, dataclasses.asdict(config)) == config


@pytest.mark.parametrize("name", recipe_lib.list_recipes())
def test_every_integer_field_has_a_checked_minimum(name):
    import typing

    module = recipe_lib.load_recipe(name)
    hints = typing.get_type_hints(module.Config)
    for field in dataclasses.fields(module.Config):
        if hints[field.name] is not int:
            continue
        with pytest.raises(UserError, match=f"--set {field.name}: expected at least"):
            recipe_lib.resolve_config(module, "tiny", [f"{field.name}=-1"])


@pytest.mark.parametrize("name", recipe_lib.list_recipes())
def test_one_name_per_meaning_in_every_recipe(name):
    fields = {f.name for f in dataclasses.fields(recipe_lib.load_recipe(name).Config)}
    assert not fields & set(recipe_lib.RENAMED), "an old config name is back"
    for canonical in ("validation_size", "test_size", "max_examples", "layers"):
        assert canonical in fields, f"{name} lacks {canonical}"


def test_old_config_names_give_the_new_one_on_the_command_line():
    from click.testing import CliRunner

    from lstm_recipes.cli import main

    for item, new in [("encoder_layers=0", "layers"), ("max_pairs=10", "max_examples")]:
        result = CliRunner().invoke(main, ["train", "translation", "--set", item])
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [
            f"Error: config key {item.split('=')[0]!r} is now called {new!r}: --set {new}=..."
        ]
    zero = CliRunner().invoke(main, ["train", "translation", "--set", "layers=0"])
    assert zero.exit_code == 2 and "--set layers: expected at least 1, got '0'" in zero.output
