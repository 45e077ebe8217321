"""How ``tune`` runs one trial: ``lstm-recipes train`` in a process of its own (killed with the
search), and, for a Hyperband promotion, a copy of the parent trial's run that resumes from it."""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from lstm_recipes import rundir
from lstm_recipes.errors import UserError


def continue_run(parent: Path, run_dir: Path, epochs: int, overrides: list[str]) -> None:
    """Make ``run_dir`` a copy of the ``parent`` run that resumes to ``epochs`` epochs.

    Hyperband promotes a trial to a longer round: its run's exact-resume backup (weights,
    optimizer, data order, early-stopping memory) goes on from where the parent stopped.

    Args:
        parent: the parent trial's run directory.
        run_dir: the new trial's run directory (must not exist).
        epochs: the new trial's epochs in all.
        overrides: the new trial's ``--set`` lines, recorded in its ``run.json``.
    """
    tmp = run_dir.with_name(run_dir.name + ".copying")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(parent, tmp, ignore=shutil.ignore_patterns("export", "metrics.json"))
    config = rundir.read_json(tmp / "config.json")
    rundir.write_json(tmp / "config.json", {**config, "epochs": epochs})
    info = rundir.read_json(tmp / "run.json")
    info.update(state="started", overrides=overrides, continued_from=str(parent))
    rundir.write_json(tmp / "run.json", info)
    tmp.rename(run_dir)


def _cli() -> list[str]:
    """The command line of this installation's ``lstm-recipes``."""
    script = Path(sys.executable).parent / "lstm-recipes"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from lstm_recipes.cli import main; sys.exit(main())"]


def _die_with_parent() -> None:
    """In the child, before it runs: ask Linux to kill it when the search process dies, so that
    a killed search leaves no trial training on (the rerun resumes that trial itself)."""
    # Elsewhere than Linux, a killed search's trial runs to its end.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def train_in_subprocess(s: dict, overrides: list[str], run_dir: Path, deadline: float) -> None:
    """``lstm-recipes train`` for one trial in its own process.

    TensorFlow keeps native memory of every model a process built, even after
    ``keras.backend.clear_session()``: about 35 MiB per tiny trial and 75 MiB per UPOS trial in
    one process, measured. A long search would run out of memory; a process per trial returns it.

    Args:
        s: the search's settings (recipe, data specs, preset).
        overrides: the trial's ``--set`` lines.
        run_dir: the trial's run directory.
        deadline: the ``time.time()`` at which training stops.
    """
    command = [*_cli(), "train", s["recipe"], "--data", s["data"], "--preset", s["preset"]]
    for option in ("test_data", "validation_data"):
        if s[option]:
            command += [f"--{option.replace('_', '-')}", s[option]]
    for line in overrides:
        command += ["--set", line]
    command += ["--run-dir", str(run_dir), "--deadline", repr(deadline)]
    proc = subprocess.run(
        command, stderr=subprocess.PIPE, text=True, preexec_fn=_die_with_parent, check=False
    )
    sys.stderr.write(proc.stderr)
    if proc.returncode == 130:
        raise KeyboardInterrupt
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
        reason = errors[-1].removeprefix("Error: ") if errors else f"exit {proc.returncode}"
        raise UserError(reason)
