"""The fast-path guard: which recurrent layers of a model lose the cuDNN kernel, and why.

On a GPU, Keras runs ``LSTM`` and ``GRU`` on one fused cuDNN kernel only when the layer
qualifies; otherwise it silently falls back to a generic step loop (measured 10-25x slower on a GPU with
any ``recurrent_dropout``, TensorFlow 2.21). ``check_model`` looks at every recurrent layer of a built model, nested layers and
both halves of ``Bidirectional`` included, and warns once per reason, naming the layers. Training calls
it right after ``build_model``, so a config that gives the kernel up says so before the first
epoch. (cuDNN also needs right-padded masks; the data pipelines here always pad on the right.)

On a CPU, ``configure_cpu_threads`` runs each op on one thread and independent ops side by
side (the two directions of a bidirectional LSTM, the gradients of one matrix product):
LSTM steps are too small to split across cores (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import os
import warnings

import keras
import tensorflow as tf

_warned: set[tuple[str, str]] = set()


def _activation_name(fn) -> str:
    return getattr(fn, "__name__", str(fn))


def cudnn_blockers(layer: keras.layers.Layer) -> list[str]:
    """Why ``layer`` cannot run on the cuDNN kernel (empty when it can, or is not recurrent).

    Args:
        layer: any Keras layer; only ``LSTM``, ``GRU``, ``SimpleRNN`` and ``RNN`` are judged.
    """
    if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
        kind = "LSTM" if isinstance(layer, keras.layers.LSTM) else "GRU"
        reasons = []
        if _activation_name(layer.activation) != "tanh":
            reasons.append(f"activation={_activation_name(layer.activation)} (cuDNN needs tanh)")
        if _activation_name(layer.recurrent_activation) != "sigmoid":
            reasons.append(
                f"recurrent_activation={_activation_name(layer.recurrent_activation)} "
                "(cuDNN needs sigmoid)"
            )
        if layer.recurrent_dropout:
            reasons.append(f"recurrent_dropout={layer.recurrent_dropout} (cuDNN needs 0)")
        if layer.unroll:
            reasons.append("unroll=True (cuDNN needs a loop)")
        if not layer.use_bias:
            reasons.append("use_bias=False (cuDNN needs a bias)")
        if layer.use_cudnn is False:
            reasons.append("use_cudnn=False")
        if kind == "GRU" and not layer.reset_after:
            reasons.append("reset_after=False (cuDNN needs True)")
        return reasons
    if isinstance(layer, keras.layers.SimpleRNN):
        return ["SimpleRNN has no cuDNN kernel"]
    if isinstance(layer, keras.layers.RNN):
        cell = type(layer.cell).__name__
        return [f"custom cell {cell}"]
    return []


def _walk(layer: keras.layers.Layer, path: str):
    yield layer, path
    if isinstance(layer, keras.layers.Bidirectional):
        children = [layer.forward_layer, layer.backward_layer]
    elif isinstance(layer, keras.layers.RNN):
        return  # the cell is judged through its layer
    else:
        children = getattr(layer, "_layers", [])
    for child in children:
        yield from _walk(child, f"{path}/{child.name}")


def slow_layers(model: keras.layers.Layer) -> list[tuple[str, str]]:
    """(layer path, reason) for every recurrent layer of ``model`` off the cuDNN kernel.

    Args:
        model: a model or layer; nested layers are searched.
    """
    return [
        (path, reason)
        for layer, path in _walk(model, model.name)
        for reason in cudnn_blockers(layer)
    ]


def check_model(model: keras.layers.Layer) -> list[tuple[str, str]]:
    """Warn about recurrent layers that lose the cuDNN kernel: one warning per reason, naming
    the layers, and never twice for the same layers and reason.

    Args:
        model: the built model.

    Returns:
        Every (layer path, reason) found, including ones warned about before.
    """
    found = slow_layers(model)
    by_reason: dict[str, list[str]] = {}
    for path, reason in found:
        if (path, reason) not in _warned:
            _warned.add((path, reason))
            by_reason.setdefault(reason, []).append(path)
    for reason, paths in by_reason.items():
        warnings.warn(
            f"{'layer' if len(paths) == 1 else 'layers'} {', '.join(paths)} "
            f"{'leaves' if len(paths) == 1 else 'leave'} the fast cuDNN kernel: {reason}; "
            "on a GPU that is a generic step loop, 10-25x slower",
            stacklevel=2,
        )
    return found


def configure_cpu_threads() -> bool:
    """On a machine with no GPU: one thread per op, as many ops at once as there are cores.

    Measured on 2 cores (benchmarks/RESULTS.md): a BiLSTM(64) training step at batch 128 ran
    1.18x faster on a quiet machine, and 1.5-4x faster beside other busy processes, where
    TensorFlow's default split of small ops across both cores waits on preempted threads; a
    translation-sized step ran as fast as before. Left alone where the user set
    ``TF_NUM_INTRAOP_THREADS``/``TF_NUM_INTEROP_THREADS``, where a GPU is visible, or once
    TensorFlow's runtime has started (threads can no longer change then).

    Returns:
        True when the setting was applied.
    """
    if {"TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"} & set(os.environ):
        return False
    if tf.config.list_physical_devices("GPU"):
        return False
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(os.cpu_count() or 1)
    except RuntimeError:
        return False
    return True
