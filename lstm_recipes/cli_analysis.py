"""The commands that look inside trained runs: ``diagnose`` (how far back gradients reach) and
``inspect`` (what the cells hold). ``cli.main`` adds them; TensorFlow is imported inside each."""

from __future__ import annotations

from pathlib import Path

import click

from lstm_recipes.console import handle_errors, quiet_tensorflow
from lstm_recipes.errors import UserError

# ----------------------------------------------------------------------------- diagnosis


@click.command()
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
    if at_init and with_init:
        raise UserError("expected one of --at-init and --with-init, got both")
    quiet_tensorflow()
    from lstm_recipes import diagnose as diagnose_lib

    kinds = ["init"] if at_init else (["trained", "init"] if with_init else ["trained"])
    out = diagnose_lib.run_diagnosis(list(run_dirs), data, batches, kinds, max_steps, out)
    click.echo(f"wrote {out} and {out.with_suffix('.csv')}")


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("texts", nargs=-1)
@click.option(
    "--file",
    "text_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Inspect this file's text (char_lm: all of it; token recipes: one input per line; "
    "frames: one JSON list of frames per line).",
)
@click.option(
    "--layer",
    type=click.IntRange(1),
    default=None,
    help="Rank and draw units of this layer only (1 is next to the input; default: all).",
)
@click.option(
    "--cells",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="How many units to draw.",
)
@click.option(
    "--probe",
    "probe_specs",
    multiple=True,
    metavar="NAME=REGEX",
    help="Also rank units by this probe: 1 on characters a match covers (on tokens it matches).",
)
@click.option(
    "--steps",
    type=click.IntRange(10),
    default=3000,
    show_default=True,
    help="At most this many steps per input, and in all from the test split.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write (default RUN_DIR/inspect).",
)
@handle_errors
def inspect(run_dir, texts, text_file, layer, cells, probe_specs, steps, out):
    """What the trained cells hold: each unit's activation and gates, step by step.

    Runs the recurrent layers of RUN_DIR's model over TEXT (or --file, or the start of the
    run's test split), ranks units by how well they follow simple probes (inside quotes, inside
    brackets, position in the line or sentence, start of a word, inside a chunk, a label, your
    --probe regexes), and writes inspect.html (self-contained), one PNG per drawn unit, the
    gate-saturation scatter, probes.csv and inspect.json.
    """
    if texts and text_file:
        raise UserError("expected TEXT or --file, got both")
    if text_file is not None:
        if not text_file.is_file():
            raise UserError(f"expected a text file for --file, found no file at {text_file}")
        try:
            texts = (text_file.read_text(encoding="utf-8"),)
        except UnicodeDecodeError as e:
            raise UserError(f"expected UTF-8 text in {text_file}, found {e.reason}") from None
    quiet_tensorflow()
    from lstm_recipes import inspect_report

    page, result = inspect_report.run_inspection(
        run_dir, list(texts) if texts else None, layer, cells, probe_specs, steps, out
    )
    for b in result.best:
        click.echo(
            f"{b.probe:<28} {inspect_report.unit_name(b.unit):<30} r = {b.r:+.3f} "
            f"({b.active} of {b.steps} steps)"
        )
    if result.constant:
        click.echo(f"not ranked (never changes in this input): {', '.join(result.constant)}")
    click.echo(f"wrote {page} and {len(result.units)} unit PNGs beside it")
