"""LiteRT (TFLite) export: a ``.tflite`` file for phones and watches, versioned and verified.

A recipe's ``portable(config, model, prep)`` names numeric signatures with a batch of one
(no string ops a device lacks). They are traced with Keras's step loop (``fused.keras_loop``),
their variables frozen into constants, and converted to builtin LiteRT ops only. The file lands
in ``RUN_DIR/export/litert/<N>/`` through a temporary folder, like the SavedModel versions, after
a fresh process that imports only the LiteRT interpreter (``ai-edge-litert``, no TensorFlow)
ran every signature on its samples and got the outputs of this process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from lstm_recipes import compat, fused
from lstm_recipes import export as export_lib
from lstm_recipes.errors import UserError

MODEL_FILE = "model.tflite"
METADATA_FILE = "metadata.json"
QUANTIZE = ("none", "dynamic", "float16", "int8")


@dataclasses.dataclass
class Portable:
    """What a recipe exports to LiteRT.

    Args:
        endpoints: signature name -> ``tf.function`` with a batch-1 ``input_signature``.
        samples: signature name -> keyword inputs (nested lists) to verify the file with.
        metadata: JSON facts written beside the model (labels, window, streaming).
        files: file name -> text written beside the model (a vocabulary).
    """

    endpoints: dict
    samples: dict
    metadata: dict = dataclasses.field(default_factory=dict)
    files: dict = dataclasses.field(default_factory=dict)


def _named_outputs(frozen, outputs):
    # A frozen function returns a flat list: its signature would name them output_0, ...
    def wrapper(*args):
        return tf.nest.pack_sequence_as(outputs, tf.nest.flatten(frozen(*args)))

    return wrapper


def _frozen_module(portable: Portable) -> tuple[tf.Module, dict]:
    """A variable-free module with one wrapper per signature (output names kept)."""
    module, signatures = tf.Module(), {}
    with fused.keras_loop():
        for name, fn in portable.endpoints.items():
            concrete = fn.get_concrete_function()
            wrapper = _named_outputs(compat.frozen_function(concrete), concrete.structured_outputs)
            wrapped = tf.function(wrapper, input_signature=list(fn.input_signature))
            setattr(module, f"fn_{name}", wrapped)
            signatures[name] = wrapped.get_concrete_function()
    return module, signatures


def _not_converting(error: Exception) -> UserError:
    # Every recipe cell converts (lstm, the Greff et al. variants, gru, simple_rnn: measured);
    # what fails is an op with no builtin kernel, which the converter names.
    ops = sorted(set(re.findall(r"'tf\.(\w+)' op", str(error))))
    if ops:
        return UserError(
            f"cannot convert to LiteRT: TensorFlow op(s) {', '.join(ops[:5])} have no builtin "
            "LiteRT kernel; nothing was written"
        )
    lines = str(error).splitlines() or [""]
    first = next((line for line in lines if "error" in line.lower()), lines[0])
    detail = first.strip()[:300] or type(error).__name__
    return UserError(f"cannot convert to LiteRT: {detail}; nothing was written")


def convert(portable: Portable, quantize: str = "none") -> bytes:
    """The ``.tflite`` bytes of ``portable``'s signatures.

    Args:
        portable: the recipe's numeric signatures.
        quantize: ``none``, ``dynamic`` (int8 weights) or ``float16`` (half weights); ``int8``
            is refused (see below).
    """
    if quantize not in QUANTIZE:
        raise UserError(f"expected --quantize in {', '.join(QUANTIZE)}, found {quantize!r}")
    if quantize == "int8":
        # Measured with TensorFlow 2.21: calibrating an LSTM's while loop crashes the converter
        # (segmentation fault), so it is refused before it can take the process down.
        raise UserError(
            "--quantize int8 does not convert LSTM loops with this TensorFlow (its calibration "
            "crashes); use --quantize dynamic (int8 weights) or float16"
        )
    try:
        module, signatures = _frozen_module(portable)
        with tempfile.TemporaryDirectory() as tmp:
            tf.saved_model.save(module, tmp, signatures=signatures)
            converter = tf.lite.TFLiteConverter.from_saved_model(tmp, list(signatures))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            if quantize != "none":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantize == "float16":
                converter.target_spec.supported_types = [tf.float16]
            return converter.convert()
    except UserError:
        raise
    except Exception as e:  # the converter raises ConverterError and others
        raise _not_converting(e) from None


def run_interpreter(blob: bytes, samples: dict) -> dict:
    """Outputs of each signature of a ``.tflite`` model on its samples, as plain lists."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=blob)
    results = {}
    for name, inputs in samples.items():
        runner = interpreter.get_signature_runner(name)
        details = runner.get_input_details()
        args = {k: np.asarray(v, dtype=details[k]["dtype"]) for k, v in inputs.items()}
        results[name] = {k: export_lib.to_plain(v) for k, v in runner(**args).items()}
    return results


