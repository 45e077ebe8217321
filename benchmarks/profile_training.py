"""Where a recipe's training step spends its time: TensorFlow's profiler, summed by op type.

Trains the sentiment recipe (``--preset imdb --set layers=2``, as in imdb_throughput.py) on a
sample of IMDB for one warm-up epoch, then records ``--steps`` training steps with
``tf.profiler`` and sums the op events of TensorFlow's host threads by op type (the part of
the event name after the last ``:``). Shares are of the summed op time, which counts the time
of ops that ran side by side on the two cores twice; the input pipeline runs on its own
threads and is not in the sum.

    python benchmarks/profile_training.py [--examples 3000] [--steps 20]
    python benchmarks/profile_training.py --quick    # generated data
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
from pathlib import Path

from common import SHARED_DATA, Timer, need, say

GROUPS = [
    ("LSTM step: matrix products", ("MatMul", "BatchMatMul", "_MklMatMul", "Einsum")),
    (
        "LSTM step: element-wise gates",
        (
            "Sigmoid",
            "Tanh",
            "Mul",
            "AddV2",
            "Add",
            "Sub",
            "SigmoidGrad",
            "TanhGrad",
            "Split",
            "SplitV",
            "ConcatV2",
            "BiasAdd",
            "BiasAddGrad",
        ),
    ),
    (
        "masking (Select/Where on masked steps)",
        ("Select", "SelectV2", "Where", "Cast", "LogicalAnd", "Tile", "ExpandDims"),
    ),
    (
        "while-loop and TensorList bookkeeping",
        (
            "TensorListGetItem",
            "TensorListSetItem",
            "TensorListPushBack",
            "TensorListPopBack",
            "TensorListStack",
            "TensorListFromTensor",
            "TensorListReserve",
            "TensorListElementShape",
            "While",
            "StatelessWhile",
            "Less",
            "LessEqual",
            "Identity",
            "Enter",
            "Exit",
            "NextIteration",
            "Merge",
            "Switch",
            "LoopCond",
        ),
    ),
    (
        "embedding gather and its gradient",
        ("ResourceGather", "GatherV2", "UnsortedSegmentSum", "ResourceScatterAdd", "Unique"),
    ),
    (
        "optimizer (Adam)",
        (
            "AssignVariableOp",
            "AssignAddVariableOp",
            "AssignSubVariableOp",
            "ReadVariableOp",
            "Sqrt",
            "RealDiv",
            "Square",
            "Pow",
            "Maximum",
        ),
    ),
]


def group_of(op: str) -> str:
    for name, ops in GROUPS:
        if op in ops or any(op.startswith(o) for o in ops):
            return name
    return "other ops"


def summarize(logdir: Path) -> tuple[collections.Counter, collections.Counter]:
    """(picoseconds per group, per op type) over the host planes of the profile in logdir."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    per_group, per_op = collections.Counter(), collections.Counter()
    for path in logdir.rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            names = {k: m.name for k, m in plane.event_metadata.items()}
            for line in plane.lines:
                for event in line.events:
                    name = names.get(event.metadata_id, "")
                    # Ops are "node name:OpType"; executor spans ("ExecutorState::Process"),
                    # tf.data iterators ("Iterator::Root::...") and whole functions enclose them.
                    if not re.fullmatch(r"[^:]+:[A-Za-z0-9_]+", name) or "__inference" in name:
                        continue
                    op = name.rsplit(":", 1)[-1]
                    per_op[op] += event.duration_ps
                    per_group[group_of(op)] += event.duration_ps
    return per_group, per_op


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    import tensorflow as tf

    from lstm_recipes import fastpath
    from lstm_recipes import recipe as recipe_lib
    from lstm_recipes.data import limit

    fastpath.configure_cpu_threads()
    module = recipe_lib.load_recipe("sentiment")
    config = recipe_lib.resolve_config(module, "imdb", ["layers=2"])
    path = SHARED_DATA / "sentiment" / "imdb" / "train.csv.gz"
    if need(path, args.quick):
        splits = module.load_data(config, str(path))
    else:
        config = recipe_lib.resolve_config(module, "tiny", [])
        splits = module.load_data(config, "builtin")
    train = limit(splits.train, 300 if args.quick else args.examples, 0)
    steps = 3 if args.quick else args.steps
    prep = module.fit_preprocessing(config, train)
    model = module.build_model(config, prep)
    data = module.batches(config, prep, train, training=True)
    model.fit(data, epochs=1, verbose=0)  # trace and warm up
    logdir = Path(tempfile.mkdtemp(prefix="profile_"))
    with Timer() as t:
        tf.profiler.experimental.start(str(logdir))
        model.fit(data.take(steps), epochs=1, verbose=0)
        tf.profiler.experimental.stop()
    per_group, per_op = summarize(logdir)
    total = sum(per_group.values()) or 1
    say(f"{steps} training steps (batch {config.batch_size}) profiled in {t.seconds:.1f} s; "
        f"summed op time {total / 1e12:.1f} s")  # fmt: skip
    say("| where | share of op time |")
    say("|---|---|")
    for name, ps in per_group.most_common():
        say(f"| {name} | {100 * ps / total:.1f}% |")
    say(
        "top op types: "
        + ", ".join(f"{op} {100 * ps / total:.1f}%" for op, ps in per_op.most_common(12))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
