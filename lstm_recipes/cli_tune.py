"""``lstm-recipes tune``: a hyperparameter search whose trials are normal runs (``tuning``).
``cli.main`` adds it; TensorFlow and KerasTuner are imported inside."""

from __future__ import annotations

from pathlib import Path

import click

from lstm_recipes.console import handle_errors, quiet_tensorflow


@click.command()
@click.argument("recipe")
@click.option("--data", default="builtin", show_default=True, help="Training data spec.")
@click.option("--test-data", default=None, help="Separate test data (used once, for the best run).")
@click.option("--validation-data", default=None, help="Separate validation data (selects trials).")
@click.option(
    "--preset", default="default", show_default=True, help="Preset the search starts from."
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Fixed config change.")
@click.option(
    "--space",
    multiple=True,
    metavar="FIELD=SPEC",
    help="A searched field (repeatable): choices units=64,128,256; a range "
    "learning_rate=1e-4..3e-3:log or dropout=0.1..0.5; bidirectional=bool; or `default` for "
    "the recipe's default space.",
)
@click.option(
    "--trials",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Trials besides the preset.",
)
@click.option(
    "--max-minutes",
    type=float,
    default=60.0,
    show_default=True,
    help="Wall time of the whole search (over reruns); the trial running then is cut short.",
)
@click.option(
    "--objective",
    default=None,
    metavar="METRIC[:min|max]",
    help="A validation metric (val_...); default: the one that picks the recipe's checkpoint.",
)
@click.option(
    "--algorithm",
    type=click.Choice(["bayesian", "hyperband", "random"]),
    default="bayesian",
    show_default=True,
    help="KerasTuner's oracle.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Search folder (default runs/RECIPE/tune); rerun the same command to resume.",
)
@handle_errors
def tune(**options):
    """Search RECIPE's config on your data (KerasTuner), on the validation split only.

    The preset is trained first as the baseline; each trial is a normal run directory. Then the
    best run is evaluated once on the test split and exported, and OUT/best.preset.json
    reproduces it: lstm-recipes run RECIPE --preset-file OUT/best.preset.json.
    """
    quiet_tensorflow()
    from lstm_recipes import tuning

    tuning.search(**options)
