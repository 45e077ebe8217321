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
