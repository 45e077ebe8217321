"""Gradient flow through time: how far back a model's training signal reaches.

For each sequence, the norm of the loss gradient with respect to the model's input at every
step (the word embedding's output, or the raw frames), aligned at the sequence's end and
averaged over sequences. A plain recurrent network's curve falls off exponentially with the
distance from the end (the vanishing gradient); an LSTM's stays up much longer.
"""

from __future__ import annotations

import csv
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf


def _input_layer(model: keras.Model, name: str | None):
    if name:
        return model.get_layer(name)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Embedding):
            return layer
    return None  # no embedding: the gradient is taken with respect to the model's own input


def _loss_fn(model: keras.Model):
    loss = model.loss
    if loss is None:
        raise ValueError("expected a compiled model (its loss is what the gradient is taken of)")
    return keras.losses.get(loss) if isinstance(loss, str) else loss


def gradient_profile(
    model: keras.Model,
    dataset: tf.data.Dataset,
    batches: int = 8,
    layer: str | None = None,
    max_steps: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean input-gradient norm per step before the end, and how many sequences reach it.

    Index 0 is each sequence's last step, index k the step k before it. The loss is summed over
    the batch (each sequence contributes its own gradient); dropout is off.

    Args:
        model: a compiled functional Keras model.
        dataset: batches of ``(inputs, targets)`` as the model trains on them (0-padded ids, or
            frames whose padding rows are not finite).
        batches: how many batches to average over.
        layer: the embedding layer whose output is differentiated (default: the first
            ``Embedding``; none: the model's input itself).
        max_steps: keep at most this many steps before the end.
    """
    target = _input_layer(model, layer)
    loss_fn = _loss_fn(model)
    if target is not None:
        probe = keras.Model(model.inputs, [target.input, target.output, model.output])
    sums, counts = np.zeros(0), np.zeros(0)
    seen = 0
    for x, y in dataset.take(batches):
        seen += 1
        with tf.GradientTape() as tape:
            if target is None:
                seq = tf.convert_to_tensor(x if not isinstance(x, dict) else next(iter(x.values())))
                tape.watch(seq)
                pred = model(seq, training=False)
                real = tf.reduce_all(tf.math.is_finite(seq), axis=-1)
            else:
                ids, seq, pred = probe(x, training=False)
                real = tf.not_equal(ids, 0)
            batch = tf.cast(tf.shape(seq)[0], tf.float32)
            loss = loss_fn(y, pred) * batch
        grad = tape.gradient(loss, seq)
        if grad is None:
            raise ValueError("the loss does not depend on the chosen input layer")
        grad = tf.where(tf.math.is_finite(grad), grad, 0.0)
        norms = tf.norm(tf.reshape(grad, [tf.shape(grad)[0], tf.shape(grad)[1], -1]), axis=-1)
        norms, real = norms.numpy(), real.numpy()
        for row, keep in zip(norms, real):
            values = row[keep][::-1]
            if max_steps:
                values = values[:max_steps]
            if len(values) > len(sums):
                sums = np.pad(sums, (0, len(values) - len(sums)))
                counts = np.pad(counts, (0, len(values) - len(counts)))
            sums[: len(values)] += values
            counts[: len(values)] += 1
    if not seen:
        raise ValueError("expected at least one batch of data, found none")
    return sums / np.maximum(counts, 1), counts


def write_csv(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """``label, steps_before_end, mean_grad_norm, sequences`` rows for every curve.

    Args:
        path: the CSV file.
        curves: label -> ``gradient_profile``'s result.
    """
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "steps_before_end", "mean_grad_norm", "sequences"])
        for label, (norms, counts) in curves.items():
            for k, (v, n) in enumerate(zip(norms, counts)):
                writer.writerow([label, k, f"{v:.6g}", int(n)])


def plot(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], min_sequences: int = 5):
    """Log-scale gradient norm against steps before the end, one line per curve.

    Args:
        path: the PNG to write.
        curves: label -> ``gradient_profile``'s result.
        min_sequences: draw only steps that at least this many sequences reach (the tail of a
            few long sequences is noise).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (norms, counts) in curves.items():
        keep = (counts >= min_sequences) & (norms > 0)
        steps = np.flatnonzero(keep)
        style = "--" if label.endswith("(init)") else "-"
        ax.plot(steps, norms[keep], style, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("steps before the end of the sequence")
    ax.set_ylabel("mean |d loss / d input| at that step")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_diagnosis(
    run_dirs: list[Path],
    data: str | None,
    batches: int,
    kinds: list[str],
    max_steps: int | None,
    out: Path | None,
) -> Path:
    """Measure and plot the gradient flow of each run, trained and/or freshly initialized.

    Args:
        run_dirs: trained run directories, overlaid in one plot.
        data: data to measure on (None: each run's own test split).
        batches: batches of real data averaged per curve.
        kinds: ``trained`` and/or ``init`` (weights freshly initialized from the run's seed).
        max_steps: steps before the end kept (None: all).
        out: the PNG to write (None: ``plots/gradient_flow.png`` of the first run); a CSV of
            the curves goes beside it.

    Returns:
        The PNG's path.
    """
    from lstm_recipes.run import Run

    curves = {}
    for run_dir in run_dirs:
        run = Run.reopen(Path(run_dir), data)
        split = run.splits.test or run.splits.validation
        dataset = run.module.batches(run.config, run.prep, split, training=False)
        label = f"{Path(run_dir).name} (cell={getattr(run.config, 'cell', 'lstm')})"
        for kind in kinds:
            if kind == "init":
                keras.utils.set_random_seed(run.config.seed)
                model = run.module.build_model(run.config, run.prep)
            else:
                model = run.model
            layer = getattr(run.module, "DIAGNOSE_LAYER", None)
            name = f"{label} (init)" if kind == "init" else label
            curves[name] = gradient_profile(model, dataset, batches, layer, max_steps)
            norms, counts = curves[name]
            far = int(np.flatnonzero(counts >= 5).max()) if (counts >= 5).any() else 0
            print(
                f"{name}: |grad| at the last step {norms[0]:.3g}, {far} steps earlier "
                f"{norms[far]:.3g} ({int(counts[0])} sequences)",
                flush=True,
            )
    out = Path(out or Path(run_dirs[0]) / "plots" / "gradient_flow.png")
    plot(out, curves)
    write_csv(out.with_suffix(".csv"), curves)
    return out
