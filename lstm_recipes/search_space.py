"""The search space of ``lstm-recipes tune``: ``--space FIELD=SPEC`` parsed and checked against a
recipe's Config before any training.

A SPEC is one of::

    units=64,128,256                 choices, each parsed as the field's type
    learning_rate=1e-4..3e-3:log     a range of a number field, sampled on a log scale
    dropout=0.1..0.5                 a range, sampled uniformly
    bidirectional=bool               both values of a bool field (same as true,false)

``--space default`` is the recipe's ``TUNE_SPACE`` (a tuple of such strings), or, for a recipe
without one, the learning rate, dropout and units.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing

from lstm_recipes import recipe as recipe_lib
from lstm_recipes.errors import UserError

# Fields the search itself sets or that change what is measured, not how well a model learns.
NOT_SEARCHABLE = {
    "max_minutes": "the search's --max-minutes bounds the time",
    "strategy": "a property of the machine, not of the model",
    "validation_size": "the search selects on the validation split, which must stay the same",
    "test_size": "the test split must stay the same",
    "max_examples": "the data must stay the same across trials",
}

# When a recipe has no TUNE_SPACE: what matters in nearly every LSTM (Greff et al. 2015 found
# the learning rate first, then the size of the network).
GENERIC_SPACE = ("learning_rate=3e-4..3e-3:log", "dropout=0.1..0.5", "units=32,64,128,256")


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched config field.

    Args:
        name: the config field.
        kind: ``choice``, ``int``, ``float`` or ``bool``.
        values: the choices (``choice`` and ``bool``).
        low: the smallest value of a range.
        high: the largest value of a range.
        log: sample a range on a log scale.
    """

    name: str
    kind: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False

    def describe(self) -> str:
        """The spec as a user writes it."""
        if self.kind in ("choice", "bool"):
            return f"{self.name}={','.join(recipe_lib.format_value(v) for v in self.values)}"
        return (
            f"{self.name}={recipe_lib.format_value(self.low)}..{recipe_lib.format_value(self.high)}"
            + (":log" if self.log else "")
        )


def _is_number(annotation) -> bool:
    return annotation in (int, float)


