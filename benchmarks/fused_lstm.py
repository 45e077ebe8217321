"""One training step of each recipe's LSTM shape: the fused CPU loop against Keras's own loop.

For each shape, two copies of the same model (same weights) are built, one with
``lstm_recipes.fused.LSTM`` and one with ``keras.layers.LSTM``, each step compiled with
``tf.function`` (forward, gradient, Adam update) on the same right-padded, masked batch; their
steps are timed alternately, and the best of the repeats is compared. Shapes (batch x steps):

- sentiment: Embedding 128, 2 x BiLSTM(64), batch 64 x 230 (``--preset imdb --set layers=2``'s
  sizes at the preset's batch until 2026-12-05; it trains 128 per step since)
- char_lm: 2 x LSTM(384), batch 64 x 50 (``--preset shakespeare``'s sizes)
- translation encoder: BiLSTM(192), batch 64 x 12, and decoder: LSTM(384), batch 64 x 12
  (``--preset spa-eng``'s sizes, without attention)
- frames: BiLSTM(128) over 40 float features per frame, batch 32 x 300 (sensor or video
  frames for ``frame_labeling``)

    python benchmarks/fused_lstm.py            # about 3 minutes on 2 cores
    python benchmarks/fused_lstm.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time

from common import machine, say

SHAPES = {
    # name: (batch, steps, features or vocabulary, units, layers, bidirectional, embedded)
    "sentiment": (64, 230, 20000, 64, 2, True, True),
    "char_lm": (64, 50, 65, 384, 2, False, True),
    "translation encoder": (64, 12, 12000, 192, 1, True, True),
    "translation decoder": (64, 12, 12000, 384, 1, False, True),
    "frames": (32, 300, 40, 128, 1, True, False),
}


def _model(layer_class, shape):
    import keras

    batch, steps, width, units, layers, bidirectional, embedded = shape
    if embedded:
        inputs = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(width, 128 if width > 100 else 64, mask_zero=True)(inputs)
    else:
        inputs = keras.Input((None, width))
        x = keras.layers.Masking()(inputs)
    # as the recipes build them: a unidirectional stack trains its batch as two side-by-side loops
    extra = {} if bidirectional or layer_class is keras.layers.LSTM else {"parallel_loops": 2}
    for _ in range(layers):
        rnn = layer_class(units, return_sequences=True, **extra)
        x = keras.layers.Bidirectional(rnn)(x) if bidirectional else rnn(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x))


def _batch(shape, rng):
    import numpy as np

    batch, steps, width, *_, embedded = shape
    lengths = rng.integers(int(steps * 0.9), steps + 1, size=batch)  # a bucket's spread
    real = np.arange(steps)[None] < lengths[:, None]
    if embedded:
        x = rng.integers(1, width, size=(batch, steps)) * real
    else:
        x = rng.normal(size=(batch, steps, width)).astype("float32") * real[..., None]
    return x, int(lengths.sum())


def _step(model):
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam()

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True)))
        optimizer.apply(tape.gradient(loss, model.trainable_weights), model.trainable_weights)
        return loss

    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small batches, 2 repeats")
    args = parser.parse_args(argv)
    import keras
    import numpy as np
    import tensorflow as tf

    from lstm_recipes import fastpath, fused

    fastpath.configure_cpu_threads()
    say("machine:", machine())
    say(f"fused loop in use: {fused.use_fused()}")
    say("| shape | batch x steps | Keras loop (best step) | fused loop (best step) | speed-up |")
    say("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    repeats = 2 if args.quick else args.repeats
    for name, shape in SHAPES.items():
        if args.quick:
            shape = (4, min(shape[1], 20), *shape[2:])
        keras.utils.set_random_seed(0)
        models = {"keras": _model(keras.layers.LSTM, shape), "fused": _model(fused.LSTM, shape)}
        models["fused"].set_weights(models["keras"].get_weights())
        x, _ = _batch(shape, rng)
        x = tf.constant(x)
        steps = {k: _step(m) for k, m in models.items()}
        losses = {k: float(s(x)) for k, s in steps.items()}  # trace; same weights, same loss
        if not np.isclose(losses["keras"], losses["fused"], rtol=1e-4, atol=1e-6):
            sys.exit(f"{name}: the two models disagree: loss {losses}")
        best = {k: float("inf") for k in steps}
        for _ in range(repeats):
            for k, s in steps.items():
                start = time.perf_counter()
                s(x).numpy()
                best[k] = min(best[k], time.perf_counter() - start)
        say(
            f"| {name} | {shape[0]} x {shape[1]} | {1000 * best['keras']:,.0f} ms "
            f"| {1000 * best['fused']:,.0f} ms | {best['keras'] / best['fused']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
