"""The ``lstm-recipes`` command. TensorFlow is imported inside commands, so --help is instant."""

from __future__ import annotations

import ast
import dataclasses
import errno
import functools
import json
import os
import shutil
import sys
from pathlib import Path

import click

from lstm_recipes.errors import UserError

EXIT_USER_ERROR = 2
EXIT_FAILURE = 1


def _quiet_tensorflow() -> None:
    """Import TensorFlow without its start-up chatter (set TF_CPP_MIN_LOG_LEVEL=0 to see it),
    and set its CPU threads (``fastpath.configure_cpu_threads``).

    TensorFlow's C++ side logs to file descriptor 2 before its log level applies (oneDNN
    notices, "could not find cuda drivers"), so stderr is pointed at /dev/null for the import
    and the device scan; Python errors still surface, after it is restored.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] in ("0", "1"):
        _configure_threads()
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    _configure_threads()


def _configure_threads() -> None:
    from lstm_recipes import fastpath

    fastpath.configure_cpu_threads()


_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# TensorFlow's file errors carry no errno, only the OS's message.
_DISK_FULL_TEXT = ("no space left on device", "file too large", "disk quota exceeded")


def _disk_full(error: BaseException | None) -> bool:
    """Whether ``error``, or an error it was raised from, says a disk or file size limit."""
    while error is not None:
        if getattr(error, "errno", None) in _DISK_FULL_ERRNOS or any(
            text in str(error).lower() for text in _DISK_FULL_TEXT
        ):
            return True
        error = error.__cause__ or error.__context__
    return False


def handle_errors(fn):
    """One-line messages instead of tracebacks: status 2 for bad input (UserError), 1 for any
    other failure, 130 for Ctrl-C. ``lstm-recipes --debug ...`` re-raises with the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = click.get_current_context().find_root().params.get("debug")
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            if debug:
                raise
            click.echo(f"Error: {e}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            click.echo(
                "\nInterrupted. Rerun the same command with the same --run-dir to resume.", err=True
            )
            sys.exit(130)
        except Exception as e:
            if debug:
                raise
            first_line = (str(e).strip().splitlines() or [""])[0][:500]
            hint = (
                "The disk looks full: free some space and rerun the same command (what was "
                "written before is intact; training resumes after its last finished epoch).\n"
                if _disk_full(e)
                else ""
            )
            click.echo(
                f"Error: {type(e).__name__}: {first_line}\n{hint}"
                "(rerun with `lstm-recipes --debug ...` to see the traceback)",
                err=True,
            )
            sys.exit(EXIT_FAILURE)

    return wrapper


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
    _quiet_tensorflow()
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
        click.option("--preset", default="default", show_default=True, help="Named config preset."),
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


