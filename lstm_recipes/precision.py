"""Training precision: ``float32`` or Keras's ``mixed_bfloat16`` where the hardware has it.

``--set precision=mixed_bfloat16`` trains with Keras's mixed policy: variables, the optimizer
and the loss stay float32; embeddings, attention and dense layers (the vocabulary projections
among them) compute in bfloat16. The LSTM layers (``fused.LSTM``: cells ``lstm`` and ``np``)
keep their recurrence and cell state float32, since a recurrence accumulates rounding over
hundreds of steps; in training, the fused loop's products over all steps at once (the input
projection, and the gradient's input and weight products) run in bfloat16, where the speed is
(``fused.lstm_sequence``). Evaluation, decoding and export build the model in float32 from the
same float32 weights, so an export serves on any CPU.

bfloat16 is fast only with hardware support; elsewhere TensorFlow emulates it, slower than
float32. So the option is refused, in one line, on a CPU without bfloat16 instructions
(``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``) and no GPU.
``LSTM_RECIPES_EMULATED_BF16=1`` allows it anyway (tests run the path that way).

``precision=auto`` is ``mixed_bfloat16`` on a CPU with those instructions and ``float32``
elsewhere: the real-data presets where bfloat16 measured faster at an equal or better test
metric default to it (benchmarks/RESULTS.md, "bfloat16").
"""

from __future__ import annotations

import contextlib
import os
import typing
from pathlib import Path

from lstm_recipes.errors import UserError

Precision = typing.Literal["float32", "mixed_bfloat16", "auto"]
# A search's vocabulary product (translation, captioning): evaluation and the export.
DecodePrecision = typing.Literal["float32", "bfloat16"]
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The CPU's bfloat16 instruction flags (empty where it has none or it cannot be read).

    Args:
        cpuinfo: the file listing the CPU's flags (Linux).
    """
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return [flag for flag in BF16_FLAGS if flag in flags]


def resolve(precision: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The Keras policy a config's ``precision`` trains with: ``auto`` becomes
    ``mixed_bfloat16`` where the CPU has bfloat16 instructions, else ``float32``.

    Args:
        precision: the config's ``precision``.
        cpuinfo: the CPU flags file (a parameter for tests).
    """
    if precision != "auto":
        return precision
    return "mixed_bfloat16" if cpu_bf16_flags(cpuinfo) else "float32"


def shown(asked: str, policy: str) -> str:
    """How a run names its precision: the config's value, and what ``auto`` chose.

    Args:
        asked: the config's ``precision``.
        policy: what ``resolve`` made of it.
    """
    return asked if asked == policy else f"{asked} ({policy} on this CPU)"


def check(precision: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> None:
    """Refuse ``mixed_bfloat16`` where it would run emulated, in one line.

    Args:
        precision: the config's ``precision``.
        cpuinfo: the CPU flags file (a parameter for tests).
    """
    if precision != "mixed_bfloat16" or cpu_bf16_flags(cpuinfo):  # auto never asks for emulation
        return
    if os.environ.get("LSTM_RECIPES_EMULATED_BF16", "").strip() == "1":
        return
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return
    raise UserError(
        "expected a CPU with bfloat16 instructions (avx512_bf16 or amx_bf16) or a GPU for "
        "precision=mixed_bfloat16; this machine has neither, and emulated bfloat16 is slower "
        "than float32: use precision=float32 (LSTM_RECIPES_EMULATED_BF16=1 runs it anyway)"
    )


@contextlib.contextmanager
def training_policy(precision: str):
    """Keras's global dtype policy set to ``precision`` while a model is built for training.

    Args:
        precision: ``float32`` or ``mixed_bfloat16`` (``resolve`` turns ``auto`` into one).
    """
    import keras

    before = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(before)


def _children(layer) -> list:
    import keras

    found = []
    for value in vars(layer).values():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, keras.layers.Layer) and item is not layer:
                found.append(item)
    return found


def describe(model) -> str:
    """How a model's layers with weights compute: e.g. ``12 in bfloat16, 3 in float32``.

    Args:
        model: a built Keras model.
    """
    counts: dict[str, int] = {}
    seen: set[int] = set()
    todo = list(model.layers)
    while todo:
        layer = todo.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        children = _children(layer)
        todo.extend(children)
        if layer.weights and not any(child.weights for child in children):
            counts[layer.compute_dtype] = counts.get(layer.compute_dtype, 0) + 1
    return ", ".join(f"{n} in {dtype}" for dtype, n in sorted(counts.items()))
