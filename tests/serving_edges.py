"""Edge inputs for every signature of an exported model, fed in a separate process.

Each signature gets the inputs its spec allows at the edges (empty batch, empty and 100,000-
character strings, text from every Unicode plane, bytes that are not UTF-8, corrupt and
truncated images, NaN/inf/huge frames, zero steps) and inputs of the wrong shape or width. An
answer must be a valid output (batch size kept, finite probabilities) or a clean error
(``InvalidArgumentError``, or the ``TypeError``/``ValueError`` a signature raises for arguments
that do not fit its spec); a crash of the process (segfault, abort) fails the check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_SCRIPT = r'''
import json, sys
import numpy as np
import tensorflow as tf

# One character from each Unicode plane that has assigned characters (0, 1, 2, 3, 14, 15, 16),
# plus a combining mark, a right-to-left mark, a zero-width joiner and a lone surrogate's bytes.
PLANES = "A\u00e9\u4e2d\U0001F600\U00020000\U00030000\U000E0001\U000F0000\U0010FFFD\u0301\u200f\u200d"
BAD_UTF8 = b"\xff\xfe\xed\xa0\x80 \xc3"
LONG = "a" * 100_000


def png(size=8):
    image = np.random.default_rng(0).integers(0, 255, (size, size, 3), np.uint8)
    return tf.io.encode_png(image).numpy()


def strings(rank, width=None):
    """Edge batches for a string input of rank 1, 2 or 3."""
    texts = [[], [""], [" "], [LONG], [PLANES], [BAD_UTF8], ["ok", "", LONG[:5000]]]
    if rank == 1:
        return {f"strings{i}": t for i, t in enumerate(texts)} | {"wrong_rank": [["a"]]}
    if rank == 2:
        return {
            "empty_batch": np.zeros((0, 3), object),
            "zero_steps": np.zeros((2, 0), object),
            "padding_only": [["", ""]],
            "long_token": [[LONG, "b"]],
            "planes": [list(PLANES)],
            "bad_utf8": [[BAD_UTF8]],
            "wrong_rank": ["a", "b"],
        }
    return {
        "empty_batch": np.zeros((0, 2, width), object),
        "zero_steps": np.zeros((1, 0, width), object),
        "planes": [[[PLANES] * width, [""] * width]],
        "wrong_width": [[["x"] * (width + 1)]],
    }


def images():
    good = png()
    return {
        "empty_batch": [],
        "empty_bytes": [b""],
        "not_an_image": [b"hello"],
        "truncated_png": [good[: len(good) // 2]],
        "flipped_byte": [good[:40] + bytes([good[40] ^ 0xFF]) + good[41:]],
        "good_and_bad": [good, b"\x89PNG\r\n\x1a\n"],
        "one_pixel": [png(1)],
        "wrong_rank": [[good]],
    }


def frames(width):
    return {
        "empty_batch": np.zeros((0, 4, width), np.float32),
        "zero_steps": np.zeros((1, 0, width), np.float32),
        "one_step": np.ones((1, 1, width), np.float32),
        "nan_rows": np.full((1, 5, width), np.nan, np.float32),
        "some_nan": np.where(np.eye(5, width) > 0, np.nan, 1.0).astype(np.float32)[None],
        "inf": np.full((2, 3, width), np.inf, np.float32),
        "huge": np.full((1, 3, width), 3e38, np.float32),
        "long": np.zeros((1, 5000, width), np.float32),
        "wrong_width": np.zeros((1, 3, width + 1), np.float32),
        "wrong_rank": np.zeros((3, width), np.float32),
    }


def step_cases(specs):
    """A step signature: one step's input and the packed states (float32[B, layers * n, units])."""
    (name,) = set(specs) - {"states"}
    spec, shape = specs[name], specs["states"].shape[1:].as_list()
    step = lambda rows, fill: np.full([rows, *spec.shape[1:]], fill, spec.dtype.as_numpy_dtype)
    zeros = lambda rows, width=shape[1]: np.zeros([rows, shape[0], width], np.float32)
    out = {
        "empty_batch": {name: step(0, 1), "states": zeros(0)},
        "zeros": {name: step(2, 1), "states": zeros(2)},
        "wrong_rows": {name: step(2, 1), "states": zeros(3)},
        "wrong_states_width": {name: step(1, 1), "states": zeros(1, shape[1] + 1)},
        "wrong_rank": {name: step(1, 1)[None], "states": zeros(1)},
    }
    if spec.dtype.is_integer:  # ids outside the vocabulary
        out |= {"negative": {name: step(1, -1), "states": zeros(1)}}
        out |= {"huge_id": {name: step(1, 2**31 - 1), "states": zeros(1)}}
    return out


