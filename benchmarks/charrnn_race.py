"""A char-rnn race: the char_lm recipe's model against the same model in PyTorch.

The shape is char_lm's ``shakespeare`` preset (embedding 64, two unidirectional LSTM layers of
384, dropout 0.1, Adam with gradient clipping at 5, windows of 50 characters, 64 per batch):
the shape where PyTorch's fused CPU LSTM is strongest, no padding and no masks. Each contender
runs in its own process and trains on the same windows of the same text; slots are interleaved
(recipe, PyTorch, recipe, ...) so that a busy machine slows them alike, after one untimed slot
each (tracing, warm-up). The recipe trains in its preset's precision (``auto``: bfloat16
products where the CPU has bfloat16 instructions) with the thread settings ``lstm-recipes run``
uses; PyTorch races at its faster thread count (1 or 2) and, where the recipe trains in
bfloat16, its faster precision (float32, or ``torch.autocast`` in bfloat16), all probed first. The figure is characters trained per
second, the recipe's timed from its slot's first batch to its last (not to ``fit``'s return,
which can wait seconds on tf.data: see ``common.batch_span``). ``--onednn-off`` adds PyTorch
with oneDNN turned off (``torch.backends.mkldnn``): its CPU LSTM then steps ATen ops instead of
oneDNN's one LSTM primitive per layer, which shows what that primitive is worth.

    python benchmarks/charrnn_race.py [--text ../shared/data/charlm/tinyshakespeare/input.txt]
    python benchmarks/charrnn_race.py --quick     # a small model, a few batches
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
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

TEXT = SHARED_DATA / "charlm" / "tinyshakespeare" / "input.txt"


def windows(text: str, length: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(inputs, next-character targets) windows of the text, and its characters."""
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    ids = np.fromiter((lookup[c] for c in text), np.int32, len(text))
    n = (len(ids) - 1) // length
    x = ids[: n * length].reshape(n, length)
    y = ids[1 : n * length + 1].reshape(n, length)
    return x, y, chars


