"""``tfds:NAME`` specs: load a TensorFlow Datasets dataset, failing fast when offline."""

from __future__ import annotations

import contextlib
import socket
import tempfile
from collections.abc import Iterator

from lstm_recipes.errors import UserError

TFDS_PREFIX = "tfds:"
_DOWNLOAD_HOST = ("storage.googleapis.com", 443)


def is_tfds_spec(spec: str) -> bool:
    return spec.startswith(TFDS_PREFIX)


# How long the network check waits for the download host. Where its name does not resolve (an
# offline machine) the check fails at once (8 ms measured here); only a network that drops
# packets silently makes it wait this long.
NETWORK_TIMEOUT_SECONDS = 3.0


def _online(timeout: float = NETWORK_TIMEOUT_SECONDS) -> bool:
    try:
        with socket.create_connection(_DOWNLOAD_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def load_tfds(spec: str, keys: list[str], offline_hint: str, data_dir: str | None = None):
    """Examples of every split of a TFDS dataset as tuples of the named feature values.

    Looks for a prepared copy first (``download=False`` fails in milliseconds); downloads only
    when none is there and the network answers, so an offline machine fails fast.

    Args:
        spec: ``tfds:NAME`` or ``tfds:NAME/CONFIG``.
        keys: feature keys to take from each example, in order.
        offline_hint: what the user can use instead, shown when the data cannot be had.
        data_dir: TFDS data folder (default: TFDS's own, ``~/tensorflow_datasets``).

    Returns:
        (dict split name -> list of tuples, tfds.core.DatasetInfo)
    """
    with contained_tempfiles():
        return _load_tfds(spec, keys, offline_hint, data_dir)


def _load_tfds(spec: str, keys: list[str], offline_hint: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    name, builder = prepared_builder(spec, offline_hint, data_dir)
    check_features(name, builder.info, keys)
    datasets = _load_splits(tfds, name, builder, data_dir, download=False)
    splits = {}
    for split, ds in datasets.items():
        rows = []
        for example in tfds.as_numpy(ds):
            rows.append(tuple(_plain(example[k]) for k in keys))
        splits[split] = rows
    return splits, builder.info


def prepared_builder(spec: str, offline_hint: str, data_dir: str | None = None):
    """(name, builder) of a TFDS dataset that is prepared on this machine: looked for first
    (``download=False`` fails in milliseconds), downloaded only when missing and the network
    answers, so an offline machine fails fast.

    Args:
        spec: ``tfds:NAME`` or ``tfds:NAME/CONFIG``.
        offline_hint: what the user can use instead, shown when the data cannot be had.
        data_dir: TFDS data folder (default: TFDS's own).
    """
    import tensorflow_datasets as tfds

    name = spec[len(TFDS_PREFIX) :]
    if not name:
        raise UserError("expected tfds:NAME (e.g. tfds:imdb_reviews), got an empty name")
    builder = make_builder(name, data_dir)
    try:
        _load_splits(tfds, name, builder, data_dir, download=False)
    except (AssertionError, FileNotFoundError):
        if not _online():
            raise UserError(
                f"TFDS dataset {name!r} is not prepared on this machine and the network is not "
                f"reachable, so it cannot be downloaded. Offline, use local files instead: "
                f"{offline_hint}"
            ) from None
        print(f"downloading and preparing TFDS dataset {name!r} (first use only)", flush=True)
        builder.download_and_prepare()
    return name, builder


def check_features(name: str, info, keys: list[str]) -> None:
    """A one-line error when the dataset lacks a feature the config names.

    Args:
        name: the dataset name, for the message.
        info: its ``tfds.core.DatasetInfo``.
        keys: the feature keys wanted.
    """
    missing = [k for k in keys if k not in info.features]
    if missing:
        raise UserError(
            f"TFDS dataset {name!r} has no feature {', '.join(missing)}; its features are "
            f"{', '.join(info.features)} (choose with --set)"
        )


@contextlib.contextmanager
def contained_tempfiles():
    """Temporary files made inside go to one folder that is removed on the way out.

    TFDS's ``DatasetInfo.initialize_from_bucket`` makes a ``mkdtemp("tfds")`` folder each time
    the info of an unprepared dataset is read, and never removes it.
    """
    with tempfile.TemporaryDirectory(prefix="lstm-recipes-tfds-") as folder:
        saved, tempfile.tempdir = tempfile.tempdir, folder
        try:
            yield
        finally:
            tempfile.tempdir = saved


def make_builder(name: str, data_dir: str | None = None):
    """``tfds.builder(name)``, with a UserError for a name TFDS does not know or cannot parse.

    Args:
        name: ``NAME``, ``NAME/CONFIG`` or ``NAME:VERSION``.
        data_dir: TFDS data folder (default: TFDS's own).
    """
    import tensorflow_datasets as tfds

    try:
        with contained_tempfiles():
            return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise UserError(f"TFDS has no dataset named {name!r}; see tfds.list_builders()") from None
    except ValueError as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise UserError(
            f"expected tfds:NAME[/CONFIG][:VERSION] naming a TFDS dataset, got {name!r}: {first}"
        ) from None


def _load_splits(tfds, name, builder, data_dir, download: bool) -> dict:
    # An unprepared dataset may not know its splits yet; train and test are the common pair.
    known = list(builder.info.splits)
    wanted = (
        [s for s in ("train", "validation", "test") if s in known] if known else ["train", "test"]
    )
    loaded = tfds.load(name, split=wanted, data_dir=data_dir, download=download)
    return dict(zip(wanted, loaded))


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


# ----------------------------------------------------------------------------- streamed splits

_SPLIT_MARK = "@"  # shard names are tfds:NAME@SPLIT; TFDS names hold "/" and ":", never "@"


def stream_shards(spec: str, keys: list[str], offline_hint: str) -> tuple[dict, object]:
    """The splits of a TFDS dataset as shard names for ``corpus.splits`` (read by
    ``read_split``), so that no split is materialised into a list.

    Args:
        spec: ``tfds:NAME`` or ``tfds:NAME/CONFIG``.
        keys: feature keys each example must have.
        offline_hint: what the user can use instead, shown when the data cannot be had.

    Returns:
        (dict split name -> [shard name], tfds.core.DatasetInfo)
    """
    with contained_tempfiles():
        name, builder = prepared_builder(spec, offline_hint)
    check_features(name, builder.info, keys)
    splits = list(builder.info.splits) or ["train", "test"]
    return {s: [f"{TFDS_PREFIX}{name}{_SPLIT_MARK}{s}"] for s in splits}, builder.info


def read_split(path: str, fields, report) -> Iterator[tuple[list[list[str]], list[int]]]:
    """One TFDS split's examples in batches of text columns (``shards.read_batches``'s form):
    strings decoded as UTF-8 (undecodable bytes replaced and counted), class labels as their
    names, numbers as text, and a sequence feature (tokens, tags) as its values joined by
    newlines (``conll.from_row`` splits them).

    Args:
        path: ``tfds:NAME@SPLIT`` from ``stream_shards``.
        fields: ``shards.Fields`` naming the features.
        report: the run's ``reading.Report``.
    """
    import tensorflow_datasets as tfds

    from lstm_recipes.data import shards

    name, split = path.removeprefix(TFDS_PREFIX).rsplit(_SPLIT_MARK, 1)
    with contained_tempfiles():
        builder = make_builder(name)
    features = builder.info.features
    names = {}
    for key in fields.names:
        feature = getattr(features[key], "feature", features[key])  # a Sequence's items
        names[key] = list(getattr(feature, "names", None) or [])

    def text(value, labels: list[str]) -> str:
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return report.replace(value, "utf-8", path)
        if getattr(value, "ndim", 0) == 1:
            return "\n".join(text(v, labels) for v in value)
        value = value.item() if hasattr(value, "item") else value
        return labels[value] if labels and isinstance(value, int) else str(value)

    ds = builder.as_dataset(split=split, shuffle_files=False).prefetch(64)
    columns: list[list[str]] = [[] for _ in fields.names]
    done = 0
    for example in tfds.as_numpy(ds):
        for column, key in zip(columns, fields.names):
            column.append(text(example[key], names[key]))
        done += 1
        if done % shards.BATCH_ROWS == 0:
            yield columns, list(range(done - len(columns[0]) + 1, done + 1))
            columns = [[] for _ in fields.names]
    if columns[0]:
        yield columns, list(range(done - len(columns[0]) + 1, done + 1))