def cases(specs):
    """Case name -> keyword inputs, for a signature's input specs."""
    names = sorted(specs)
    if set(names) == {"prompt", "num_chars", "temperature", "seed"}:
        base = {"prompt": "ROMEO:", "num_chars": 20, "temperature": 0.8, "seed": 1}
        out = {}
        for key, values in {
            "prompt": ["", LONG, PLANES, BAD_UTF8],
            "num_chars": [0, -1, 3000],
            "temperature": [0.0, -1.0, float("nan"), float("inf"), 1e-30],
            "seed": [-1, 2**31 - 1],
        }.items():
            for i, value in enumerate(values):
                out[f"{key}{i}"] = {**base, key: value}
        out["wrong_rank"] = {**base, "prompt": ["a", "b"]}
        return out
    if len(names) == 2 and "states" in names:
        return step_cases(specs)
    if len(names) == 1:
        spec = specs[names[0]]
        if spec.dtype == tf.float32:
            return {k: {names[0]: v} for k, v in frames(spec.shape[-1]).items()}
        if names[0] in ("image_bytes", "image", "images"):
            return {k: {names[0]: v} for k, v in images().items()}
        return {k: {names[0]: v} for k, v in strings(spec.shape.rank).items()}
    # tokens + features
    width = specs["features"].shape[-1]
    out = {}
    for k, tokens in strings(2).items():
        if k == "wrong_rank":
            continue
        t = np.asarray(tokens, object)
        out[k] = {"tokens": t, "features": np.full(t.shape + (width,), "x", object)}
    out["features_wrong_steps"] = {"tokens": [["a", "b"]], "features": [[["x"] * width]]}
    for k, features in strings(3, width).items():
        out["features_" + k] = {"tokens": np.full(np.shape(features)[:2], "a", object), "features": features}
    return out


def check(outputs, batch):
    for key, value in outputs.items():
        a = np.asarray(value.numpy())
        if batch is not None and a.ndim and a.shape[0] != batch:
            return f"output {key} has {a.shape[0]} rows for {batch} inputs"
        if a.dtype.kind == "f" and not np.isfinite(a).all() and key != "bits_per_char":
            return f"output {key} is not finite"
        if a.dtype == object:
            for b in a.reshape(-1):
                b.decode("utf-8")
    return None


loaded = tf.saved_model.load(sys.argv[1])
for name in sorted(loaded.signatures):
    fn = loaded.signatures[name]
    specs = fn.structured_input_signature[1]
    for case, inputs in cases(specs).items():
        print(json.dumps({"signature": name, "case": case, "started": True}), flush=True)
        try:
            args = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()}
            outputs = fn(**args)
            batch = None
            first = args[sorted(args)[0]]
            if first.shape.rank and first.shape.rank >= 1 and "prompt" not in args:
                batch = int(first.shape[0])
            problem = check(outputs, batch)
            outcome = "invalid output: " + problem if problem else "ok"
        except tf.errors.InvalidArgumentError as e:
            outcome = "InvalidArgumentError"
        except (TypeError, ValueError) as e:
            outcome = "rejected by the signature: " + type(e).__name__
        except Exception as e:
            outcome = f"unexpected {type(e).__name__}: {str(e)[:200]}"
        print(json.dumps({"signature": name, "case": case, "outcome": outcome}), flush=True)
print(json.dumps({"done": True}), flush=True)
'''


def run_edge_inputs(export_dir: Path, timeout: float = 300) -> list[dict]:
    """Feed the edge cases to every signature of ``export_dir`` in a fresh process.

    Returns one record per case; fails (AssertionError) if the process crashed or hung, or if a
    case gave anything but a valid output or a clean error.

    Args:
        export_dir: a SavedModel folder.
        timeout: seconds for all the cases.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(export_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=export_dir,
    )
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    last = records[-1] if records else {}
    assert proc.returncode == 0 and last.get("done"), (
        f"the serving process ended with status {proc.returncode} during {last}: "
        f"{proc.stderr[-2000:]}"
    )
    results = [r for r in records if "outcome" in r]
    bad = [
        r
        for r in results
        if r["outcome"] != "ok"
        and r["outcome"] != "InvalidArgumentError"
        and not r["outcome"].startswith("rejected by the signature")
    ]
    assert not bad, bad
    # Inputs that fit the spec must not be rejected in Python (only ill-shaped ones may be).
    rejected = [
        r for r in results if r["outcome"].startswith("rejected") and "wrong" not in r["case"]
    ]
    assert not rejected, rejected
    return results
