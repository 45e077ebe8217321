"""SavedModel export: raw-input signatures, versioned folders, atomic writes, verified on reload.

The exported model wraps preprocessing + model + decoding in one graph function per signature,
so it serves what a user has (text, image bytes, float frames) without this package.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from lstm_recipes.errors import UserError

METADATA_FILE = "assets.extra/lstm_recipes.json"


@dataclasses.dataclass
class Serving:
    """What a recipe exports.

    Args:
        endpoints: signature name -> ``tf.function`` with an ``input_signature``.
        track: layers and models whose variables and lookup tables the endpoints use.
        samples: signature name -> keyword inputs (plain lists, or ``binary_sample(...)`` for
            bytes) used to verify the export.
        requires: Python modules a consumer imports before loading, to register the custom
            ops the graph uses (``tensorflow_text`` for subword units); none for most models.
    """

    endpoints: dict
    track: list
    samples: dict
    requires: tuple[str, ...] = ()


# A version being written: not an integer, so TF Serving and next_version() never take it
# for a version; the process id tells a live writer from one that was killed.
TMP_PREFIX = ".tmp-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(export_root: Path) -> list[Path]:
    """Remove temporary version folders left by exports that were killed; returns them.

    Args:
        export_root: folder of numbered versions.
    """
    removed = []
    for path in export_root.glob(f"{TMP_PREFIX}*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another export is writing it now
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def next_version(export_root: Path) -> int:
    """One more than the highest numbered version folder under ``export_root`` (1 if none)."""
    versions = [int(p.name) for p in export_root.glob("*") if p.name.isdigit()]
    return max(versions, default=0) + 1


def latest_version(path: Path) -> Path:
    """The SavedModel folder meant by ``path``: itself, its newest version, or a run's export.

    Args:
        path: a SavedModel folder, a folder of numbered versions, or a run directory.
    """
    if (path / "saved_model.pb").exists():
        return path
    for root in (path, path / "export"):
        versions = sorted(
            (p for p in root.glob("*") if p.name.isdigit()), key=lambda p: int(p.name)
        )
        versions = [p for p in versions if (p / "saved_model.pb").exists()]
        if versions:
            return versions[-1]
    raise UserError(
        f"expected a SavedModel (a folder with saved_model.pb), a folder of numbered versions, "
        f"or a run directory with export/, found none at {path}"
    )


def to_plain(value) -> list:
    """An output tensor or array as plain Python (text decoded from UTF-8) for JSON."""
    array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    if isinstance(array, bytes):
        return array.decode("utf-8", "replace")
    if array.dtype == object or array.dtype.kind == "S":
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array).tolist()
    return array.tolist()


def binary_sample(values: list[bytes]) -> dict:
    """A verification sample of raw bytes (e.g. image files), carried as base64 in JSON.

    Args:
        values: the byte strings.
    """
    import base64

    return {"base64": [base64.b64encode(v).decode("ascii") for v in values]}


def _unwrap(value):
    import base64

    if isinstance(value, dict):
        return [base64.b64decode(x) for x in value["base64"]]
    return value


def run_samples(endpoints: dict, samples: dict) -> dict:
    """Outputs of each endpoint on its samples, as plain lists (the in-process reference)."""
    results = {}
    for name, inputs in samples.items():
        spec = endpoints[name].input_signature
        # Positional, in the signature's order: a spec's name need not be the argument's.
        args = [tf.constant(_unwrap(inputs[s.name]), dtype=s.dtype) for s in spec]
        outputs = endpoints[name](*args)
        results[name] = {k: to_plain(v) for k, v in outputs.items()}
    return results


# Runs in a fresh interpreter: only TensorFlow, never this package, as a user's server would.
# Nor Keras, unless a required module needs it (tensorflow-text does): TensorFlow would import
# it, with matplotlib and scikit-learn (3-5 s of a 12-15 s check), and TF Serving has none.
_VERIFY_SCRIPT = r"""
import json, sys
if len(sys.argv) == 2:
    sys.modules["keras"] = None
import numpy as np
import tensorflow as tf
assert "lstm_recipes" not in sys.modules
path, samples = sys.argv[1], json.load(sys.stdin)
for module in sys.argv[2:]:  # what the model's metadata says a consumer imports
    __import__(module)
import base64
def _unwrap(v):
    return [base64.b64decode(x) for x in v["base64"]] if isinstance(v, dict) else v
loaded = tf.saved_model.load(path)
results = {}
for name, inputs in samples.items():
    fn = loaded.signatures[name]
    specs = fn.structured_input_signature[1]
    outputs = fn(**{k: tf.constant(_unwrap(v), dtype=specs[k].dtype) for k, v in inputs.items()})
    plain = {}
    for k, v in outputs.items():
        a = v.numpy()
        if isinstance(a, bytes):
            plain[k] = a.decode("utf-8", "replace")
            continue
        if a.dtype == object:
            a = np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(a)
        plain[k] = a.tolist()
    results[name] = plain
