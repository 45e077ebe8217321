"""How far the LSTM itself lets the sentiment recipe go on IMDB: the ceiling of its speed-up.

``imdb_throughput.py`` races whole trainings. This splits the recipe's training step in two and
times the parts against the keras-io reference's step, in one process, per real (non-padding)
token, alternately:

- reference: the keras-io model (Keras's LSTM, no mask) on its ids cut and pre-padded to 200,
  32 per batch, its compiled training step (``train_on_batch``);
- LSTM stack alone: Embedding 128 and 2 x BiLSTM(64) on the fused loop, a squared loss on every
  output, a bare ``tf.function`` step with Adam: the recipe's arithmetic with nothing around it;
- recipe: the recipe's own model (``--preset imdb --set layers=2``: word dropout, dropout,
  pooling, softmax) and compiled training step;

the last two on the very same batches, the recipe's length-bucketed, right-padded ones. The
stack alone is an upper bound for the recipe on this loop: if it is under a speed-up goal, no
change outside the LSTM can meet it. Every contender runs with the recipe's CPU thread setting
(``fastpath.configure_cpu_threads``).

    python benchmarks/imdb_ceiling.py                 # about 5 minutes on 2 cores
    python benchmarks/imdb_ceiling.py --quick         # smoke run, 256 reviews
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from common import SHARED_DATA, machine, say
from imdb_throughput import REFERENCE_BATCH, load, reference_arrays, reference_model


def _stack_alone(config, vocabulary: int):
    import keras
    import tensorflow as tf

    from lstm_recipes import fused

    keras.utils.set_random_seed(config.seed)
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(vocabulary, config.embedding_dim, mask_zero=True)(inputs)
    for _ in range(config.layers):
        x = keras.layers.Bidirectional(fused.LSTM(config.units, return_sequences=True))(x)
    model = keras.Model(inputs, x)
    optimizer = keras.optimizers.Adam()

    @tf.function(reduce_retracing=True)
    def step(ids, labels):
        del labels  # the stack has no classifier; its loss reads every output
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(ids, training=True)))
        optimizer.apply(tape.gradient(loss, model.trainable_weights), model.trainable_weights)
        return loss

    return step


def _timed(step, batches, tokens: int) -> float:
    """Real tokens per second of one pass of ``step`` over ``batches``."""
    start = time.perf_counter()
    for x, y in batches:
        loss = step(x, y)
    float(np.ravel(np.asarray(loss))[0])  # the last step has finished
    return tokens / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=24, help="recipe batches per slot")
    parser.add_argument("--rounds", type=int, default=4, help="timed slots per contender")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="256 reviews (generated where the data is absent), 2 small slots",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=SHARED_DATA / "sentiment" / "imdb",
        help="a folder with IMDB's train.csv.gz and test.csv.gz",
    )
    args = parser.parse_args(argv)
    args.set, args.max_examples, args.test_examples = [], 0, 0
    if args.quick:
        args.batches, args.rounds = 3, 2
    import tensorflow as tf

    from lstm_recipes import fastpath

    fastpath.configure_cpu_threads()
    module, config, prep, splits, source = load(args)
    say("machine:", machine())
    say(f"data: {source}; recipe batches of {config.batch_size}, reference of {REFERENCE_BATCH}")

    # Batches spread evenly over the epoch's lengths (the bucketed epoch sorted by size), so the
    # slot's mix of short and long reviews is the epoch's.
    epoch = sorted(
        module.batches(config, prep, splits.train, training=True), key=lambda b: tuple(b[0].shape)
    )
    picks = np.unique(np.linspace(0, len(epoch) - 1, min(args.batches, len(epoch))).round())
    recipe_batches = [epoch[int(i)] for i in picks]
    recipe_tokens = sum(int(tf.math.count_nonzero(x)) for x, _ in recipe_batches)
    positions = sum(int(tf.size(x)) for x, _ in recipe_batches)
    # The reference's batches hold about as many real tokens as the recipe's slot.
    x_ref, y_ref, _ = reference_arrays(prep, splits.train)
    per_batch = max(1, int((x_ref != 0).sum(axis=1).mean() * REFERENCE_BATCH))
    count = min(max(2, recipe_tokens // per_batch), len(x_ref) // REFERENCE_BATCH)
    reference_batches = [
        (x_ref[i : i + REFERENCE_BATCH], y_ref[i : i + REFERENCE_BATCH])
        for i in range(0, count * REFERENCE_BATCH, REFERENCE_BATCH)
    ]
    reference_tokens = sum(int((x != 0).sum()) for x, _ in reference_batches)

    vocabulary = len(prep["vocabulary"]) + 2
    reference = reference_model(vocabulary)
    recipe = module.build_model(config, prep)
    contenders = {
        "keras-io reference (Keras LSTM, pre-padded 200, batch 32)": (
            reference.train_on_batch, reference_batches, reference_tokens),
        "LSTM stack alone (fused loop, bare step, recipe batches)": (
            _stack_alone(config, vocabulary), recipe_batches, recipe_tokens),
        "recipe (its model and training step, recipe batches)": (
            recipe.train_on_batch, recipe_batches, recipe_tokens),
    }  # fmt: skip
    for step, batches, tokens in contenders.values():
        _timed(step, batches, tokens)  # trace every length and warm up, untimed
    rates = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, (step, batches, tokens) in contenders.items():
            rates[name].append(_timed(step, batches, tokens))

    say(f"recipe slot: {len(recipe_batches)} batches, {recipe_tokens:,} real tokens of "
        f"{positions:,} positions; reference slot: {len(reference_batches)} batches, "
        f"{reference_tokens:,} real tokens; {args.rounds} interleaved slots each")  # fmt: skip
    say("| contender | real tokens/s (median of slots) | slowest / fastest slot | ratio |")
    say("|---|---|---|---|")
    base = statistics.median(next(iter(rates.values())))
    for name, values in rates.items():
        median = statistics.median(values)
        say(f"| {name} | {median:,.0f} | {min(values):,.0f} / {max(values):,.0f} "
            f"| {median / base:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
