"""How a run reads its files: the text encoding, undecodable bytes, and a bound on bad rows.

A run sets these once, from its config, around loading its data::

    with reading.options(encoding="cp1252", decode_errors="replace", skip_bad_rows=10) as report:
        splits = module.load_data(config, data, test_data)
    report.summary()  # what was replaced or skipped, for the run's records and model card

Every reader in ``lstm_recipes.data`` decodes with ``decode`` and reports a broken record with
``bad_row``; with the defaults (UTF-8, strict, no skipping) they behave as before: the first
problem is a one-line error naming the file and line. A context variable carries the settings,
so that the readers' signatures (and recipes copied by users) need not thread them through.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Literal

from lstm_recipes.errors import UserError

# The ``decode_errors`` a recipe config may name.
DecodeErrors = Literal["strict", "replace"]

# Rows listed one by one in the run's output and records; the rest are counted.
SHOWN = 20


@dataclasses.dataclass
class Report:
    """What reading replaced or skipped.

    Args:
        encoding: the codec files are decoded with.
        decode_errors: ``strict`` (refuse undecodable bytes) or ``replace`` (U+FFFD, counted).
        skip_bad_rows: how many broken rows (or missing images) may be skipped before refusing.
    """

    encoding: str = "utf-8"
    decode_errors: str = "strict"
    skip_bad_rows: int = 0
    quiet: bool = False  # skip without printing (a second pass over rows already reported)
    replaced: int = 0  # undecodable bytes replaced by U+FFFD
    replaced_in: dict = dataclasses.field(default_factory=dict)  # file -> replaced bytes
    skipped: list = dataclasses.field(default_factory=list)  # "file:line: why", first SHOWN
    skipped_count: int = 0

    def bad_row(self, where: str, message: str) -> None:
        """Skip a broken row within the bound, or refuse with ``message``.

        Args:
            where: ``file:line`` (or ``file``) of the row, as the message's prefix.
            message: what was expected and what was found, as in any one-line error.
        """
        if self.skipped_count >= self.skip_bad_rows:
            raise self.refusal(f"{where}: {message}")
        self.skipped_count += 1
        if self.quiet:
            return
        if len(self.skipped) < SHOWN:
            self.skipped.append(f"{where}: {message}")
            print(f"skipped {where}: {message}", flush=True)
        elif self.skipped_count == SHOWN + 1:
            print(f"skipping more bad rows; only their count is kept after {SHOWN}", flush=True)

    def room(self) -> int:
        """How many more bad rows may be skipped."""
        return max(0, self.skip_bad_rows - self.skipped_count)

    def refusal(self, text: str) -> UserError:
        """The error for a bad row (or several) past the bound: ``text`` and how to go on.

        Args:
            text: the one-line message, ``where: what was expected and what was found``.
        """
        extra = (
            f" ({self.skipped_count:,} bad rows skipped before it; skip_bad_rows="
            f"{self.skip_bad_rows:,} allows no more)"
            if self.skip_bad_rows
            else " (or skip such rows with --set skip_bad_rows=N)"
        )
        return UserError(f"{text}{extra}")

    def replace(self, raw: bytes, codec: str, where: str) -> str:
        """``raw`` decoded with undecodable bytes as U+FFFD, counted against ``where``.

        Args:
            raw: the bytes.
            codec: the codec to decode with.
            where: the file, for the per-file count.
        """
        # Count bytes, not replacement characters: one U+FFFD may stand for several bytes.
        bad = undecodable_bytes(raw, codec)
        self.replaced += bad
        self.replaced_in[where] = self.replaced_in.get(where, 0) + bad
        return raw.decode(codec, errors="replace")

    def summary(self) -> dict:
        """The report as plain data for ``data_report.json`` and the model card (empty when
        nothing was replaced or skipped)."""
        result = {}
        if self.replaced:
            result["replaced_bytes"] = self.replaced
            result["replaced_in"] = dict(self.replaced_in)
        if self.skipped_count:
            result["skipped_rows"] = self.skipped_count
            result["skipped"] = list(self.skipped)
        if result or self.encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            result["encoding"] = self.encoding
        return result


def describe(summary: dict) -> str:
    """One line on what a ``Report.summary()`` holds ("" when nothing was replaced or skipped).

    Args:
        summary: the summary (as returned, or read back from ``data_report.json``).
    """
    parts = []
    if summary.get("replaced_bytes"):
        files = len(summary.get("replaced_in", {}))
        parts.append(
            f"{summary['replaced_bytes']:,} undecodable byte(s) replaced by U+FFFD in "
            f"{files:,} file(s)"
        )
    if summary.get("skipped_rows"):
        parts.append(f"{summary['skipped_rows']:,} bad row(s) skipped")
    return (
        f"data quality ({summary.get('encoding', 'utf-8')}): " + "; ".join(parts) if parts else ""
    )


_current: contextvars.ContextVar[Report] = contextvars.ContextVar("reading")


def current() -> Report:
    """The settings in force (the defaults outside ``options``)."""
    report = _current.get(None)
    return report if report is not None else Report()


@contextlib.contextmanager
def options(
    encoding: str = "utf-8", decode_errors: str = "strict", skip_bad_rows: int = 0
) -> Iterator[Report]:
    """Read files inside this block with these settings; yields the block's ``Report``.

    Args:
        encoding: any Python codec name (``utf-8``, ``cp1252``, ``latin-1``, ``utf-16``, ...).
        decode_errors: ``strict`` or ``replace``.
        skip_bad_rows: broken rows that may be skipped (each reported) before refusing.
    """
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise UserError(
            f"expected encoding to be a Python codec name such as utf-8, cp1252 or latin-1, "
            f"got {encoding!r}"
        ) from None
    if decode_errors not in ("strict", "replace"):
        raise UserError(f"expected decode_errors strict or replace, got {decode_errors!r}")
    if isinstance(skip_bad_rows, bool) or not isinstance(skip_bad_rows, int) or skip_bad_rows < 0:
        raise UserError(f"expected skip_bad_rows to be a count of 0 or more, got {skip_bad_rows!r}")
    report = Report(encoding, decode_errors, skip_bad_rows)
    token = _current.set(report)
    try:
        yield report
    finally:
        _current.reset(token)


@contextlib.contextmanager
def using(report: Report) -> Iterator[Report]:
    """Make ``report`` the one that ``bad_row`` and ``decode`` use inside the block.

    A reader that is handed its report (a stream's later passes give a quiet one) may call
    code that reads ``current()``; outside ``options`` (e.g. in a ``tf.data`` thread) that
    would otherwise be the strict defaults.

    Args:
        report: the report to use.
    """
    token = _current.set(report)
    try:
        yield report
    finally:
        _current.reset(token)


def options_of(config) -> contextlib.AbstractContextManager[Report]:
    """``options`` from a recipe config's ``encoding``, ``decode_errors`` and ``skip_bad_rows``
    fields (defaults for a config without them).

    Args:
        config: the resolved recipe config.
    """
    return options(
        getattr(config, "encoding", "utf-8"),
        getattr(config, "decode_errors", "strict"),
        getattr(config, "skip_bad_rows", 0),
    )


def bad_row(where: str, message: str) -> None:
    """Skip a broken row within the run's bound, or refuse with ``message`` (see
    ``Report.bad_row``).

    Args:
        where: ``file:line`` of the row.
        message: what was expected and what was found.
    """
    current().bad_row(where, message)


def decode(raw: bytes, where: str) -> str:
    """Text of a file's bytes in the run's encoding (a leading UTF-8 byte order mark is dropped).

    Undecodable bytes are an error naming the line and byte, or, with ``decode_errors=replace``,
    become U+FFFD and are counted in the run's report.

    Args:
        raw: the bytes.
        where: the file's name, for messages and the report.
    """
    report = current()
    encoding = report.encoding.lower().replace("_", "-")
    utf8 = encoding in ("utf-8", "utf8")
    codec = "utf-8-sig" if utf8 else report.encoding
    # Messages name UTF-8 as people write it (and as before encodings could be chosen).
    name = "UTF-8" if utf8 else report.encoding
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as e:
        if report.decode_errors == "replace":
            return report.replace(raw, codec, where)
        if utf8 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            found = "UTF-16 text (it starts with a UTF-16 byte order mark; set encoding=utf-16)"
        else:
            line = raw[: e.start].count(b"\n") + 1
            found = (
                f"byte 0x{raw[e.start]:02x} at offset {e.start} (line {line}) that is not valid "
                f"{name}"
            )
        raise UserError(
            f"expected {name} text in {where}, found {found} (set encoding=NAME for "
            "another codec, e.g. cp1252, or decode_errors=replace to replace and count such bytes)"
        ) from None


def undecodable_bytes(raw: bytes, codec: str) -> int:
    """How many bytes of ``raw`` the codec cannot decode.

    Args:
        raw: the bytes.
        codec: a Python codec name.
    """
    count = 0

    def handler(error: UnicodeDecodeError):
        nonlocal count
        count += error.end - error.start
        return ("\ufffd", error.end)

    # Registering replaces the previous handler of the same name: one name serves every call.
    codecs.register_error("lstm_recipes.count", handler)
    raw.decode(codec, errors="lstm_recipes.count")
    return count