def _train(recipe, data, test_data, preset, overrides, run_dir, strategy_name=None, cpu_devices=0):
    """Train (or reuse) a run; on a worker that is not the chief, train and return None."""
    _quiet_tensorflow()
    from lstm_recipes import distribute, training
    from lstm_recipes import recipe as recipe_lib

    module = recipe_lib.load_recipe(recipe)
    if strategy_name is not None:
        distribute.check_name(strategy_name)
        if "strategy" not in {f.name for f in dataclasses.fields(module.Config)}:
            raise UserError(
                f"expected recipe {recipe}'s Config to have a `strategy` field for --strategy, "
                'found none; add `strategy: distribute.Strategy = "default"`'
            )
        overrides = (*overrides, f"strategy={strategy_name}")
    config = recipe_lib.resolve_config(module, preset, overrides)
    strategy_name = getattr(config, "strategy", "default")
    if cpu_devices > 1 and strategy_name != "mirrored":
        raise UserError(
            f"expected --cpu-devices with --strategy mirrored, got it with {strategy_name}"
        )
    # Before anything else touches TensorFlow: devices and the cluster are fixed at start-up.
    strategy = None
    if strategy_name != "default":
        strategy = distribute.make_strategy(strategy_name, cpu_devices)
        click.echo(distribute.describe(strategy_name, strategy))
        if not distribute.is_chief(strategy):
            _train_worker(module, config, data, test_data, run_dir, strategy)
            return None
    started = {"data": data, "test_data": test_data, "preset": preset, "overrides": list(overrides)}
    # Data first: a run directory made for data that cannot be read would refuse the fixed
    # command ("started with other settings").
    training.check_run_dir(module, run_dir)
    splits = module.load_data(config, data, test_data)
    run_dir, info = training.open_run(module, config, run_dir, started)
    click.echo(f"run directory: {run_dir}")
    sizes = splits.sizes()
    click.echo(f"data: {splits.source}: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    prep = training.preprocessing(module, config, splits, run_dir)
    if info.get("state") in ("trained", "evaluated", "exported"):
        click.echo("training already finished in this run directory; reusing its best weights")
        model = training.load_model(module, config, prep, run_dir)
    else:
        model = training.fit(module, config, prep, splits, run_dir, strategy)
        training.set_state(run_dir, info, "trained", sizes=sizes)
        if strategy is not None:
            click.echo(f"trained weights: {training.fingerprint(model)}")
    return module, config, prep, model, splits, run_dir, info


def _train_worker(module, config, data, test_data, run_dir, strategy):
    """A multi-worker job's other workers: the same data, preprocessing (fitted identically,
    from the same data and seed) and training steps as the chief, in a temporary folder."""
    from lstm_recipes import distribute, training

    info = run_dir / "run.json" if run_dir is not None else None
    if info and info.exists() and training.read_json(info).get("state") != "started":
        click.echo("training already finished in this run directory; nothing to do")
        return
    with distribute.worker_dir() as tmp:
        splits = module.load_data(config, data, test_data)
        prep = training.preprocessing(module, config, splits, tmp)
        # Resume from the chief's backup when the run directory is on shared storage.
        restore_from = (run_dir or tmp) / "backup"
        model = training.fit(module, config, prep, splits, tmp, strategy, restore_from)
        click.echo(f"trained weights: {training.fingerprint(model)}")
    click.echo("done; the chief writes the run directory, checkpoints and export")


def _evaluate(module, config, prep, model, splits, run_dir, info):
    from lstm_recipes import training

    metrics = training.evaluate(module, config, prep, model, splits, run_dir)
    training.set_state(run_dir, info, "evaluated")
    headline = {k: v for k, v in metrics.items() if isinstance(v, float) and k != "eval_seconds"}
    click.echo("test metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in headline.items()))
    return metrics


def _export(module, config, prep, model, run_dir, info, metrics):
    from lstm_recipes import training

    click.echo("exporting and verifying the SavedModel in a fresh process...")
    path, signatures = training.export(module, config, prep, model, run_dir)
    training.set_state(run_dir, info, "exported", export=str(path))
    card = training.model_card(
        module, config, run_dir, info, info.get("sizes", {}), metrics, signatures
    )
    return path, card


@main.command()
@_run_options
@_strategy_options
@handle_errors
def run(recipe, data, test_data, preset, overrides, run_dir, strategy, cpu_devices):
    """Train RECIPE, evaluate it on the test split and export a SavedModel."""
    trained = _train(recipe, data, test_data, preset, overrides, run_dir, strategy, cpu_devices)
    if trained is None:  # a worker that is not the chief: the chief evaluates and exports
        return
    module, config, prep, model, splits, run_dir, info = trained
    metrics = _evaluate(module, config, prep, model, splits, run_dir, info)
    path, card = _export(module, config, prep, model, run_dir, info, metrics)
    click.echo(
        f"\nDone. Everything is in {run_dir}:\n"
        f"  metrics      {run_dir / 'metrics.json'}\n"
        f"  model card   {card}\n"
        f"  plots        {run_dir / 'plots'}\n"
        f"  TensorBoard  tensorboard --logdir {run_dir / 'logs'}\n"
        f"  SavedModel   {path}\n"
        f"Try it: lstm-recipes predict {path} {getattr(module, 'PREDICT_EXAMPLE', 'INPUT')}"
    )


@main.command()
@_run_options
@_strategy_options
@handle_errors
def train(recipe, data, test_data, preset, overrides, run_dir, strategy, cpu_devices):
    """Train RECIPE only (then `evaluate RUN_DIR` and `export RUN_DIR`)."""
    trained = _train(recipe, data, test_data, preset, overrides, run_dir, strategy, cpu_devices)
    if trained is not None:
        click.echo(f"trained; next: lstm-recipes evaluate {trained[5]}")


def _reopen(run_dir: Path):
    _quiet_tensorflow()
    from lstm_recipes import training

    module, config, info = training.load_run(run_dir)
    splits = module.load_data(config, info["data"], info.get("test_data"))
    prep = training.read_json(run_dir / "preprocessing.json")
    model = training.load_model(module, config, prep, run_dir)
    info.setdefault("sizes", splits.sizes())
    return module, config, prep, model, splits, info


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@handle_errors
def evaluate(run_dir):
    """Evaluate a trained run on its test split; writes metrics.json and plots."""
    module, config, prep, model, splits, info = _reopen(run_dir)
    _evaluate(module, config, prep, model, splits, run_dir, info)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@handle_errors
def export(run_dir):
    """Export a trained run as a new SavedModel version under RUN_DIR/export/."""
    module, config, prep, model, splits, info = _reopen(run_dir)
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    path, _ = _export(module, config, prep, model, run_dir, info, metrics)
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
    _quiet_tensorflow()
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
    default=",".join(("vanilla", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr")),
    show_default=True,
    help="Comma-separated cells (see `show RECIPE`: the cell field).",
)
@click.option("--seeds", type=click.IntRange(1), default=3, show_default=True)
@click.option("--metric", default=None, help="Test metric to compare (default: the recipe's).")
@handle_errors
def ablate(recipe, data, test_data, preset, overrides, run_dir, cells, seeds, metric):
    """Train RECIPE once per cell and seed; table (mean ± std, diff, Welch p) and box plot.

    Everything goes to --run-dir (default runs/ablate/RECIPE-PRESET): one run directory per
    cell and seed, records.jsonl, results.md, results.csv and cells.png. Rerun the same command
    to resume: finished runs are not retrained.
    """
    import time

    _quiet_tensorflow()
    from lstm_recipes import ablation
    from lstm_recipes import cells as cells_lib
    from lstm_recipes import recipe as recipe_lib

    module = recipe_lib.load_recipe(recipe)
    base = recipe_lib.resolve_config(module, preset, overrides)
    if not hasattr(base, "cell"):
        raise UserError(f"recipe {recipe} has no `cell` config field to ablate")
    for item in overrides:
        if item.split("=", 1)[0].strip() in ("cell", "seed"):
            raise UserError(f"ablate sets cell and seed itself; remove --set {item}")
    names = [c.strip() for c in cells.split(",") if c.strip()]
    for name in names:
        if name not in cells_lib.CELLS:
            raise UserError(f"unknown cell {name!r}; expected some of {', '.join(cells_lib.CELLS)}")
    metric = metric or getattr(module, "MAIN_METRIC", "accuracy")
    out_dir = Path(
        run_dir or Path("runs") / "ablate" / f"{module.__name__.split('.')[-1]}-{preset}"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "recipe": recipe,
        "data": data,
        "test_data": test_data,
        "preset": preset,
        "overrides": list(overrides),
        "metric": metric,
    }
    settings_path = out_dir / "ablation.json"
    if settings_path.exists():
        before = json.loads(settings_path.read_text())
        if before != settings:
            raise UserError(
                f"{out_dir} holds an ablation with other settings ({before}); expected {settings}."
                " Use another --run-dir"
            )
    else:
        settings_path.write_text(json.dumps(settings, indent=2) + "\n")
    records_path = out_dir / "records.jsonl"
    done = {(r["cell"], r["seed"]) for r in ablation.read_records(records_path)}
    jobs = [(c, base.seed + k) for c in names for k in range(seeds)]
    for n, (cell, seed) in enumerate(jobs, start=1):
        if (cell, seed) in done:
            continue
        click.echo(f"[{n}/{len(jobs)}] cell={cell} seed={seed}")
        t0 = time.time()
        run_overrides = (*overrides, f"cell={cell}", f"seed={seed}")
        module_, config, prep, model, splits, run_dir, info = _train(
            recipe, data, test_data, preset, run_overrides, out_dir / "runs" / f"{cell}-seed{seed}"
        )
        metrics = _evaluate(module_, config, prep, model, splits, run_dir, info)
        if metric not in metrics:
            numeric = [k for k, v in metrics.items() if isinstance(v, (int, float))]
            raise UserError(f"expected test metric {metric!r}; this recipe reports {numeric}")
        record = {
            "cell": cell,
            "seed": seed,
            "metric": float(metrics[metric]),
            "seconds": round(time.time() - t0, 1),
            "params": int(model.count_params()),
            "run_dir": str(run_dir),
        }
        with open(records_path, "a") as f:
            f.write(json.dumps(record) + "\n")
    records = [r for r in ablation.read_records(records_path) if r["cell"] in names]
    rows = ablation.summarize(records, metric)
    header = (
        f"Ablation of `{recipe}` (preset {preset}, data {data}, {seeds} seeds from {base.seed}"
        + (f", --set {' '.join(overrides)}" if overrides else "")
        + ")"
    )
    paths = ablation.write_report(out_dir, rows, metric, header)
    click.echo((out_dir / "results.md").read_text())
    click.echo(f"wrote {paths['markdown']}, {paths['csv']}, {out_dir / 'cells.png'}")


# ----------------------------------------------------------------------------- diagnosis


@main.command()
@click.argument(
    "run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path)
)
@click.option("--data", default=None, help="Data to measure on (default: each run's test split).")
@click.option("--batches", type=click.IntRange(1), default=8, show_default=True)
@click.option("--at-init", is_flag=True, help="Freshly initialized weights instead of trained.")
@click.option("--with-init", is_flag=True, help="Both: trained (solid) and initialized (dashed).")
@click.option(
    "--max-steps", type=click.IntRange(1), default=None, help="Steps before the end kept."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG to write (default RUN_DIR/plots/gradient_flow.png of the first run); CSV beside it.",
)
@handle_errors
def diagnose(run_dirs, data, batches, at_init, with_init, max_steps, out):
    """Gradient flow through time: |d loss / d input| per step before the sequence end.

    Averaged over --batches batches of real data, for each RUN_DIR (overlaid in one plot), so
    you see how far back the training signal reaches: a simple RNN's curve falls off, an LSTM's
    reaches further.
    """
    _quiet_tensorflow()
    import keras
    import numpy as np

    from lstm_recipes import diagnose as diagnose_lib
    from lstm_recipes import training

    if at_init and with_init:
        raise UserError("expected one of --at-init and --with-init, got both")
    curves = {}
    for run_dir in run_dirs:
        if not (run_dir / "config.json").exists():
            raise UserError(f"expected a run directory with config.json, found {run_dir}")
        module, config, info = training.load_run(run_dir)
        splits = module.load_data(
            config, data or info["data"], None if data else info.get("test_data")
        )
        prep = training.read_json(run_dir / "preprocessing.json")
        split = splits.test or splits.validation
        dataset = module.batches(config, prep, split, training=False)
        label = f"{run_dir.name} (cell={getattr(config, 'cell', 'lstm')})"
        kinds = ["init"] if at_init else (["trained", "init"] if with_init else ["trained"])
        for kind in kinds:
            if kind == "init":
                keras.utils.set_random_seed(config.seed)
                model = module.build_model(config, prep)
            else:
                model = training.load_model(module, config, prep, run_dir)
            layer = getattr(module, "DIAGNOSE_LAYER", None)
            name = f"{label} (init)" if kind == "init" else label
            curves[name] = diagnose_lib.gradient_profile(model, dataset, batches, layer, max_steps)
            norms, counts = curves[name]
            far = int(np.flatnonzero(counts >= 5).max()) if (counts >= 5).any() else 0
            click.echo(
                f"{name}: |grad| at the last step {norms[0]:.3g}, {far} steps earlier "
                f"{norms[far]:.3g} ({int(counts[0])} sequences)"
            )
    out = out or Path(run_dirs[0]) / "plots" / "gradient_flow.png"
    diagnose_lib.plot(out, curves)
    diagnose_lib.write_csv(out.with_suffix(".csv"), curves)
    click.echo(f"wrote {out} and {out.with_suffix('.csv')}")