json.dump(results, sys.stdout)
"""


def run_fresh(
    script: str, path: Path, samples: dict, what: str, requires: tuple[str, ...] = ()
) -> dict:
    """The JSON that ``script`` prints when run on ``path`` and ``samples`` in a new Python.

    Args:
        script: Python source; reads the samples from stdin and ``path`` from ``sys.argv[1]``.
        path: the exported model.
        samples: signature name -> keyword inputs.
        what: the model's name in the error (e.g. "the exported model").
        requires: modules the child imports first (custom ops), passed after ``path``.
    """
    path = path.resolve()  # the child runs in another folder
    proc = subprocess.run(
        [sys.executable, "-c", script, str(path), *requires],
        input=json.dumps(samples),
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        cwd=path.parent,
    )
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise RuntimeError(
            f"{what} failed to load or run in a fresh process: "
            f"{lines[-1] if lines else 'no error output'}\n{proc.stderr[-3000:]}"
        )
    return json.loads(proc.stdout)


def check_equal(expected: dict, actual: dict, atol: float, what: str) -> None:
    """Raise unless every output in ``actual`` equals ``expected`` (floats within ``atol``).

    Args:
        expected: signature name -> output name -> plain value.
        actual: the same structure, from another run.
        atol: tolerance for numeric outputs.
        what: how ``actual`` was obtained, for the error (e.g. "after reload").
    """
    for name, outputs in expected.items():
        for key, want in outputs.items():
            got = actual[name][key]
            want_a, got_a = np.asarray(want), np.asarray(got)
            same = (
                np.allclose(want_a, got_a, atol=atol)
                if want_a.dtype.kind in "fiu" and want_a.shape == got_a.shape
                else want == got
            )
            if not same:
                raise RuntimeError(
                    f"signature {name!r} output {key!r} differs {what}: "
                    f"expected {want!r:.300}, got {got!r:.300}"
                )


def verify_in_fresh_process(
    path: Path,
    samples: dict,
    expected: dict,
    atol: float = 1e-4,
    requires: tuple[str, ...] = (),
) -> None:
    """Load ``path`` in a new Python process that imports only TensorFlow (and ``requires``)
    and compare outputs.

    Args:
        path: the SavedModel folder.
        samples: signature name -> keyword inputs.
        expected: the in-process outputs from ``run_samples``.
        atol: tolerance for float outputs.
        requires: modules a consumer imports before loading (``Serving.requires``).
    """
    actual = run_fresh(_VERIFY_SCRIPT, path, samples, "the exported model", requires)
    check_equal(expected, actual, atol, "in the exported model after reload")


def export_saved_model(serving: Serving, export_root: Path, metadata: dict) -> Path:
    """Write ``export_root/<next version>/`` atomically and verify it in a fresh process.

    The SavedModel is written to a hidden temporary folder beside the versions, verified, and
    only then renamed into place, so no reader ever sees a half-written or unverified version
    and an existing version is never overwritten.

    Args:
        serving: the recipe's endpoints, tracked objects and verification samples.
        export_root: folder of numbered versions (TF Serving's layout).
        metadata: JSON facts saved in ``assets.extra/lstm_recipes.json`` (recipe, signatures).

    Returns:
        The new version's folder.
    """
    import keras

    if export_root.exists() and not export_root.is_dir():
        raise UserError(f"expected {export_root} to be a folder of export versions, found a file")
    export_root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(export_root)
    version = next_version(export_root)
    tmp = export_root / f"{TMP_PREFIX}{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        archive = keras.export.ExportArchive()
        # Endpoints first: tracing them builds layers first used there (a vectorizer), which
        # ExportArchive.track refuses while unbuilt.
        for name, fn in serving.endpoints.items():
            archive.add_endpoint(name, fn)
        for obj in serving.track:
            archive.track(obj)
        try:
            archive.write_out(str(tmp), verbose=False)
            meta_path = tmp / METADATA_FILE
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            facts = {**metadata, "version": version, "requires": list(serving.requires)}
            meta_path.write_text(json.dumps(facts, indent=2))
        except (OSError, tf.errors.OpError) as e:
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise OSError(
                f"could not write the SavedModel to {tmp} ({type(e).__name__}: {first}); is the "
                f"disk full? Earlier versions in {export_root} are intact"
            ) from e
        expected = run_samples(serving.endpoints, serving.samples)
        verify_in_fresh_process(tmp, serving.samples, expected, requires=serving.requires)
        final = export_root / str(version)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def signature_summary(endpoints: dict) -> dict:
    """Signature name -> {"inputs": {name: "dtype[shape]"}, "outputs": {...}} for model cards."""
    summary = {}
    for name, fn in endpoints.items():
        concrete = fn.get_concrete_function()
        inputs = {s.name: f"{s.dtype.name}{list(s.shape)}" for s in fn.input_signature}
        outputs = {
            k: f"{v.dtype.name}{list(v.shape)}" for k, v in concrete.structured_outputs.items()
        }
        summary[name] = {"inputs": inputs, "outputs": outputs}
    return summary
