"""How a command behaves as a process: quiet TensorFlow start-up, one-line errors, exit codes.

Bad input (``UserError``) exits 2 with one line; any other failure exits 1 with one line (and
a hint when the disk is full); Ctrl-C exits 130 saying how to resume. ``lstm-recipes --debug``
shows tracebacks instead.
"""

from __future__ import annotations

import errno
import functools
import os
import sys

import click

from lstm_recipes.errors import UserError

EXIT_USER_ERROR = 2
EXIT_FAILURE = 1


def quiet_tensorflow() -> None:
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