def recipe_worker(state: Path) -> None:
    import keras
    import tensorflow as tf

    from lstm_recipes import fastpath, precision
    from lstm_recipes import recipe as recipe_lib

    meta = json.loads((state / "meta.json").read_text())
    fastpath.configure_cpu_threads()
    module = recipe_lib.load_recipe("char_lm")
    config = recipe_lib.resolve_config(module, meta["preset"], meta["overrides"])
    keras.utils.set_random_seed(0)
    data = np.load(state / "windows.npz")
    prep = {"unit": "chars", "vocabulary": meta["chars"]}
    # In the preset's precision, as `lstm-recipes train` builds it (auto: bfloat16 products
    # where the CPU has bfloat16 instructions).
    with precision.training_policy(precision.resolve(config.precision)):
        model = module.build_model(config, prep)
    # The recipe's ids: 0 is kept for unseen characters, so the text's ids shift by one.
    order = np.random.default_rng(0).permutation(len(data["x"]))
    ds = tf.data.Dataset.from_tensor_slices((data["x"][order] + 1, data["y"][order] + 1))
    batches = ds.repeat().batch(meta["batch"], drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    span = batch_span()
    for line in sys.stdin:
        n = int(line)
        model.fit(batches, steps_per_epoch=n, epochs=1, verbose=0, shuffle=False, callbacks=[span])
        print(json.dumps({"seconds": span.seconds, "chars": n * meta["batch"] * meta["length"],
                          "after": span.after()}), flush=True)  # fmt: skip


def torch_worker(state: Path, threads: int, onednn: bool = True, bf16: bool = False) -> None:
    import torch
    from torch import nn

    meta = json.loads((state / "meta.json").read_text())
    torch.backends.mkldnn.enabled = onednn
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    data = np.load(state / "windows.npz")
    x, y = torch.from_numpy(data["x"]).long(), torch.from_numpy(data["y"]).long()
    size, units, layers = len(meta["chars"]) + 1, meta["units"], meta["layers"]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(size, meta["embedding"])
            between = meta["dropout"] if layers > 1 else 0.0  # as the recipe: between layers
            self.lstm = nn.LSTM(meta["embedding"], units, layers, batch_first=True,
                                dropout=between)  # fmt: skip
            self.drop = nn.Dropout(meta["dropout"])
            self.out = nn.Linear(units, size)

        def forward(self, ids):
            h, _ = self.lstm(self.embedding(ids))
            return self.out(self.drop(h))

    net, loss_fn = Net(), nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=meta["learning_rate"])
    generator = torch.Generator().manual_seed(0)
    batch = meta["batch"]
    for line in sys.stdin:
        n = int(line)
        start = time.perf_counter()
        for _ in range(n):
            rows = torch.randint(0, len(x), (batch,), generator=generator)
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = net(x[rows] + 1)
            loss = loss_fn(logits.float().reshape(-1, size), (y[rows] + 1).reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), meta["clipnorm"])
            optimizer.step()
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "chars": n * batch * meta["length"]}), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", type=Path, default=TEXT)
    parser.add_argument("--batches", type=int, default=60, help="batches per timed slot")
    parser.add_argument("--slots", type=int, default=3, help="timed slots per contender")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: probe)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--onednn-off", action="store_true",
                        help="also race PyTorch with oneDNN off")  # fmt: skip
    parser.add_argument("--worker", choices=["recipe", "torch", "torch-plain"],
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "recipe":
        recipe_worker(args.state)
        return 0
    if args.worker in ("torch", "torch-plain"):
        torch_worker(args.state, args.threads, onednn=args.worker == "torch", bf16=args.bf16)
        return 0

    from lstm_recipes import recipe as recipe_lib

    say("machine:", machine())
    preset = "tiny" if args.quick else "shakespeare"
    if args.quick:
        args.batches, args.slots = 5, 1
    config = recipe_lib.resolve_config(recipe_lib.load_recipe("char_lm"), preset, [])
    if need(args.text, args.quick):
        text, source = args.text.read_text(encoding="utf-8"), str(args.text)
    else:
        rng = np.random.default_rng(0)
        text, source = "".join(rng.choice(list("abcdefgh \n"), 20_000)), "generated text"
    x, y, chars = windows(text, config.seq_length)
    state = Path(tempfile.mkdtemp(prefix="charrnn_race_"))
    np.savez(state / "windows.npz", x=x, y=y)
    meta = {
        "preset": preset, "overrides": [], "chars": chars, "batch": config.batch_size,
        "length": config.seq_length, "embedding": config.embedding_dim, "units": config.units,
        "layers": config.layers, "dropout": config.dropout,
        "learning_rate": config.learning_rate, "clipnorm": config.clipnorm,
    }  # fmt: skip
    (state / "meta.json").write_text(json.dumps(meta))
    say(f"text: {source}, {len(text):,} characters, {len(chars)} distinct; shape: embedding "
        f"{config.embedding_dim}, {config.layers} x LSTM {config.units}, batches of "
        f"{config.batch_size} x {config.seq_length} characters")  # fmt: skip

    policy = recipe_policy(config.precision)

    def torch_contender(threads: int, kind: str = "torch", bf16: bool = False) -> SlotWorker:
        args_ = ["--worker", kind, "--state", str(state), "--threads", str(threads)]
        return SlotWorker(__file__, args_ + (["--bf16"] if bf16 else []))

    def probe(threads: int, bf16: bool) -> float:
        worker = torch_contender(threads, bf16=bf16)
        worker.run(2)  # warm-up
        result = worker.run(max(args.batches // 3, 3))
        worker.close()
        return result["chars"] / result["seconds"]

    threads, bf16 = args.threads, policy == "mixed_bfloat16"
    if not threads:
        threads, bf16 = fastest_torch(probe, bf16, "chars/s")
    torch_shown = torch_precision(bf16)
    say(f"PyTorch races with {threads} threads, {torch_shown}")
    contenders = {
        "recipe": SlotWorker(__file__, ["--worker", "recipe", "--state", str(state)]),
        "torch": torch_contender(threads, bf16=bf16),
    }
    if args.onednn_off:
        contenders["torch-plain"] = torch_contender(threads, "torch-plain", bf16)
    for worker in contenders.values():
        worker.run(3)  # untimed: tracing, warm-up
    totals = {name: [0, 0.0] for name in contenders}
    for slot in range(args.slots):
        for name, worker in contenders.items():
            result = worker.run(args.batches)
            totals[name][0] += result["chars"]
            totals[name][1] += result["seconds"]
            after = (
                f" (then {result['after']:.1f} s to return from fit)" if "after" in result else ""
            )
            say(f"slot {slot + 1} {name}: {args.batches} batches in {result['seconds']:.1f} s, "
                f"{result['chars'] / result['seconds']:,.0f} chars/s{after}")  # fmt: skip
    for worker in contenders.values():
        worker.close()
    import torch

    rate = {name: chars / seconds for name, (chars, seconds) in totals.items()}
    say("")
    say("| contender | characters/s | ratio |")
    say("|---|---|---|")
    say(f"| PyTorch {torch.__version__} (`nn.LSTM`, {threads} threads, {torch_shown}) "
        f"| {rate['torch']:,.0f} "
        f"| 1.00 |")  # fmt: skip
    if "torch-plain" in rate:
        plain = rate["torch-plain"]
        say(f"| PyTorch, oneDNN off (`torch.backends.mkldnn.enabled = False`) | {plain:,.0f} "
            f"| {plain / rate['torch']:.2f} |")  # fmt: skip
    say(f"| recipe (char_lm `{preset}` model, fused CPU LSTM, {policy}) | {rate['recipe']:,.0f} "
        f"| {rate['recipe'] / rate['torch']:.2f} |")  # fmt: skip
    say(f"recipe / PyTorch: {rate['recipe'] / rate['torch']:.2f}x (goal >= 2.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
