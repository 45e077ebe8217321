"""IMDB training throughput: the sentiment recipe against the keras-io reference and PyTorch.

Three contenders train on the same reviews, each in its own process (as each would be run),
epochs interleaved (reference epoch 1, recipe epoch 1, PyTorch slot 1, reference epoch 2, ...)
so that a busy machine slows them alike:

- reference: the keras-io "Bidirectional LSTM on IMDB" example as written there: token ids cut
  and pre-padded to 200 (``pad_sequences``), no mask, no bucketing, batch 32, Embedding 128,
  two BiLSTM(64), Adam.
- recipe: ``lstm-recipes``'s sentiment recipe, ``--preset imdb`` with the same embedding and
  LSTM sizes (``layers=2``; ``--set layers=1`` races the preset's own one-layer model, the
  reference unchanged): its own data pipeline (whole reviews up to ``max_length``,
  length-bucketed, right-padded, masked), model, precision (the preset's ``auto``: bfloat16
  products where the CPU has bfloat16 instructions; ``--set precision=float32`` races float32)
  and CPU thread settings (as ``lstm-recipes run`` sets them:
  ``fastpath.configure_cpu_threads``), trained by ``model.fit``.
- recipe, Keras's loop (``--keras-loop``): the same recipe with ``LSTM_RECIPES_FUSED=0``, so its
  LSTMs run Keras's own CPU step loop instead of ``lstm_recipes.fused``'s (what the recipe did
  before that loop existed).
- torch (``--torch``, needs ``pip install torch==2.13.0``): the reference model written in
  PyTorch (``nn.LSTM(bidirectional=True, num_layers=2)``) on the reference's padded batches.

The figure compared is real (non-padding) tokens per second of training: each contender counts
the tokens of its own inputs that are not padding. A Keras epoch is timed from its first batch
to its last (``common.batch_span``). Accuracy is on the whole test file after the same number
of epochs (not timed).

    python benchmarks/imdb_throughput.py --epochs 2 --torch     # about 25 minutes, 2 cores
    python benchmarks/imdb_throughput.py --quick                # smoke run, under a minute
    python benchmarks/imdb_throughput.py --set layers=1         # the preset's own model
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import (
    SHARED_DATA,
    SlotWorker,
    batch_span,
    fastest_torch,
    machine,
    need,
    recipe_policy,
    say,
    torch_precision,
)

REFERENCE_LENGTH = 200
REFERENCE_BATCH = 32
# keras-io's model, whatever --set changes in the recipe's (so --set layers=1 races the
# imdb preset's own one-layer model against the example as written).
REFERENCE_EMBEDDING, REFERENCE_UNITS, REFERENCE_LAYERS = 128, 64, 2


def load(args):
    """(recipe module, config, prep, splits, source) for the chosen data."""
    from lstm_recipes import recipe as recipe_lib
    from lstm_recipes.data import limit, make_splits

    module = recipe_lib.load_recipe("sentiment")
    config = recipe_lib.resolve_config(module, "imdb", ["layers=2", *args.set])
    folder = args.data
    if need(folder / "train.csv.gz", args.quick):
        splits = module.load_data(config, str(folder / "train.csv.gz"), str(folder / "test.csv.gz"))
        source = str(folder)
    else:
        splits = make_splits(_generated(2400, 0), _generated(600, 1), seed=0, source="generated")
        source = "generated reviews"
    if args.quick:
        args.max_examples, args.test_examples = 256, 128
    splits.train = limit(splits.train, args.max_examples, 0)
    splits.test = limit(splits.test, args.test_examples, 0)
    prep = module.fit_preprocessing(config, splits.train)
    return module, config, prep, splits, source


def _generated(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    good, bad, filler = (
        ["great", "fine", "superb", "fun"],
        ["awful", "dull", "bad", "poor"],
        ["a", "the", "film"],
    )
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = [rng.choice(filler) for _ in range(rng.randint(5, 300))]
        words[rng.randrange(len(words))] = rng.choice(good if label == "pos" else bad)
        rows.append((" ".join(words), label))
    return rows


def reference_arrays(prep, examples):
    """keras-io's input: ids pre-truncated and pre-padded to 200; 0/1 labels; real tokens."""
    import keras

    from lstm_recipes.data import text as text_lib

    vectorizer = text_lib.make_vectorizer(prep["vocabulary"])
    ids = text_lib.encode(vectorizer, [t for t, _ in examples], 10**6)
    x = keras.utils.pad_sequences(ids.to_list(), maxlen=REFERENCE_LENGTH)
    y = np.array([prep["labels"].index(label) for _, label in examples], np.float32)
    return x.astype(np.int32), y, int((x != 0).sum())


