"""The recipe contract: find a recipe by name or path, resolve its config from presets and --set.

A recipe is a plain module. It holds:

- a docstring: topology, the exact command to run it, the result to expect;
- ``TOPOLOGY`` (str), ``DATA_FORMS`` (dict: form -> description), ``SIGNATURES`` (dict: endpoint
  -> description);
- ``Config``: a frozen dataclass whose fields carry a short comment; ``PRESETS``: name -> Config,
  with at least ``tiny`` and ``default``;
- ``load_data(config, data, test_data, validation_data=None) -> Splits``: raw
  train/validation/test examples (``validation_data`` is optional: a recipe without it refuses
  ``--validation-data``);
- ``fit_preprocessing(config, train) -> dict``: JSON-able state fitted on the train split only;
- ``build_model(config, prep) -> keras.Model``;
- ``batches(config, prep, split, training) -> tf.data.Dataset`` of model-ready batches;
- ``evaluate(config, model, prep, split, run_dir) -> dict`` of metrics;
- ``serving(config, model, prep) -> Serving``: the exported endpoints and sample inputs.

Training reads the config fields ``seed``, ``batch_size``, ``epochs``, ``learning_rate`` and
``patience``, and, when a Config has them, ``clipnorm``, ``lr_decay``, ``max_minutes`` and
``strategy`` (``distribute.Strategy``: needed for ``--strategy``).
Optional module attributes: ``MONITOR`` (the metric that picks the best checkpoint, default
``val_loss``), ``MAIN_METRIC`` (the test metric ``ablate`` compares, default ``accuracy``),
``callbacks(config)`` (extra Keras callbacks), ``PREDICT_EXAMPLE`` (or
``predict_example(config, prep)`` when it depends on the data), ``MOVED_PRESETS`` (preset
name -> the recipe that now holds it, for a one-line pointer), ``REMOVED_FIELDS`` (field name ->
what to do instead), ``inspect_sequences(config, prep, texts, test, steps)`` (the inputs
``lstm-recipes inspect`` traces: a list of ``inspection.Sequence``), ``portable(config,
model, prep) -> litert.Portable`` (the numeric, batch-1 signatures ``export --format litert``
converts) or ``NO_LITERT`` (one line: why the recipe has no LiteRT export).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import sys
import types
import typing
from pathlib import Path

from lstm_recipes.errors import UserError

RECIPES_PACKAGE = "lstm_recipes.recipes"
REQUIRED = (
    "TOPOLOGY",
    "DATA_FORMS",
    "SIGNATURES",
    "Config",
    "PRESETS",
    "load_data",
    "fit_preprocessing",
    "build_model",
    "batches",
    "evaluate",
    "serving",
)


def recipes_dir() -> Path:
    """The folder of the built-in recipe modules, found without importing them."""
    spec = importlib.util.find_spec(RECIPES_PACKAGE)
    return Path(next(iter(spec.submodule_search_locations)))


def list_recipes() -> list[str]:
    """Names of the built-in recipes: the public modules in the recipes package."""
    return sorted(p.stem for p in recipes_dir().glob("*.py") if not p.stem.startswith("_"))


def load_recipe(name_or_path: str) -> types.ModuleType:
    """Import a recipe module by built-in name or by path to a ``.py`` file.

    Args:
        name_or_path: a name from ``list_recipes()`` or a path ending in ``.py``.

    Returns:
        The module, checked against the contract.
    """
    if name_or_path.endswith(".py"):
        path = Path(name_or_path)
        if not path.is_file():
            raise UserError(f"expected a recipe module file, found no file at {path}")
        spec = importlib.util.spec_from_file_location(f"user_recipe_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        # dataclasses and typing.get_type_hints look the module up by name while it executes.
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except SyntaxError as e:
            del sys.modules[spec.name]
            raise UserError(f"recipe file {path} has a syntax error: {e}") from None
        module.RECIPE_SOURCE = str(path.resolve())
    else:
        names = list_recipes()
        if name_or_path not in names:
            raise UserError(
                f"unknown recipe {name_or_path!r}; expected one of {', '.join(names)} "
                "or a path to a .py recipe module"
            )
        module = importlib.import_module(f"{RECIPES_PACKAGE}.{name_or_path}")
        module.RECIPE_SOURCE = name_or_path
    check_contract(module)
    return module


def recipe_name(module: types.ModuleType) -> str:
    """The short name of a recipe module, as used for run directories."""
    return getattr(module, "NAME", module.__name__.rsplit(".", 1)[-1].removeprefix("user_recipe_"))


def check_contract(module: types.ModuleType) -> None:
    """Raise UserError naming what a recipe module lacks."""
    missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
    if missing:
        raise UserError(
            f"recipe {module.__name__} lacks {', '.join(missing)} (see lstm_recipes.recipe)"
        )
    if not dataclasses.is_dataclass(module.Config):
        raise UserError(f"recipe {module.__name__}: expected Config to be a dataclass")
    for preset in ("tiny", "default"):
        if preset not in module.PRESETS:
            raise UserError(f"recipe {module.__name__}: expected a {preset!r} preset")


def field_comments(config_cls: type) -> dict[str, str]:
    """The trailing ``# comment`` of each field in a config dataclass's source."""
    try:
        source_lines, _ = inspect.getsourcelines(config_cls)
    except (OSError, TypeError):
        return {}
    comments = {}
    source = _dedent(source_lines)
    cls = ast.parse(source).body[0]
    lines = source.splitlines()
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.end_lineno - 1]
            if "#" in line:
                comments[node.target.id] = line.split("#", 1)[1].strip()
    return comments


