"""A faster LSTM for machines without a GPU: ``LSTM``, a drop-in ``keras.layers.LSTM``.

On a GPU Keras runs an LSTM as one cuDNN kernel. On a CPU it steps a generic cell through a
``while_loop`` of 20-40 small ops per time step (masking included), and TensorFlow
differentiates that loop op by op, stacking every intermediate for the backward pass. ``LSTM``
here keeps Keras's layer (weights, config, cuDNN path on a GPU) and replaces only the CPU step
loop with a leaner one:

- the input projection ``x @ W + b`` of every step is one matrix product before the loop;
- a step is one matrix product and six element-wise ops (the cell input ``tanh(z)`` is computed
  as ``2 * sigmoid(2z) - 1``, so one sigmoid covers all four gates), reading and writing whole
  slices along the outermost (time) axis, where TensorFlow shares buffers instead of copying;
- masks cost nothing inside the loop: right-padded batches (the recipes') need nothing, and any
  other mask gets each sequence's real steps gathered to the front before the loop and the
  outputs put back after it, which gives Keras's masking semantics;
- the gradient is written by hand (``tf.custom_gradient``): the backward loop carries only
  ``dh`` and ``dc``, everything else is computed for all steps at once, and the weight gradients
  are three large matrix products after the loop.

The result equals Keras's own CPU loop (outputs, states and gradients, within float32
round-off: ``tests/test_fused.py``); ``benchmarks/fused_lstm.py`` times both. The serving graph
a SavedModel export traces from it uses stock TensorFlow ops only, so serving does not need this
package. ``LSTM_RECIPES_FUSED=0`` in the environment switches back to Keras's loop.
"""

from __future__ import annotations

import contextlib
import os

import keras
import numpy as np
import tensorflow as tf

from lstm_recipes import compat, fastpath

__all__ = ["LSTM", "lstm_sequence", "masked_lstm", "use_fused"]


def _gate_scale(units: int, dtype: tf.DType) -> tf.Tensor:
    # Keras's gate order is i, f, g (cell input), o; doubling g's pre-activation lets one sigmoid
    # serve all four gates, with tanh(z) = 2 * sigmoid(2z) - 1.
    scale = np.ones(4 * units, dtype=np.float32)
    scale[2 * units : 3 * units] = 2.0
    return tf.constant(scale, dtype=dtype)