def reference_model(vocab_size: int):
    import keras
    from keras import layers

    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(vocab_size, REFERENCE_EMBEDDING)(inputs)
    for i in range(REFERENCE_LAYERS):
        last = i == REFERENCE_LAYERS - 1
        x = layers.Bidirectional(layers.LSTM(REFERENCE_UNITS, return_sequences=not last))(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model


def recipe_tokens(config, examples, prep) -> int:
    from lstm_recipes.data import text as text_lib

    vectorizer = text_lib.make_vectorizer(prep["vocabulary"])
    ids = text_lib.encode(vectorizer, [t for t, _ in examples], config.max_length)
    return int(ids.row_lengths().numpy().sum())


def torch_worker(arrays: str, batches: int, threads: int, bf16: bool = False) -> None:
    """Train the reference model in PyTorch on ``batches`` of the saved padded arrays and print
    its real tokens/s; ``bf16`` under ``torch.autocast`` in bfloat16 (its LSTM included). Runs
    in its own process: TensorFlow's idle thread pools in this one would take CPU time from
    PyTorch's."""
    import time

    import torch
    from torch import nn

    data = np.load(arrays)
    x, y, units, layers, embedding = (data[k] for k in ("x", "y", "units", "layers", "embedding"))
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    # Eager training has no independent ops to run side by side.
    torch.set_num_interop_threads(1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(int(x.max()) + 1, int(embedding))
            self.lstm = nn.LSTM(
                int(embedding), int(units), int(layers), bidirectional=True, batch_first=True
            )
            self.out = nn.Linear(2 * int(units), 1)

        def forward(self, ids):
            _, (h, _) = self.lstm(self.embedding(ids))
            return self.out(torch.cat([h[-2], h[-1]], dim=-1)).squeeze(-1)

    net, loss_fn = Net(), nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    order = np.random.default_rng(0).permutation(len(x))
    warmup = 3  # untimed: the allocator and oneDNN's kernels settle on the first batches
    tokens, start = 0, time.perf_counter()
    for b in range(warmup + batches):
        if b == warmup:
            tokens, start = 0, time.perf_counter()
        rows = order[(b * REFERENCE_BATCH) % len(x) :][:REFERENCE_BATCH]
        xb, yb = torch.from_numpy(x[rows]).long(), torch.from_numpy(y[rows])
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(net(xb).float(), yb)
        loss.backward()
        optimizer.step()
        tokens += int((x[rows] != 0).sum())
    seconds = time.perf_counter() - start
    print(f"torch {torch.__version__} {batches} {tokens} {seconds}", flush=True)


def torch_slot(arrays, batches: int, threads: int, bf16: bool) -> tuple[str, int, float]:
    """(torch version, real tokens, seconds) of one PyTorch slot in a fresh process."""
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--torch-worker", str(arrays), "--torch-batches", str(batches),
         "--threads", str(threads), *(["--torch-bf16"] if bf16 else [])],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    return out[1], int(out[3]), float(out[4])


def slot_rate(slot: tuple[str, int, float]) -> float:
    """Real tokens per second of a ``torch_slot``."""
    return slot[1] / slot[2]


def start_contender(kind: str, state: Path) -> SlotWorker:
    """A contender in its own process, training one epoch per request."""
    env = {"LSTM_RECIPES_FUSED": "0"} if kind == "recipe-keras-loop" else {}
    return SlotWorker(__file__, ["--worker", kind, "--state", str(state)], env)


def worker(kind: str, state: Path) -> None:
    """Serve epoch requests on stdin: train one epoch, evaluate, print one JSON line."""
    import keras

    from lstm_recipes import fastpath, precision, training
    from lstm_recipes import recipe as recipe_lib

    meta = json.loads((state / "meta.json").read_text())
    recipe = kind.startswith("recipe")
    if recipe:
        fastpath.configure_cpu_threads()
    module = recipe_lib.load_recipe("sentiment")
    config = recipe_lib.resolve_config(module, "imdb", meta["overrides"])
    prep = json.loads((state / "prep.json").read_text())
    keras.utils.set_random_seed(config.seed)
    if recipe:
        examples = json.loads((state / "examples.json").read_text())
        # In the preset's precision, as `lstm-recipes train` builds it (auto: bfloat16 where
        # the CPU has it); the reference stays as keras-io wrote it.
        with precision.training_policy(precision.resolve(config.precision)):
            model = module.build_model(config, prep)
        # As `lstm-recipes train` reads them (tf.data autotuning off).
        train = training.without_autotune(
            module.batches(config, prep, [tuple(e) for e in examples["train"]], training=True)
        )
        test = training.without_autotune(
            module.batches(config, prep, [tuple(e) for e in examples["test"]], training=False)
        )
        callbacks = training.schedule_callbacks(config)
    else:
        arrays = np.load(state / "reference.npz")
        model = reference_model(len(prep["vocabulary"]) + 2)
    # An epoch is timed from its first batch to its last, for both contenders alike.
    span = batch_span()
    for line in sys.stdin:
        epoch = int(line)
        if recipe:
            model.fit(train, epochs=epoch + 1, initial_epoch=epoch, callbacks=[*callbacks, span],
                      verbose=0)  # fmt: skip
        else:
            model.fit(arrays["x_train"], arrays["y_train"], batch_size=REFERENCE_BATCH,
                      epochs=epoch + 1, initial_epoch=epoch, shuffle=True, verbose=0,
                      callbacks=[span])  # fmt: skip
        if recipe:
            accuracy = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
        else:
            accuracy = model.evaluate(arrays["x_test"], arrays["y_test"], batch_size=256,
                                      verbose=0)[1]  # fmt: skip
        print(json.dumps({"seconds": span.seconds, "accuracy": float(accuracy)}), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "sentiment" / "imdb")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="recipe config override")
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch model")
    parser.add_argument("--torch-batches", type=int, default=300, help="PyTorch batches per slot")
    parser.add_argument("--quick", action="store_true", help="a few hundred reviews, 1 epoch")
    parser.add_argument("--max-examples", type=int, default=0, help="train reviews (0: all)")
    parser.add_argument("--test-examples", type=int, default=0, help="test reviews (0: all)")
    parser.add_argument("--keras-loop", action="store_true",
                        help="also time the recipe on Keras's own CPU LSTM loop")  # fmt: skip
    parser.add_argument("--threads", type=int, default=0,
                        help="PyTorch threads (0: the faster of 1 and 2, probed first)")  # fmt: skip
    parser.add_argument("--torch-worker", help=argparse.SUPPRESS)
    parser.add_argument("--torch-bf16", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--worker", choices=["recipe", "recipe-keras-loop", "reference"], help=argparse.SUPPRESS
    )
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        torch_worker(args.torch_worker, args.torch_batches, args.threads, args.torch_bf16)
        return 0
    if args.worker:
        worker(args.worker, args.state)
        return 0
    if args.quick:
        args.epochs, args.torch_batches = 1, 20

    say("machine:", machine())
    module, config, prep, splits, source = load(args)
    say(f"data: {source}: train {len(splits.train):,}, test {len(splits.test):,}")
    shown = ("max_length", "embedding_dim", "units", "layers", "batch_size", "learning_rate")
    say("recipe config:", {k: v for k, v in dataclasses.asdict(config).items() if k in shown})
    policy = recipe_policy(config.precision)

    x_train, y_train, ref_tokens = reference_arrays(prep, splits.train)
    x_test, y_test, _ = reference_arrays(prep, splits.test)
    rec_tokens = recipe_tokens(config, splits.train, prep)
    say(f"real tokens per epoch: reference {ref_tokens:,} (cut to {REFERENCE_LENGTH}), "
        f"recipe {rec_tokens:,} (cut to {config.max_length})")  # fmt: skip

    state = Path(tempfile.mkdtemp(prefix="imdb_throughput_"))
    (state / "meta.json").write_text(json.dumps({"overrides": ["layers=2", *args.set]}))
    (state / "prep.json").write_text(json.dumps(prep))
    (state / "examples.json").write_text(json.dumps({"train": splits.train, "test": splits.test}))
    np.savez(state / "reference.npz", x_train=x_train, y_train=y_train, x_test=x_test,
             y_test=y_test)  # fmt: skip
    arrays = None
    if args.torch:
        arrays = state / "torch.npz"
        np.savez(arrays, x=x_train, y=y_train, units=REFERENCE_UNITS, layers=REFERENCE_LAYERS,
                 embedding=REFERENCE_EMBEDDING)  # fmt: skip
    args.torch_bf16 = policy == "mixed_bfloat16"
    if arrays and not args.threads:
        probe = 10 if args.quick else 40
        args.threads, args.torch_bf16 = fastest_torch(
            lambda n, bf16: slot_rate(torch_slot(arrays, probe, n, bf16)),
            args.torch_bf16,
            "real tokens/s",
        )
        say(f"PyTorch races with {args.threads} threads, {torch_precision(args.torch_bf16)}")
    names = ["reference", "recipe"] + (["recipe-keras-loop"] if args.keras_loop else [])
    contenders = {name: start_contender(name, state) for name in names}
    tokens = {name: rec_tokens if name.startswith("recipe") else ref_tokens for name in names}

    rows = []  # (contender, epoch, seconds, real tokens/s, test accuracy)
    torch_tokens, torch_seconds, torch_version = 0, 0.0, ""
    for epoch in range(args.epochs):
        for name, contender in contenders.items():
            result = contender.run(epoch)
            rate = tokens[name] / result["seconds"]
            rows.append((name, epoch + 1, result["seconds"], rate, result["accuracy"]))
            say(f"epoch {epoch + 1} {name}: {result['seconds']:.1f} s, {rate:,.0f} real tokens/s, "
                f"test accuracy {result['accuracy']:.4f}")  # fmt: skip
        if arrays:
            torch_version, n, seconds = torch_slot(
                arrays, args.torch_batches, args.threads, args.torch_bf16
            )
            torch_tokens, torch_seconds = torch_tokens + n, torch_seconds + seconds
            say(f"slot {epoch + 1} torch: {args.torch_batches} batches in {seconds:.1f} s, "
                f"{n / seconds:,.0f} real tokens/s")  # fmt: skip
    for contender in contenders.values():
        contender.close()

    def rate(name):
        mine = [r for r in rows if r[0] == name]
        return sum(r[3] * r[2] for r in mine) / sum(r[2] for r in mine)

    ref_rate, rec_rate = rate("reference"), rate("recipe")
    # The overrides in effect (a later --set of the same key wins over layers=2).
    effective = {o.split("=", 1)[0]: o for o in ["layers=2", *args.set]}
    overrides = "".join(" --set " + o for o in effective.values())
    say("")
    say(f"| contender | real tokens/s | test accuracy after {args.epochs} epochs | ratio |")
    say("|---|---|---|---|")
    final = {r[0]: r[4] for r in rows}  # each contender's accuracy after its last epoch
    say(f"| keras-io reference (fixed {REFERENCE_LENGTH}, pre-padded, batch {REFERENCE_BATCH}) "
        f"| {ref_rate:,.0f} | {final['reference']:.4f} | 1.00 |")  # fmt: skip
    say(f"| recipe (`--preset imdb{overrides}`, {policy}) | {rec_rate:,.0f} "
        f"| {final['recipe']:.4f} | {rec_rate / ref_rate:.2f} |")  # fmt: skip
    if args.keras_loop:
        loop_rate = rate("recipe-keras-loop")
        say(f"| recipe on Keras's CPU loop (`LSTM_RECIPES_FUSED=0`) | {loop_rate:,.0f} "
            f"| {final['recipe-keras-loop']:.4f} | {loop_rate / ref_rate:.2f} |")  # fmt: skip
        say(f"fused loop / Keras's loop: {rec_rate / loop_rate:.2f}x")
    if arrays:
        torch_rate = torch_tokens / torch_seconds
        say(f"| PyTorch {torch_version} (reference model and batches, "
            f"{args.torch_batches * args.epochs} batches, {args.threads} threads, "
            f"{torch_precision(args.torch_bf16)}) | {torch_rate:,.0f} | - "
            f"| {torch_rate / ref_rate:.2f} |")  # fmt: skip
        say(f"recipe / PyTorch: {rec_rate / torch_rate:.2f}x")
    shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
