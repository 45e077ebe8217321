"""``tfds:NAME`` specs: load a TensorFlow Datasets dataset, failing fast when offline."""

from __future__ import annotations

import contextlib
import socket
import tempfile

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

    name = spec[len(TFDS_PREFIX) :]
    if not name:
        raise UserError("expected tfds:NAME (e.g. tfds:imdb_reviews), got an empty name")
    builder = make_builder(name, data_dir)
    try:
        datasets = _load_splits(tfds, name, builder, data_dir, download=False)
    except (AssertionError, FileNotFoundError):
        if not _online():
            raise UserError(
                f"TFDS dataset {name!r} is not prepared on this machine and the network is not "
                f"reachable, so it cannot be downloaded. Offline, use local files instead: "
                f"{offline_hint}"
            ) from None
        print(f"downloading and preparing TFDS dataset {name!r} (first use only)", flush=True)
        builder.download_and_prepare()
        datasets = _load_splits(tfds, name, builder, data_dir, download=False)
    info = builder.info
    features = info.features
    missing = [k for k in keys if k not in features]
    if missing:
        raise UserError(
            f"TFDS dataset {name!r} has no feature {', '.join(missing)}; its features are "
            f"{', '.join(features)} (choose with --set)"
        )
    splits = {}
    for split, ds in datasets.items():
        rows = []
        for example in tfds.as_numpy(ds):
            rows.append(tuple(_plain(example[k]) for k in keys))
        splits[split] = rows
    return splits, info


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
