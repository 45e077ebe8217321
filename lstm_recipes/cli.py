"""The ``lstm-recipes`` command. TensorFlow is imported inside commands, so --help is instant."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import click

from lstm_recipes import cli_analysis, cli_tune
from lstm_recipes.console import handle_errors, quiet_tensorflow
from lstm_recipes.errors import UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lstm-recipes")
@click.option("--debug", is_flag=True, help="Show Python tracebacks instead of one-line errors.")
def main(debug):
    """LSTM recipes for Keras 3: train, evaluate and export sequence models on your data.

    A RECIPE is a built-in name (see `lstm-recipes list`) or a path to a recipe .py module.
    """


# ----------------------------------------------------------------------------- discovery


def _static_info(path: Path) -> tuple[str, str]:
    """(topology, first docstring line) of a recipe file, read without importing it."""
    tree = ast.parse(path.read_text())
    doc = (ast.get_docstring(tree) or "").strip().splitlines()
    topology = ""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "TOPOLOGY" for t in node.targets
        ):
            topology = ast.literal_eval(node.value)
    return topology, doc[0] if doc else ""


@main.command("list")
def list_cmd():
    """List the built-in recipes."""
    from lstm_recipes.recipe import list_recipes, recipes_dir

    for name in list_recipes():
        topology, summary = _static_info(recipes_dir() / f"{name}.py")
        click.echo(f"{name:<18} {topology:<14} {summary}")


@main.command()
@click.argument("recipe")
@handle_errors
def show(recipe):
    """Show a recipe: topology, presets, config fields, --data forms, export signatures."""
    quiet_tensorflow()
    from lstm_recipes import recipe as recipe_lib

    module = recipe_lib.load_recipe(recipe)
    click.echo(f"{recipe_lib.recipe_name(module)} ({module.TOPOLOGY})\n")
    click.echo((module.__doc__ or "").strip() + "\n")
    click.echo(f"Presets: {', '.join(module.PRESETS)}\n")
    click.echo("Config fields (default preset; change with --set KEY=VALUE):")
    for name, type_name, value, comment in recipe_lib.describe_fields(module.PRESETS["default"]):
        click.echo(f"  {name:<20} {type_name:<10} {value!r:<14} {comment}")
    differing = {}
    for preset, config in module.PRESETS.items():
        for name, _, value, _ in recipe_lib.describe_fields(config):
            if value != getattr(module.PRESETS["default"], name):
                differing.setdefault(preset, []).append(f"{name}={value}")
    for preset, changes in differing.items():
        click.echo(f"  preset {preset}: {', '.join(changes)}")
    if hasattr(module, "TUNE_SPACE"):
        click.echo(f"\nSearch space of `tune --space default`: {'  '.join(module.TUNE_SPACE)}")
    click.echo("\n--data forms:")
    for form, description in module.DATA_FORMS.items():
        click.echo(f"  {form:<28} {description}")
    click.echo("\nExported signatures:")
    for name, description in module.SIGNATURES.items():
        click.echo(f"  {name}: {description}")


@main.command()
@click.argument("recipe")
@click.argument("path", type=click.Path(dir_okay=False))
@handle_errors
def new(recipe, path):
    """Copy RECIPE's module to PATH.py for you to edit; then run it as `lstm-recipes run PATH.py`."""
    from lstm_recipes.recipe import list_recipes, recipes_dir

    target = Path(path)
    if target.suffix != ".py":
        raise UserError(f"expected a path ending in .py, got {path}")
    if target.exists():
        raise UserError(f"{target} already exists; choose another path (nothing was written)")
    if recipe.endswith(".py"):
        source = Path(recipe)
        if not source.is_file():
            raise UserError(f"expected a recipe module file, found no file at {source}")
    elif recipe in list_recipes():
        source = recipes_dir() / f"{recipe}.py"
    else:
        raise UserError(f"unknown recipe {recipe!r}; expected one of {', '.join(list_recipes())}")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    click.echo(f"wrote {target}; edit it, then: lstm-recipes run {target}")


# ----------------------------------------------------------------------------- training