def _base_type(annotation):
    """The field's type without ``Optional``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner[0] if len(inner) == 1 else annotation
    return annotation


def _check_minimum(name: str, annotation, value, raw: str) -> None:
    minimum = recipe_lib.minimum_of(name, annotation)
    if minimum is not None and not value >= minimum:
        raise UserError(f"--space {name}: expected values of at least {minimum}, got {raw}")
    if name == "learning_rate" and not value > 0:
        raise UserError(f"--space {name}: expected positive values, got {raw}")


def parse(item: str, module: types.ModuleType) -> Dimension:
    """One ``FIELD=SPEC`` checked against the recipe's Config.

    Args:
        item: the ``--space`` value.
        module: the recipe module.
    """
    name, sep, spec = (part.strip() for part in item.partition("="))
    if not sep or not spec:
        raise UserError(
            f"expected --space FIELD=SPEC (choices a,b,c; a range low..high[:log]; bool), "
            f"got {item!r}"
        )
    hints = typing.get_type_hints(module.Config)
    if name not in hints:
        raise UserError(f"--space: unknown config field {name!r}; valid fields: {', '.join(hints)}")
    if name in NOT_SEARCHABLE:
        raise UserError(f"--space: {name} cannot be searched: {NOT_SEARCHABLE[name]}")
    annotation = _base_type(hints[name])
    if typing.get_origin(annotation) is tuple:
        raise UserError(f"--space {name}: a tuple field cannot be searched")
    if ".." in spec:
        return _parse_range(name, annotation, spec)
    if spec.lower() == "bool":
        if annotation is not bool:
            raise UserError(
                f"--space {name}: bool needs a bool field; {name} is {_type(hints[name])}"
            )
        return Dimension(name, "bool", (False, True))
    raws = [r.strip() for r in spec.split(",")]
    if len(raws) < 2 or "" in raws:
        raise UserError(
            f"--space {name}: expected two or more choices (a,b), a range (low..high[:log]) "
            f"or bool, got {spec!r}"
        )
    try:
        values = tuple(recipe_lib.parse_value(r, hints[name], name) for r in raws)
    except UserError as e:  # its message names --set
        raise UserError(str(e).replace("--set", "--space", 1)) from None
    if len(set(values)) != len(values):
        raise UserError(f"--space {name}: the choices {spec!r} repeat a value")
    for value, raw in zip(values, raws):
        if _is_number(annotation):
            _check_minimum(name, annotation, value, raw)
    if annotation is bool:
        return Dimension(name, "bool", tuple(sorted(values)))
    return Dimension(name, "choice", values)


def _type(annotation) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _parse_range(name: str, annotation, spec: str) -> Dimension:
    if not _is_number(annotation):
        raise UserError(
            f"--space {name}: a range needs a number field; {name} is {_type(annotation)}, "
            "give choices instead (a,b,c)"
        )
    body, _, scale = spec.partition(":")
    if scale not in ("", "log"):
        raise UserError(f"--space {name}: expected low..high or low..high:log, got {spec!r}")
    low_raw, _, high_raw = (p.strip() for p in body.partition(".."))
    try:
        low, high = annotation(low_raw), annotation(high_raw)
    except ValueError:
        raise UserError(
            f"--space {name}: expected a range of {annotation.__name__} values low..high, "
            f"got {spec!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise UserError(f"--space {name}: expected finite bounds, got {spec!r}")
    if not low < high:
        raise UserError(f"--space {name}: expected low < high, got {low_raw}..{high_raw}")
    _check_minimum(name, annotation, low, low_raw)
    if scale == "log" and not low > 0:
        raise UserError(f"--space {name}: a log range needs low > 0, got {low_raw}")
    kind = "int" if annotation is int else "float"
    return Dimension(name, kind, low=low, high=high, log=scale == "log")


def resolve(items: typing.Sequence[str], module: types.ModuleType, config) -> list[Dimension]:
    """The search space of ``--space`` items: ``default`` expands to the recipe's default space,
    and a field given later replaces the same field given earlier.

    Args:
        items: the ``--space`` values.
        module: the recipe module.
        config: the config the search starts from (a field must exist in it).
    """
    if not items:
        raise UserError("expected at least one --space FIELD=SPEC (or --space default)")
    fields = {f.name for f in dataclasses.fields(config)}
    dims: dict[str, Dimension] = {}
    for item in items:
        if item.strip() == "default":
            default = getattr(module, "TUNE_SPACE", None)
            default = default or tuple(s for s in GENERIC_SPACE if s.split("=")[0] in fields)
            for spec in default:
                dim = parse(spec, module)
                dims[dim.name] = dim
        else:
            dim = parse(item, module)
            dims[dim.name] = dim
    return list(dims.values())


def hyperparameters(dims: typing.Sequence[Dimension], config):
    """A ``keras_tuner.HyperParameters`` of the space; each default is the starting config's value
    when it lies in the space.

    Args:
        dims: the search space.
        config: the config the search starts from.
    """
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    for dim in dims:
        start = getattr(config, dim.name)
        if dim.kind == "bool":
            hp.Boolean(dim.name, default=bool(start))
        elif dim.kind == "choice":
            hp.Choice(dim.name, list(dim.values), default=start if start in dim.values else None)
        else:
            inside = start is not None and dim.low <= start <= dim.high
            kwargs = {"default": start} if inside else {}
            sampling = "log" if dim.log else "linear"
            if dim.kind == "int":
                hp.Int(dim.name, int(dim.low), int(dim.high), sampling=sampling, **kwargs)
            else:
                hp.Float(dim.name, dim.low, dim.high, sampling=sampling, **kwargs)
    return hp