def _dedent(lines: list[str]) -> str:
    indent = len(lines[0]) - len(lines[0].lstrip())
    return "".join(line[indent:] for line in lines)


def resolve_config(module: types.ModuleType, preset: str, overrides: typing.Sequence[str]):
    """The recipe's preset with ``KEY=VALUE`` overrides applied and type-checked.

    Args:
        module: a recipe module.
        preset: a key of ``module.PRESETS``.
        overrides: strings ``KEY=VALUE``; each value is parsed as the field's type.

    Returns:
        A new frozen Config instance.
    """
    moved = getattr(module, "MOVED_PRESETS", {}).get(preset)
    if preset not in module.PRESETS and moved:
        raise UserError(
            f"preset {preset!r} is now in recipe {moved!r}: lstm-recipes run {moved} "
            f"--preset {preset} ..."
        )
    if preset not in module.PRESETS:
        raise UserError(
            f"unknown preset {preset!r} for recipe {recipe_name(module)}; "
            f"expected one of {', '.join(module.PRESETS)}"
        )
    config = module.PRESETS[preset]
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise UserError(f"expected --set KEY=VALUE, got {item!r}")
        removed = getattr(module, "REMOVED_FIELDS", {}).get(key)
        if key not in names and removed:
            raise UserError(f"config key {key!r} is gone: {removed}")
        if key not in names and RENAMED.get(key) in names:
            raise UserError(
                f"config key {key!r} is now called {RENAMED[key]!r}: --set {RENAMED[key]}=..."
            )
        if key not in names:
            raise UserError(f"unknown config key {key!r}; valid keys: {', '.join(names)}")
        changes[key] = parse_value(raw.strip(), hints[key], key)
        minimum = minimum_of(key, hints[key])
        if minimum is not None and not changes[key] >= minimum:
            raise UserError(f"--set {key}: expected at least {minimum}, got {raw.strip()!r}")
        if key == "learning_rate" and not changes[key] > 0:
            raise UserError(f"--set {key}: expected a positive number, got {raw.strip()!r}")
    return dataclasses.replace(config, **changes)


