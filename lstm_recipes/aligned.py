"""Aligned many-to-many labeling: one label per input step, whatever the steps are.

The pieces the frame labeling and token tagging recipes share: label ids with 0 for padding,
and per-step scoring with a confusion matrix.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from lstm_recipes import blocks, metrics, plots, stepping
from lstm_recipes.errors import UserError


def label_ids(names: list[str], labels, where: str) -> np.ndarray:
    """Label ids of one sequence: 1..C in the order of ``names`` (0 is left for padding).

    Args:
        names: the labels seen in training, in id order.
        labels: the sequence's labels.
        where: what the sequence is, for the error message.
    """
    index = {name: i for i, name in enumerate(names, 1)}
    try:
        return np.array([index[str(y)] for y in labels], np.int32)
    except KeyError as e:
        raise UserError(
            f"expected labels seen in training ({', '.join(names[:20])}), found "
            f"{e.args[0]!r} in {where}"
        ) from None


def step_scores(gold: list[list[str]], predicted: list[list[str]], names: list, run_dir: Path):
    """Per-step accuracy, per-label P/R/F1 and a confusion matrix PNG in ``run_dir/plots``.

    A gold label training never saw counts as an error in the accuracy (as conlleval scores
    it) and is left out of the confusion matrix, which has the training labels only.

    Args:
        gold: gold labels, one list per sequence.
        predicted: predicted labels, parallel to ``gold`` and as long.
        names: the labels seen in training.
        run_dir: the run directory.
    """
    flat_gold = [t for row in gold for t in row]
    flat_pred = [t for row in predicted for t in row]
    index = {name: i for i, name in enumerate(names)}
    known = [(index[g], index[p]) for g, p in zip(flat_gold, flat_pred) if g in index]
    result = metrics.classification_metrics([g for g, _ in known], [p for _, p in known], names)
    result["accuracy"] = float(np.mean([g == p for g, p in zip(flat_gold, flat_pred)]))
    result["steps"] = len(flat_gold)
    result["sequences"] = len(gold)
    plots.confusion_matrix(
        result["confusion_matrix"],
        names,
        run_dir / "plots" / "confusion_matrix.png",
        title=f"test accuracy {result['accuracy']:.4f}",
    )
    return result


def label_steps(x, mask, num_labels: int, config) -> keras.KerasTensor:
    """A (bi)LSTM ``blocks.StackedLSTM`` over masked steps, then logits at every step.

    Logit 0 is the padding class: targets use 0 for padding and the loss ignores it.

    Args:
        x: (batch, steps, features) step inputs, already dropped out.
        mask: (batch, steps) True on real steps.
        num_labels: real labels.
        config: a recipe config with ``units``, ``layers``, ``dropout`` and ``cell``.
    """
    x = blocks.StackedLSTM(
        config.units,
        config.layers,
        bidirectional=getattr(config, "bidirectional", True),
        dropout=config.dropout,
        cell=config.cell,
        name="encoder",
    )(x, mask=mask)
    # The loss masks padding by ignore_class: a Keras mask on top would fail to broadcast.
    x = blocks.DropMask()(x)
    return keras.layers.Dense(num_labels + 1, name="logits")(x)


def step_function(
    model: keras.Model, labels: list[str], config, embed, specs: list, key: str = "labels"
):
    """A ``tf.function`` that labels one step of a unidirectional model and carries its states.

    ``step(<inputs>, states: float32[B, layers * n, units]) -> {labels: string[B],
    probabilities: float32[B, C], states}``, n the cell's state count; zeros start a sequence. A
    step the embedding marks as padding leaves the states as they were, so stepping through a
    sequence gives the full-sequence outputs with constant memory.

    Args:
        model: a trained model whose layers are named ``encoder`` (a unidirectional
            ``StackedLSTM``) and ``logits``.
        labels: the label names, in id order.
        config: the recipe config (``cell``, ``layers``, ``units``).
        embed: one step's inputs ``[B, ...]`` -> (``[B, 1, features]`` encoder input, ``[B, 1]``
            real-step mask).
        specs: the step inputs' ``TensorSpec``s (their names are the signature's input names).
        key: the name of the labels output (the full-sequence signature's name for them).
    """
    encoder, head = model.get_layer("encoder"), model.get_layer("logits")
    names = tf.constant(labels)
    shape = stepping.state_shape(config, specs[0].shape[0])
    state_spec = tf.TensorSpec(shape, tf.float32, name="states")

    @tf.function(input_signature=[*specs, state_spec], autograph=False)
    def step(*args):
        states = args[-1]
        x, real = embed(*args[:-1])
        given = stepping.unpack(states, config)
        out, new = encoder.run(x, mask=real, training=False, initial_states=given)
        probabilities = tf.nn.softmax(head(out)[:, 0, 1:])
        ids = tf.argmax(probabilities, -1, output_type=tf.int32)
        carried = stepping.pack(new)
        return {key: tf.gather(names, ids), "probabilities": probabilities, "states": carried}

    return step


def zero_states(config, batch: int) -> list:
    """The ``states`` that start a sequence for ``step_function``, as a nested list."""
    return np.zeros(stepping.state_shape(config, batch)).tolist()
