"""PNG plots for the run directory: learning curves and confusion matrices."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def learning_curves(history_csv: Path, out: Path) -> Path | None:
    """One panel per metric, train and validation together, from Keras's CSVLogger file.

    Args:
        history_csv: ``history.csv`` of a run.
        out: PNG path to write.
    """
    if not history_csv.exists():
        return None
    rows = list(csv.DictReader(history_csv.open()))
    if not rows:
        return None
    names = [k for k in rows[0] if k not in ("epoch", "learning_rate") and not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    epochs = [int(r["epoch"]) + 1 for r in rows]
    for ax, name in zip(axes[0], names):
        ax.plot(epochs, [float(r[name]) for r in rows], "o-", label="train")
        if f"val_{name}" in rows[0]:
            ax.plot(epochs, [float(r[f"val_{name}"]) for r in rows], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def confusion_matrix(matrix, class_names: list[str], out: Path, title: str = "") -> Path:
    """A confusion matrix heat map with counts in the cells (rows: truth, columns: predicted).

    Args:
        matrix: square counts, as from ``metrics.confusion_matrix``.
        class_names: names in class-id order.
        out: PNG path to write.
        title: figure title.
    """
    n = len(class_names)
    size = min(max(3.0, 0.5 * n + 2), 20)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=90 if n > 6 else 0)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    if n <= 30:
        peak = max(max(row) for row in matrix) or 1
        for i in range(n):
            for j in range(n):
                color = "white" if matrix[i][j] > peak / 2 else "black"
                ax.text(j, i, str(matrix[i][j]), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def attention_map(weights, source_tokens: list[str], output_tokens: list[str], out: Path) -> Path:
    """A heatmap of attention weights: one row per output token, one column per source token.

    Args:
        weights: (len(output_tokens), len(source_tokens)) attention weights.
        source_tokens: column labels.
        output_tokens: row labels.
        out: PNG path to write.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(
        figsize=(1.0 + 0.45 * len(source_tokens), 1.0 + 0.4 * len(output_tokens))
    )
    ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source_tokens)), source_tokens, rotation=60, ha="right")
    ax.set_yticks(range(len(output_tokens)), output_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def caption_attention(image, words: list[str], weights, out: Path, columns: int = 5) -> Path:
    """The image once per generated word, with the attended region of the feature grid lit.

    Args:
        image: (H, W, 3) uint8.
        words: the generated words.
        weights: (len(words), grid rows, grid columns) attention weights.
        out: the PNG to write.
        columns: panels per row.
    """
    rows = (len(words) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.3 * rows), squeeze=False)
    height, width = image.shape[:2]
    for ax in axes.ravel():
        ax.axis("off")
    for ax, word, w in zip(axes.ravel(), words, weights):
        ax.imshow(image)
        ax.imshow(
            w, cmap="gray", alpha=0.55, extent=(0, width, height, 0), interpolation="bilinear"
        )
        ax.set_title(word, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