def read_preset_file(module: types.ModuleType, path: Path) -> tuple[str, list[str]]:
    """The preset and ``KEY=VALUE`` overrides a preset file (``tune``'s ``best.preset.json``)
    holds: ``{"recipe": NAME, "preset": PRESET, "set": {FIELD: VALUE, ...}}``.

    Args:
        module: the recipe module the file must be for.
        path: the JSON file.
    """
    import json

    try:
        content = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"expected a preset file at {path}, found none") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"expected a JSON preset file at {path}: {e}") from None
    if not (
        isinstance(content, dict)
        and isinstance(content.get("preset"), str)
        and isinstance(content.get("set", {}), dict)
    ):
        raise UserError(
            f'expected {path} to hold {{"recipe": ..., "preset": ..., "set": {{...}}}}, '
            f"found {str(content)[:80]}"
        )
    name = recipe_name(module)
    if content.get("recipe", name) != name:
        raise UserError(f"{path} is a preset for recipe {content['recipe']!r}, not {name!r}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in content["set"].items()}
    return content["preset"], set_lines(values)


# Config names of earlier releases and the one name each now has in every recipe.
RENAMED = {
    "validation_fraction": "validation_size",
    "validation_percent": "validation_size",
    "test_fraction": "test_size",
    "max_sentences": "max_examples",
    "max_pairs": "max_examples",
    "max_images": "max_examples",
    "max_chars": "max_examples",
    "encoder_layers": "layers",
    "decoder_layers": "layers",
}

# Integer fields that may be 0 ("off", "all" or "none"); every other integer field is a size
# that makes no model, or a model that trains nothing, below 1.
_ZERO_ALLOWED = {
    "max_examples",
    "patience",
    "seed",
    "fine_tune",
    "top_k",
    "attention_plots",
    "eval_length",
    "sample_chars",
    "skip_bad_rows",
}
_MINIMUM = {"vocab_size": 3, "source_vocab": 3, "target_vocab": 3, "dynamic_lr": 0.0}


def minimum_of(key: str, annotation) -> float | None:
    """The smallest value ``--set key=...`` accepts: every integer field has one.

    Args:
        key: a config field name.
        annotation: its type.
    """
    if key in _MINIMUM:
        return _MINIMUM[key]
    if annotation is not int:
        return None
    if key in _ZERO_ALLOWED:
        return 0
    return 1


def config_from_dict(module: types.ModuleType, values: dict):
    """Rebuild a Config from its ``dataclasses.asdict`` form (as saved in config.json)."""
    known = {f.name for f in dataclasses.fields(module.Config)}
    kwargs = {}
    for key, value in values.items():
        if key not in known and RENAMED.get(key) in known:
            raise UserError(
                f"config.json has key {key!r}, which is now called {RENAMED[key]!r}; rename it "
                "there to reopen this run"
            )
        if key not in known:
            raise UserError(f"config.json has key {key!r} that recipe Config does not define")
        if isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return module.Config(**kwargs)


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_value(raw: str, annotation, key: str):
    """Parse a ``--set`` value as ``annotation`` (int, float, bool, str, Literal, Optional, tuple)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() == "none" and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return parse_value(raw, inner[0], key)
    if origin is typing.Literal:
        if raw not in [str(a) for a in args]:
            raise UserError(
                f"--set {key}: expected one of {', '.join(map(str, args))}, got {raw!r}"
            )
        return next(a for a in args if str(a) == raw)
    if origin is tuple:
        item_type = args[0] if args else str
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        return tuple(parse_value(p, item_type, key) for p in parts)
    if annotation is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise UserError(f"--set {key}: expected true or false, got {raw!r}")
    if annotation in (int, float):
        try:
            return annotation(raw)
        except ValueError:
            raise UserError(f"--set {key}: expected {annotation.__name__}, got {raw!r}") from None
    return raw


def describe_fields(config) -> list[tuple[str, str, object, str]]:
    """(name, type, value, comment) for each field of a config instance."""
    comments = field_comments(type(config))
    hints = typing.get_type_hints(type(config))
    rows = []
    for f in dataclasses.fields(config):
        type_name = getattr(hints[f.name], "__name__", None) or str(hints[f.name])
        rows.append(
            (
                f.name,
                type_name.replace("typing.", ""),
                getattr(config, f.name),
                comments.get(f.name, ""),
            )
        )
    return rows


def format_value(value) -> str:
    """A config value as ``--set`` parses it back to the same value."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # KerasTuner's Gaussian process proposes NumPy scalars
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def set_lines(values: dict) -> list[str]:
    """``KEY=VALUE`` strings that ``--set`` parses back to ``values``.

    Args:
        values: config field -> value.
    """
    return [f"{key}={format_value(value)}" for key, value in values.items()]