def _run_options(fn):
    options = [
        click.argument("recipe"),
        click.option(
            "--data",
            default="builtin",
            show_default=True,
            help="Training data spec (see `show RECIPE`).",
        ),
        click.option(
            "--test-data",
            default=None,
            help="Separate test data; default: a fixed-seed split of --data.",
        ),
        click.option(
            "--validation-data",
            default=None,
            help="Separate validation data (early stopping, the best checkpoint); default: a "
            "fixed-seed split of --data.",
        ),
        click.option("--preset", default="default", show_default=True, help="Named config preset."),
        click.option(
            "--preset-file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="A preset and its changes as JSON (tune's best.preset.json); --set applies on top.",
        ),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="KEY=VALUE",
            help="Override a config field (repeatable).",
        ),
        click.option(
            "--run-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Run directory (default runs/RECIPE/TIMESTAMP); rerun with the same one to resume.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _strategy_options(fn):
    options = [
        click.option(
            "--strategy",
            default=None,
            metavar="NAME",
            help="tf.distribute strategy: default (one device), mirrored (all local GPUs), "
            "multi-worker (MultiWorkerMirroredStrategy; cluster from TF_CONFIG) or tpu "
            "(TPUStrategy). Same as --set strategy=NAME; default: the config's.",
        ),
        click.option(
            "--cpu-devices",
            type=click.IntRange(0),
            default=0,
            metavar="N",
            help="With --strategy mirrored on a machine without GPUs: mirror over N logical "
            "CPU devices (to test distributed training on a laptop or in CI).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _preset(recipe, preset, preset_file, overrides) -> tuple[str, tuple[str, ...]]:
    """The preset and overrides of --preset, or of --preset-file with --set on top."""
    if preset_file is None:
        return preset, overrides
    from lstm_recipes import recipe as recipe_lib

    if preset != "default":
        raise UserError("expected --preset or --preset-file, got both")
    preset, lines = recipe_lib.read_preset_file(recipe_lib.load_recipe(recipe), preset_file)
    return preset, (*lines, *overrides)


def _train(
    *, recipe, data, test_data, validation_data, preset, preset_file, overrides, run_dir, **strategy
):
    """``Run.train`` with the options of ``run`` and ``train``."""
    quiet_tensorflow()
    from lstm_recipes.run import Run

    preset, overrides = _preset(recipe, preset, preset_file, overrides)

    return Run.train(
        recipe,
        data,
        test_data,
        preset,
        overrides,
        run_dir,
        strategy["strategy"],
        strategy["cpu_devices"],
        validation_data=validation_data,
        deadline=strategy.get("deadline"),
    )


@main.command()
@_run_options
@_strategy_options
@handle_errors
def run(**options):
    """Train RECIPE, evaluate it on the test split and export a SavedModel."""
    trained = _train(**options)
    if trained is None:  # a worker that is not the chief: the chief evaluates and exports
        return
    trained.evaluate()
    path = trained.export()
    run_dir = trained.run_dir
    module = trained.module
    # A recipe whose example depends on the data (a frame's width) gives it from its prep.
    if hasattr(module, "predict_example"):
        example = module.predict_example(trained.config, trained.prep)
    else:
        example = getattr(module, "PREDICT_EXAMPLE", "INPUT")
    click.echo(
        f"\nDone. Everything is in {run_dir}:\n"
        f"  metrics      {run_dir / 'metrics.json'}\n"
        f"  model card   {run_dir / 'model_card.md'}\n"
        f"  plots        {run_dir / 'plots'}\n"
        f"  TensorBoard  tensorboard --logdir {run_dir / 'logs'}\n"
        f"  SavedModel   {path}\n"
        f"Try it: lstm-recipes predict {path} {example}"
    )


@main.command()
@_run_options
@_strategy_options
# `tune` runs each trial as `train` in its own process; training stops at this time.time().
@click.option("--deadline", type=float, default=None, hidden=True)
@handle_errors
def train(**options):
    """Train RECIPE only (then `evaluate RUN_DIR` and `export RUN_DIR`)."""
    trained = _train(**options)
    if trained is not None:
        click.echo(f"trained; next: lstm-recipes evaluate {trained.run_dir}")


decode_precision_option = click.option(
    "--decode-precision",
    type=click.Choice(["float32", "bfloat16"]),
    default=None,
    help="translation and image_captioning: the search's vocabulary product (default: the "
    "run's decode_precision); bfloat16 is faster on a CPU with bfloat16 instructions, slower "
    "on one without, and may change a few outputs.",
)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@decode_precision_option
@handle_errors
def evaluate(run_dir, decode_precision):
    """Evaluate a trained run on its test split; writes metrics.json and plots."""
    quiet_tensorflow()
    from lstm_recipes.run import Run

    run = Run.reopen(run_dir, decode_precision=decode_precision)
    run.evaluate()


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["savedmodel", "litert", "tflite"]),
    default="savedmodel",
    show_default=True,
    help="litert (or tflite): a .tflite file for phones and watches, under RUN_DIR/export/litert/.",
)
@click.option(
    "--quantize",
    type=click.Choice(["none", "dynamic", "float16", "int8"]),
    default="none",
    show_default=True,
    help="LiteRT weights: dynamic (int8 weights) or float16; int8 is refused (its calibration "
    "crashes on LSTM loops).",
)
@decode_precision_option
@handle_errors
def export(run_dir, fmt, quantize, decode_precision):
    """Export a trained run as a new SavedModel version under RUN_DIR/export/ (or LiteRT)."""
    quiet_tensorflow()
    from lstm_recipes.run import Run

    if fmt == "savedmodel" and quantize != "none":
        raise UserError("expected --quantize with --format litert, found it with savedmodel")
    run = Run.reopen(run_dir, decode_precision=decode_precision)
    path = run.export() if fmt == "savedmodel" else run.export_litert(quantize)
    click.echo(f"exported {path}")


# ----------------------------------------------------------------------------- serving


@main.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1)
@click.option(
    "--file",
    "input_file",
    type=click.File("r", encoding="utf-8"),
    help="Read inputs, one per line ('-': stdin).",
)
@click.option("--signature", default="serving_default", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input.")
@click.option("--prompt", default=None, help="Generators: text to continue (calls `generate`).")
@click.option(
    "--chars",
    type=click.IntRange(0),
    default=500,
    show_default=True,
    help="Generators: characters to add.",
)
@click.option(
    "--temperature", type=float, default=0.8, show_default=True, help="Generators: 0 is greedy."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Generators: same seed, same text."
)
@handle_errors
def predict(model_dir, inputs, input_file, signature, as_json, prompt, chars, temperature, seed):
    """Run an exported model on raw INPUTS (or --file); MODEL_DIR may be a run directory.

    For a generator (char_lm), --prompt TEXT prints a sample continuing TEXT.
    """
    quiet_tensorflow()
    if prompt is not None:
        from lstm_recipes import serve

        row = serve.generate(model_dir, prompt, chars, temperature, seed)
        click.echo(json.dumps(row, ensure_ascii=False) if as_json else row["text"])
        return
    inputs = list(inputs)
    if input_file is not None:
        inputs += [line.rstrip("\n") for line in input_file]
    if not inputs:
        raise UserError("expected INPUT arguments or --file, got neither")
    from lstm_recipes import serve

    for row in serve.predict(model_dir, inputs, signature):
        click.echo(json.dumps(row, ensure_ascii=False) if as_json else serve.format_row(row))


# ----------------------------------------------------------------------------- ablation


@main.command()
@_run_options
@click.option(
    "--cells",
    default="vanilla,nig,nfg,nog,niaf,noaf,np,cifg,fgr",
    show_default=True,
    help="Comma-separated cells (see `show RECIPE`: the cell field).",
)
@click.option("--seeds", type=click.IntRange(1), default=3, show_default=True)
@click.option("--metric", default=None, help="Test metric to compare (default: the recipe's).")
@handle_errors
def ablate(
    recipe,
    data,
    test_data,
    validation_data,
    preset,
    preset_file,
    overrides,
    run_dir,
    cells,
    seeds,
    metric,
):
    """Train RECIPE once per cell and seed; table (mean ± std, diff, Welch p) and box plot.

    Everything goes to --run-dir (default runs/ablate/RECIPE-PRESET): one run directory per
    cell and seed, records.jsonl, results.md, results.csv and cells.png. Rerun the same command
    to resume: finished runs are not retrained.
    """
    quiet_tensorflow()
    from lstm_recipes import ablation

    preset, overrides = _preset(recipe, preset, preset_file, overrides)
    names = [c.strip() for c in cells.split(",") if c.strip()]
    out_dir = ablation.run_ablation(
        recipe,
        data,
        test_data,
        preset,
        overrides,
        run_dir,
        names,
        seeds,
        metric,
        validation_data=validation_data,
    )
    click.echo((out_dir / "results.md").read_text())
    click.echo(
        f"wrote {out_dir / 'results.md'}, {out_dir / 'results.csv'}, {out_dir / 'cells.png'}"
    )


# Commands that look inside trained runs live in their own module, added here explicitly.
main.add_command(cli_analysis.diagnose)
main.add_command(cli_analysis.inspect)
main.add_command(cli_tune.tune)
