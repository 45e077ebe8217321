"""The ``Run`` object that the commands, ``ablate`` and ``diagnose`` call."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from lstm_recipes.errors import UserError
from lstm_recipes.run import Run


def test_reopened_run_evaluates_to_the_metrics_it_wrote(tiny_run, tmp_path):
    # A copy: evaluating rewrites metrics.json and run.json of the shared fixture otherwise.
    copy = shutil.copytree(tiny_run, tmp_path / "run")
    written = json.loads((copy / "metrics.json").read_text())
    run = Run.reopen(copy)
    assert run.name == "sentiment"
    assert dataclasses.asdict(run.config) == json.loads((copy / "config.json").read_text())
    again = run.evaluate()
    assert again["accuracy"] == pytest.approx(written["accuracy"], abs=1e-9)
    assert again["confusion_matrix"] == written["confusion_matrix"]


def test_reopen_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="expected run.json in"):
        Run.reopen(tmp_path)


def test_training_and_validation_batches_come_with_tf_data_autotuning_off(tmp_path, monkeypatch):
    # With autotuning on, Keras's dropping of an epoch's spare iterator waited up to 30 s for
    # the pipeline's autotuning thread at random epochs (training.without_autotune).
    import keras
    import tensorflow as tf

    from lstm_recipes import training

    seen = {}
    fit = keras.Model.fit

    def spy(self, x=None, *args, validation_data=None, **kwargs):
        seen["train"] = x.options().autotune.enabled
        seen["validation"] = validation_data.options().autotune.enabled
        return fit(self, x, *args, validation_data=validation_data, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    Run.train("sentiment", preset="tiny", overrides=("epochs=1",), run_dir=tmp_path / "run")
    assert seen == {"train": False, "validation": False}

    # The same batches, in the same order.
    def batches():
        return tf.data.Dataset.range(10).shuffle(10, seed=3).batch(3).prefetch(tf.data.AUTOTUNE)

    quiet = training.without_autotune(batches())
    assert quiet.options().autotune.enabled is False
    assert [b.numpy().tolist() for b in quiet] == [b.numpy().tolist() for b in batches()]