# Runs in a fresh interpreter with the LiteRT runtime only, as an app's Python would.
_VERIFY_SCRIPT = r"""
import importlib.abc, json, sys
class NoTensorFlow(importlib.abc.MetaPathFinder):  # as on a device: TensorFlow is not there
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "lstm_recipes", "keras"):
            raise ImportError(f"{name} is blocked: LiteRT only")
sys.meta_path.insert(0, NoTensorFlow())
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1])
results = {}
for name, inputs in json.load(sys.stdin).items():
    runner = interpreter.get_signature_runner(name)
    details = runner.get_input_details()
    out = runner(**{k: np.asarray(v, dtype=details[k]["dtype"]) for k, v in inputs.items()})
    plain = {}
    for k, v in out.items():
        if v.dtype == object or v.dtype.kind == "S":
            v = np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(v)
        plain[k] = v.tolist()
    results[name] = plain
json.dump(results, sys.stdout)
"""


def verify_in_fresh_process(path: Path, samples: dict, expected: dict, atol: float) -> None:
    """Run ``path`` in a new Python that imports only ``ai_edge_litert`` and compare outputs.

    Args:
        path: the ``.tflite`` file.
        samples: signature name -> keyword inputs.
        expected: the outputs this process computed.
        atol: tolerance for float outputs.
    """
    actual = export_lib.run_fresh(_VERIFY_SCRIPT, path, samples, "the LiteRT model")
    export_lib.check_equal(expected, actual, atol, "in LiteRT after reload")


def export_litert(portable: Portable, export_root: Path, quantize: str, metadata: dict) -> Path:
    """Write ``export_root/litert/<next version>/model.tflite`` atomically, verified.

    An unquantized model's outputs must equal the TensorFlow graph's (1e-4); every model's
    outputs in a fresh LiteRT-only process must equal this process's interpreter's.

    Args:
        portable: the recipe's numeric signatures, samples and metadata.
        export_root: the run's ``export/`` folder.
        quantize: one of ``QUANTIZE``.
        metadata: JSON facts for ``metadata.json`` (recipe, signatures).

    Returns:
        The new version's folder.
    """
    blob = convert(portable, quantize)
    root = export_root / "litert"
    root.mkdir(parents=True, exist_ok=True)
    export_lib.remove_stale_temporaries(root)
    version = export_lib.next_version(root)
    tmp = root / f"{export_lib.TMP_PREFIX}{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        (tmp / MODEL_FILE).write_bytes(blob)
        for name, text in portable.files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        interpreted = run_interpreter(blob, portable.samples)
        if quantize == "none":
            graph = export_lib.run_samples(portable.endpoints, portable.samples)
            export_lib.check_equal(graph, interpreted, 1e-4, "between TensorFlow and LiteRT")
        verify_in_fresh_process(tmp / MODEL_FILE, portable.samples, interpreted, 1e-5)
        facts = {**metadata, **portable.metadata, "quantize": quantize, "version": version}
        facts["bytes"] = len(blob)
        (tmp / METADATA_FILE).write_text(json.dumps(facts, indent=2))
        final = root / str(version)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