def lstm_sequence(
    x: tf.Tensor,
    h0: tf.Tensor,
    c0: tf.Tensor,
    kernel: tf.Tensor,
    recurrent_kernel: tf.Tensor,
    bias: tf.Tensor,
    products: tf.DType | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Every step's ``h`` and ``c`` of a Keras-layout LSTM over time-major inputs, with a
    hand-written gradient.

    Args:
        x: inputs ``[time, batch, features]``.
        h0: initial output ``[batch, units]``.
        c0: initial cell state ``[batch, units]``.
        kernel: ``[features, 4 * units]``, gates in Keras's order i, f, g, o.
        recurrent_kernel: ``[units, 4 * units]``.
        bias: ``[4 * units]``.
        products: the dtype of the four products over all steps at once (the input
            projection and, in the gradient, the input's and the weights'), e.g. bfloat16;
            None keeps ``x``'s. Their results, the recurrence and the cell state stay in
            ``x``'s dtype.

    Returns:
        ``(H, C)``, each ``[time, batch, units]``.
    """
    units = int(recurrent_kernel.shape[0])

    def product(a, b):
        # bfloat16 pays where a product is large: 2.6-3.3x float32's speed on an avx512_bf16
        # CPU at [6400 x 128] @ [128 x 256] and up, but about 1.1x at one step's [64 x 64]
        # @ [64 x 256], so the step-by-step recurrence keeps its dtype (benchmarks/RESULTS.md).
        if products is None or products == a.dtype:
            return tf.matmul(a, b)
        return tf.cast(tf.matmul(tf.cast(a, products), tf.cast(b, products)), a.dtype)

    # Per-step tensors are read as x[t] of a time-major tensor and written whole to
    # TensorArrays: along the outermost axis TensorFlow shares buffers instead of copying.
    @tf.custom_gradient
    def run(x, h0, c0, kernel, recurrent_kernel, bias):
        dtype = x.dtype
        steps, batch, features = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        scale = _gate_scale(units, dtype)
        x_flat = tf.reshape(x, [-1, features])
        zx = tf.reshape(product(x_flat, kernel * scale) + bias * scale, [steps, batch, 4 * units])
        u_scaled = recurrent_kernel * scale

        def step(t, h, c, a_all, c_all):
            a, h, c = _cell_step(zx[t], h, c, u_scaled)
            return t + 1, h, c, a_all.write(t, a), c_all.write(t, c)

        arrays = [
            tf.TensorArray(dtype, size=steps, element_shape=[None, n * units]) for n in (4, 1)
        ]
        _, _, _, *arrays = tf.while_loop(
            lambda t, *_: t < steps, step, (tf.constant(0), h0, c0, *arrays)
        )
        a_all, c_all = (_stack(a, steps, batch, n * units, h0) for a, n in zip(arrays, (4, 1)))
        tanh_c = tf.tanh(c_all)
        # every step's h again, for all steps at once: cheaper than one more write per step
        h_all = a_all[..., 3 * units :] * tanh_c

        def grad(d_h, d_c):
            d_h = tf.zeros_like(h_all) if d_h is None else d_h
            d_c = tf.zeros_like(c_all) if d_c is None else d_c
            i, f, g2, o = tf.split(a_all, 4, axis=2)
            g = 2.0 * g2 - 1.0
            c_prev = tf.concat([c0[tf.newaxis], c_all[:-1]], axis=0)
            # dz = [dc, dc, dc, dh] * factors: all that is not carried from step to step is
            # computed for every step at once, before the loop.
            factors = tf.concat(
                [g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)],
                axis=2,
            )
            through_h = o * (1 - tanh_c * tanh_c)
            # Transposed once: a transpose_b product inside the loop is slower (measured).
            recurrent_t = tf.transpose(recurrent_kernel)

            def back(t, dh, dc, dzs):
                dh = d_h[t] + dh
                dc = d_c[t] + dc + dh * through_h[t]
                dz = tf.concat([dc, dc, dc, dh], axis=1) * factors[t]
                return (
                    t - 1,
                    tf.matmul(dz, recurrent_t),
                    dc * f[t],
                    dzs.write(t, dz),
                )

            dzs = tf.TensorArray(dtype, size=steps, element_shape=[None, 4 * units])
            _, dh0, dc0, dzs = tf.while_loop(
                lambda t, *_: t >= 0, back, (steps - 1, tf.zeros_like(h0), tf.zeros_like(c0), dzs)
            )
            dz = tf.reshape(_stack(dzs, steps, batch, 4 * units, h0), [-1, 4 * units])
            h_prev = tf.reshape(tf.concat([h0[tf.newaxis], h_all[:-1]], axis=0), [-1, units])
            return (
                tf.reshape(product(dz, tf.transpose(kernel)), [steps, batch, features]),
                dh0,
                dc0,
                product(tf.transpose(x_flat), dz),
                product(tf.transpose(h_prev), dz),
                tf.reduce_sum(dz, axis=0),
            )

        return (h_all, c_all), grad

    return run(x, h0, c0, kernel, recurrent_kernel, bias)


def lstm_step(
    x: tf.Tensor,
    h: tf.Tensor,
    c: tf.Tensor,
    kernel: tf.Tensor,
    recurrent_kernel: tf.Tensor,
    bias: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """One step of ``lstm_sequence``, with its ops in its order: a search loop feeding one
    token at a time gets the very numbers a whole sequence would, without a loop of one step.

    Args:
        x: inputs ``[batch, features]``.
        h: output ``[batch, units]``.
        c: cell state ``[batch, units]``.
        kernel, recurrent_kernel, bias: as ``scaled_weights`` gives them (scaled once, before
            a search loop, not at every step: the same numbers).

    Returns:
        ``(h, c)`` after the step.
    """
    zx = tf.matmul(x, kernel) + bias
    _, h, c = _cell_step(zx, h, c, recurrent_kernel)
    return h, c


def scaled_weights(kernel, recurrent_kernel, bias) -> list[tf.Tensor]:
    """The weights as the loop multiplies by them (the cell input's gate doubled).

    Args:
        kernel, recurrent_kernel, bias: as in ``lstm_sequence``.
    """
    scale = _gate_scale(int(recurrent_kernel.shape[0]), kernel.dtype)
    return [kernel * scale, recurrent_kernel * scale, bias * scale]


def _cell_step(zx, h, c, u_scaled):
    # (gate activations, h, c) of one step from its scaled input projection ``zx``: the one
    # body of the sequence loop and of ``lstm_step``.
    a = tf.sigmoid(zx + tf.matmul(h, u_scaled))
    i, f, g2, o = tf.split(a, 4, axis=1)
    c = f * c + i * (2.0 * g2 - 1.0)
    return a, o * tf.tanh(c), c


def _stack(array: tf.TensorArray, steps, batch, width: int, h0):
    # A TensorArray of no steps cannot stack with an unknown batch size; tf.distribute feeds
    # such an empty batch to a worker whose shards ran out before the others'.
    stacked = tf.cond(
        steps > 0, array.stack, lambda: tf.zeros(tf.stack([0, batch, width]), h0.dtype)
    )
    stacked.set_shape([None, h0.shape[0], width])  # the batch size as static as h0's
    return stacked


def _split_sequence(x, h0, c0, kernel, recurrent_kernel, bias, loops: int, products=None):
    # Independent slices of the batch as separate loops: TensorFlow runs them side by side, so a
    # unidirectional layer keeps more than one core busy (a BiLSTM's two directions already do).
    if loops <= 1:
        return lstm_sequence(x, h0, c0, kernel, recurrent_kernel, bias, products)
    batch = tf.shape(h0)[0]
    part = batch // loops
    sizes = tf.stack([part] * (loops - 1) + [batch - part * (loops - 1)])
    parts = zip(
        tf.split(x, sizes, axis=1, num=loops),
        tf.split(h0, sizes, axis=0, num=loops),
        tf.split(c0, sizes, axis=0, num=loops),
    )
    results = [lstm_sequence(*p, kernel, recurrent_kernel, bias, products) for p in parts]
    return tuple(tf.concat([r[k] for r in results], axis=1) for k in (0, 1))


def masked_lstm(
    inputs: tf.Tensor,
    h0: tf.Tensor,
    c0: tf.Tensor,
    mask: tf.Tensor | None,
    kernel: tf.Tensor,
    recurrent_kernel: tf.Tensor,
    bias: tf.Tensor,
    return_sequences: bool = False,
    go_backwards: bool = False,
    zero_output_for_mask: bool = False,
    loops: int = 1,
    products: tf.DType | None = None,
) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
    """Keras's ``backend.lstm`` contract on the fused loop: ``(last_output, outputs, [h, c])``.

    A masked step keeps the state; its output is the previous step's output, or zeros with
    ``zero_output_for_mask`` (what ``Bidirectional`` asks for), as in Keras's generic loop.

    Args:
        inputs: ``[batch, time, features]``.
        h0: initial output ``[batch, units]``.
        c0: initial cell state ``[batch, units]``.
        mask: ``[batch, time]`` booleans, True where a step is real, or None.
        kernel: ``[features, 4 * units]``.
        recurrent_kernel: ``[units, 4 * units]``.
        bias: ``[4 * units]``.
        return_sequences: return every step's output, else only the last (as ``[batch, 1,
            units]``, as Keras's backends do).
        go_backwards: process the steps in reverse; outputs come in processing order.
        zero_output_for_mask: zeros, not the previous output, at masked steps.
        loops: run the batch as this many slices side by side (for more than one core).
        products: the dtype of the products over all steps at once (``lstm_sequence``).
    """
    x = inputs
    if go_backwards:
        x = tf.reverse(x, axis=[1])
        mask = None if mask is None else tf.reverse(mask, axis=[1])
    if mask is None:
        h_all, c_all = _split_sequence(
            tf.transpose(x, [1, 0, 2]), h0, c0, kernel, recurrent_kernel, bias, loops, products
        )
        h, c = h_all[-1], c_all[-1]
        outputs = tf.transpose(h_all, [1, 0, 2]) if return_sequences else h[:, tf.newaxis]
        return h, outputs, [h, c]

    mask = tf.cast(mask, tf.bool)
    steps = tf.shape(x)[1]
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    position = tf.range(steps)[tf.newaxis]
    # The recipes' batches are right-padded: their real steps are already in front. Other masks
    # get them gathered to the front (a stable sort on "masked, then position") and the outputs
    # put back after the loop; the check costs one comparison, the gathers only when needed.
    right_padded = tf.reduce_all(tf.equal(mask, position < lengths[:, tf.newaxis]))

    def real_steps_first():
        order = tf.argsort(tf.where(mask, position, position + steps), axis=1, stable=True)
        return tf.gather(x, order, axis=1, batch_dims=1)

    packed = tf.cond(right_padded, lambda: tf.identity(x), real_steps_first)
    h_all, c_all = _split_sequence(
        tf.transpose(packed, [1, 0, 2]), h0, c0, kernel, recurrent_kernel, bias, loops, products
    )
    last = tf.stack([tf.maximum(lengths - 1, 0), tf.range(tf.shape(x)[0])], axis=1)
    empty = (lengths == 0)[:, tf.newaxis]
    h = tf.where(empty, h0, tf.gather_nd(h_all, last))
    c = tf.where(empty, c0, tf.gather_nd(c_all, last))
    # Step t's output is that of the last real step at or before t (zeros before the first).
    seen = tf.cumsum(tf.cast(mask, tf.int32), axis=1)
    if not return_sequences:
        keep = mask[:, -1:] if zero_output_for_mask else seen[:, -1:] > 0
        last = h * tf.cast(keep, h.dtype)
        return last, last[:, tf.newaxis], [h, c]
    outputs = tf.transpose(h_all, [1, 0, 2])

    def put_back():
        return tf.gather(outputs, tf.maximum(seen - 1, 0), axis=1, batch_dims=1)

    if zero_output_for_mask:  # right-padded outputs are then already in place
        outputs = tf.cond(right_padded, lambda: tf.identity(outputs), put_back)
    else:
        outputs = put_back()
    keep = mask if zero_output_for_mask else seen > 0
    outputs = outputs * tf.cast(keep, outputs.dtype)[..., tf.newaxis]
    return h, outputs, [h, c]


_KERAS_LOOP = []  # non-empty inside keras_loop()


@contextlib.contextmanager
def keras_loop():
    """Trace with Keras's own step loop: LiteRT converts it to builtin ops, while the fused
    loop's TensorLists need Select TF ops."""
    _KERAS_LOOP.append(True)
    try:
        yield
    finally:
        _KERAS_LOOP.pop()


def use_fused() -> bool:
    """True where the fused CPU loop applies: no GPU visible (there Keras uses cuDNN), the
    environment does not set ``LSTM_RECIPES_FUSED=0`` (Keras's own loop, for comparisons), and
    no LiteRT conversion is tracing (``keras_loop``)."""
    if _KERAS_LOOP or os.environ.get("LSTM_RECIPES_FUSED", "1").strip() == "0":
        return False
    return not tf.config.list_logical_devices("GPU")


@keras.saving.register_keras_serializable(package="lstm_recipes")
class LSTM(compat.LSTMLoopHook):
    """``keras.layers.LSTM`` with the fused CPU loop of this module where no GPU is visible.

    Same arguments, weights and config as Keras's layer, plus ``parallel_loops``: in training,
    run the batch as that many slices side by side, so that a unidirectional layer keeps that
    many cores busy (the recipes pass 2 for unidirectional stacks; 1 for ``Bidirectional``, whose
    two directions already run side by side). Off the fused path (a GPU, a
    non-default activation, ``recurrent_dropout``, ``unroll``, ``use_bias=False``,
    ``use_cudnn`` other than ``"auto"``) it is Keras's layer unchanged.
    """

    def __init__(self, units, parallel_loops: int = 1, **kwargs):
        policy = keras.mixed_precision.dtype_policy()
        # Under a mixed policy the recurrence stays float32: its state accumulates rounding
        # over every step; only the fused loop's products over all steps at once take the
        # policy's compute dtype, in training (lstm_recipes.precision).
        mixed = policy.compute_dtype != "float32"
        if "dtype" not in kwargs and mixed:
            kwargs["dtype"] = "float32"
        super().__init__(units, **kwargs)
        self.products = tf.as_dtype(policy.compute_dtype) if mixed else None
        self.parallel_loops = int(parallel_loops)

    def get_config(self):
        return {**super().get_config(), "parallel_loops": self.parallel_loops}

    def unrolls_fixed_steps(self) -> bool:
        # A LiteRT file's loops need static element shapes, which a dynamic batch (a char
        # LSTM over B x T words) lacks; a fixed number of steps unrolls without a loop.
        return bool(_KERAS_LOOP)

    def own_loop_applies(self) -> bool:
        # The fused loop has cuDNN's conditions (fastpath.cudnn_blockers), and takes only
        # use_cudnn="auto": True asks for cuDNN or Keras's error without a GPU.
        return self.use_cudnn == "auto" and not fastpath.cudnn_blockers(self) and use_fused()

    def step(self, inputs, states: list, weights: list | None = None) -> tuple[tf.Tensor, list]:
        """``(output, [h, c])`` of one inference step from ``states``, with the numbers a
        whole sequence through this layer gives (for search loops, a token at a time).

        Args:
            inputs: ``[batch, features]``.
            states: ``[h, c]``.
            weights: ``step_weights(inputs.dtype)``, made once before a loop of steps; None
                makes them at this step.
        """
        if not self.own_loop_applies():
            out, new = self.cell(inputs, list(states), training=False)
            return out, list(new)
        dtype = inputs.dtype
        weights = self.step_weights(dtype) if weights is None else weights
        h, c = lstm_step(inputs, tf.cast(states[0], dtype), tf.cast(states[1], dtype), *weights)
        return h, [h, c]

    def step_weights(self, dtype) -> list[tf.Tensor] | None:
        """What ``step`` multiplies by (None where Keras's cell steps instead).

        Args:
            dtype: the inputs' dtype.
        """
        return scaled_weights(*self._weights(dtype)) if self.own_loop_applies() else None

    def _weights(self, dtype) -> list[tf.Tensor]:
        return [
            tf.cast(tf.convert_to_tensor(w), dtype)
            for w in (self.cell.kernel, self.cell.recurrent_kernel, self.cell.bias)
        ]

    def own_loop(self, sequences, initial_state, mask, training=False):
        if training and self.dropout:
            keep = self.cell.get_dropout_mask(sequences[:, 0, :])
            sequences = sequences * keep[:, tf.newaxis, :]
        dtype = sequences.dtype
        weights = self._weights(dtype)
        return masked_lstm(
            sequences,
            tf.cast(initial_state[0], dtype),
            tf.cast(initial_state[1], dtype),
            mask,
            *weights,
            return_sequences=self.return_sequences,
            go_backwards=self.go_backwards,
            zero_output_for_mask=self.zero_output_for_mask,
            loops=self.parallel_loops if training else 1,
            products=self.products if training else None,
        )
