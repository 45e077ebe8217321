"""Where training time goes: a py-spy profile of a recipe's training, summed by category.

    py-spy record --native --idle --rate 50 --format raw -o prof.txt -- \\
        lstm-recipes train sentiment --preset imdb --data ../shared/data/sentiment/imdb/train.csv.gz \\
        --set max_examples=4000 --set epochs=1 --run-dir /tmp/prof_run
    python benchmarks/profile_summary.py prof.txt

py-spy's raw format is one line per distinct stack ("frame;frame;... count"). Each sample is
put in the first category (top of the stack first) whose pattern matches one of its frames;
threads that sleep or wait are counted apart, so the shares are of busy samples.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

# Checked against the innermost frame first, so the most specific kernel wins.
CATEGORIES = [
    ("matrix products (Eigen/oneDNN GEMM)", r"gemm|Gemm|GEMM|MatMul|matmul|contraction|dnnl|mkl"),
    (
        "element-wise math (sigmoid, tanh, mul, add)",
        r"scalar_logistic|tanh|Sigmoid|Tanh|scalar_product|scalar_sum|cwise|Cwise|BinaryOp|UnaryOp|Select",
    ),
    (
        "embedding gather and its sparse gradient",
        r"Gather|gather|ScatterAdd|Unsorted|SegmentSum|IndexedSlices",
    ),
    ("optimizer update (Adam)", r"ApplyAdam|ResourceApply|AssignAdd|AssignSub|Adam"),
    (
        "while-loop and TensorList bookkeeping",
        r"TensorList|TensorArray|while|While|Enter|Exit|NextIteration|LoopCond|Merge|Switch",
    ),
    ("tf.data input pipeline", r"data::|IteratorGetNext|Dataset|ParallelMap|bucket|Padded"),
    (
        "executor and kernel dispatch",
        r"ExecutorState|Executor|OpKernelContext|ThreadPool|RunAsync|Eigen::.*Thread|schedule|Process",
    ),
    ("Python (Keras fit loop, callbacks)", r"\.py:"),
]
IDLE = r"futex|pthread_cond_wait|epoll_wait|sem_wait|nanosleep|__GI___poll|WaitForWork|WaitForMilliseconds|condition_variable|wait_for|CondVar|nsync_mu_semaphore_p"


def summarize(path: str) -> tuple[Counter, int, int]:
    """(busy samples per category, busy samples, idle samples) of a py-spy raw profile."""
    busy, idle, total = Counter(), 0, 0
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.readlines()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if re.search(IDLE, frames[-1]):
            idle += n
            continue
        total += n
        for frame in reversed(frames):
            name = next((c for c, pattern in CATEGORIES if re.search(pattern, frame)), None)
            if name:
                busy[name] += n
                break
        else:
            busy["other"] += n
    return busy, total, idle


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python benchmarks/profile_summary.py PROFILE.txt (py-spy --format raw)")
    busy, total, idle = summarize(argv[0])
    print(f"{total:,} busy samples, {idle:,} idle (waiting threads)")
    print("| where | share of busy samples |")
    print("|---|---|")
    for name, n in busy.most_common():
        print(f"| {name} | {100 * n / max(total, 1):.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
