"""A ``Run``: train, evaluate and export one recipe in one run directory, or reopen it.

The CLI's ``run``/``train``/``evaluate``/``export`` commands, ``ablate`` and ``diagnose`` all go
through this class, so a run directory means the same thing whichever made it::

    run = Run.train("sentiment", data="reviews.csv", preset="tiny")
    metrics = run.evaluate()
    path = run.export()

    run = Run.reopen(Path("runs/sentiment/20261202-101500"))  # later, or in another process
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
import types
from pathlib import Path

import keras

from lstm_recipes import card, distribute, plots, precision, rundir, training
from lstm_recipes import export as export_lib
from lstm_recipes import recipe as recipe_lib
from lstm_recipes.data import Splits, reading
from lstm_recipes.errors import UserError

# What reading the data replaced or skipped (``reading.Report.summary``), in the run directory.
DATA_REPORT = "data_report.json"


def _say(message: str) -> None:
    print(message, flush=True)


@dataclasses.dataclass
class Run:
    """A recipe's run directory with its data, fitted preprocessing and trained model.

    Args:
        module: the recipe module.
        config: the resolved config.
        run_dir: the run directory.
        info: the content of ``run.json`` (how it was started, how far it got).
        splits: the data splits.
        prep: the preprocessing state fitted on the train split.
        model: the model with the best validation weights.
    """

    module: types.ModuleType
    config: object
    run_dir: Path
    info: dict
    splits: Splits
    prep: dict
    model: keras.Model

    @classmethod
    def train(
        cls,
        recipe: str,
        data: str = "builtin",
        test_data: str | None = None,
        preset: str = "default",
        overrides: tuple[str, ...] = (),
        run_dir: Path | None = None,
        strategy: str | None = None,
        cpu_devices: int = 0,
        validation_data: str | None = None,
        deadline: float | None = None,
    ) -> Run | None:
        """Train a recipe in a new run directory, or resume or reuse the one given.

        Args:
            recipe: a built-in recipe name or a path to a recipe ``.py`` file.
            data: the ``--data`` spec.
            test_data: a separate test spec, or None to carve the test split from ``data``.
            preset: a preset name of the recipe.
            overrides: ``KEY=VALUE`` config changes.
            run_dir: the run directory (None: ``runs/<recipe>/<timestamp>``).
            strategy: a ``tf.distribute`` strategy name (None: the config's).
            cpu_devices: with ``mirrored`` and no GPU, mirror over this many logical CPUs.
            validation_data: a separate validation spec, or None to carve validation
                examples from ``data``.
            deadline: a ``time.time()`` at which training stops, the config unchanged (a
                search's budget; see ``training.fit``).

        Returns:
            The trained run; None on a multi-worker job's worker that is not the chief (it
            trains the same steps in a temporary folder; the chief writes the run directory).
        """
        module = recipe_lib.load_recipe(recipe)
        if strategy is not None:
            distribute.check_name(strategy)
            if "strategy" not in {f.name for f in dataclasses.fields(module.Config)}:
                raise UserError(
                    f"expected recipe {recipe}'s Config to have a `strategy` field for "
                    '--strategy, found none; add `strategy: distribute.Strategy = "default"`'
                )
            overrides = (*overrides, f"strategy={strategy}")
        config = recipe_lib.resolve_config(module, preset, overrides)
        precision.check(getattr(config, "precision", "float32"))
        strategy = getattr(config, "strategy", "default")
        if cpu_devices > 1 and strategy != "mirrored":
            raise UserError(
                f"expected --cpu-devices with --strategy mirrored, got it with {strategy}"
            )
        # Before anything else touches TensorFlow: devices and the cluster are fixed at start-up.
        engine = None
        if strategy != "default":
            engine = distribute.make_strategy(strategy, cpu_devices)
            _say(distribute.describe(strategy, engine))
            if not distribute.is_chief(engine):
                _train_worker(module, config, (data, test_data, validation_data), run_dir, engine)
                return None
        started = {
            "data": data,
            "test_data": test_data,
            "preset": preset,
            "overrides": list(overrides),
        }
        if validation_data:  # only when given: earlier run directories' settings stay equal
            started["validation_data"] = validation_data
        # Data first: a run directory made for data that cannot be read would refuse the fixed
        # command ("started with other settings").
        rundir.check_run_dir(module, run_dir)
        splits, quality = _load(module, config, data, test_data, validation_data)
        run_dir, info = rundir.open_run(module, config, run_dir, started)
        _say(f"run directory: {run_dir}")
        # Rewritten on every start (a resumed run reads its data again): it says what this
        # run's data was read as, for the model card.
        rundir.write_json(run_dir / DATA_REPORT, quality)
        sizes = splits.sizes()
        _say(f"data: {splits.source}: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
        prep = training.preprocessing(module, config, splits, run_dir)
        if info.get("state") in ("trained", "evaluated", "exported"):
            _say("training already finished in this run directory; reusing its best weights")
            model = training.load_model(module, config, prep, run_dir)
        else:
            model = training.fit(module, config, prep, splits, run_dir, engine, deadline=deadline)
            # The policy it trained with: config.json keeps "auto", which depends on the CPU.
            used = precision.resolve(getattr(config, "precision", "float32"))
            rundir.set_state(run_dir, info, "trained", sizes=sizes, precision=used)
            if engine is not None:
                _say(f"trained weights: {training.fingerprint(model)}")
        return cls(module, config, run_dir, info, splits, prep, model)

    @classmethod
    def reopen(
        cls, run_dir: Path, data: str | None = None, decode_precision: str | None = None
    ) -> Run:
        """A trained run directory with its data, preprocessing and best weights.

        Args:
            run_dir: the run directory.
            data: other data to load instead of the run's own (its test split is then the
                data's test split, or a carved one).
            decode_precision: search (evaluate, export) with this vocabulary-product
                precision, ``float32`` or ``bfloat16``, instead of the run's; None keeps it.
        """
        run_dir = Path(run_dir)
        if not (run_dir / "run.json").exists():
            raise UserError(f"expected run.json in {run_dir}; is it a run directory?")
        module, config, info = rundir.load_run(run_dir)
        if decode_precision is not None:
            # Before the data and the model load: a refusal should not take their time.
            if not hasattr(config, "decode_precision"):
                raise UserError(
                    "expected --decode-precision with a recipe that searches (translation, "
                    f"image_captioning); {recipe_lib.recipe_name(module)} does not"
                )
            config = dataclasses.replace(config, decode_precision=decode_precision)
        if data is None:
            splits, _ = _load(
                module, config, info["data"], info.get("test_data"), info.get("validation_data")
            )
        else:
            splits, _ = _load(module, config, data, None)
        prep = rundir.read_json(run_dir / "preprocessing.json")
        model = training.load_model(module, config, prep, run_dir)
        info.setdefault("sizes", splits.sizes())
        return cls(module, config, run_dir, info, splits, prep, model)

    @property
    def name(self) -> str:
        """The recipe's short name."""
        return recipe_lib.recipe_name(self.module)

    def evaluate(self) -> dict:
        """Test-split metrics, saved to ``metrics.json`` with the learning curves."""
        t0 = time.time()
        with training.unknown_lengths():
            metrics = self.module.evaluate(
                self.config, self.model, self.prep, self.splits.test, self.run_dir
            )
        if hasattr(self.config, "decode_precision"):
            metrics["decode_precision"] = self.config.decode_precision
        metrics["eval_seconds"] = round(time.time() - t0, 1)
        rundir.write_json(self.run_dir / "metrics.json", metrics)
        plots.learning_curves(
            self.run_dir / "history.csv", self.run_dir / "plots" / "learning_curves.png"
        )
        rundir.set_state(self.run_dir, self.info, "evaluated")
        headline = {
            k: v for k, v in metrics.items() if isinstance(v, float) and k != "eval_seconds"
        }
        _say("test metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in headline.items()))
        return metrics

    def export_litert(self, quantize: str = "none") -> Path:
        """A new LiteRT version under ``export/litert/``, verified in a fresh process that has
        only the LiteRT interpreter; returns the version's folder.

        Args:
            quantize: ``none``, ``dynamic`` or ``float16`` (see ``litert.convert``).
        """
        from lstm_recipes import litert

        if not hasattr(self.module, "portable"):
            # A recipe says why in NO_LITERT (what did not convert, measured).
            why = getattr(self.module, "NO_LITERT", "it defines no portable()")
            raise UserError(
                f"{self.name} has no LiteRT export: {why}; export a SavedModel (without --format)"
            )
        _say(f"converting to LiteRT (quantize {quantize}) and verifying in a fresh process...")
        portable = self.module.portable(self.config, self.model, self.prep)
        metadata = {"recipe": self.name}
        return litert.export_litert(portable, self.run_dir / "export", quantize, metadata)

    def export(self) -> Path:
        """A new SavedModel version under ``export/``, verified in a fresh process, and the
        model card; returns the version's path."""
        _say("exporting and verifying the SavedModel in a fresh process...")
        serving = self.module.serving(self.config, self.model, self.prep)
        signatures = export_lib.signature_summary(serving.endpoints)
        metadata = {"recipe": self.name, "signatures": signatures}
        if hasattr(self.config, "decode_precision"):
            metadata["decode_precision"] = self.config.decode_precision
        path = export_lib.export_saved_model(serving, self.run_dir / "export", metadata)
        rundir.set_state(self.run_dir, self.info, "exported", export=str(path))
        metrics_path = self.run_dir / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        report_path = self.run_dir / DATA_REPORT
        # None for runs made before data reports: the card then says nothing about it.
        quality = rundir.read_json(report_path) if report_path.exists() else None
        card.write(
            self.module,
            self.config,
            self.run_dir,
            self.info,
            self.info.get("sizes", {}),
            metrics,
            signatures,
            quality,
            self.prep.get("embeddings"),
            serving.requires,
        )
        return path


def _load(
    module, config, data: str, test_data: str | None, validation_data: str | None = None
) -> tuple[Splits, dict]:
    """The recipe's data read with the config's encoding and bad-row bound, and what reading
    replaced or skipped (``reading.Report.summary``), said in one line when anything was."""
    extra = {}
    if validation_data:
        if "validation_data" not in inspect.signature(module.load_data).parameters:
            raise UserError(
                f"recipe {recipe_lib.recipe_name(module)} does not take --validation-data: "
                "expected its load_data to have a validation_data parameter"
            )
        extra["validation_data"] = validation_data
    with reading.options_of(config) as report:
        splits = module.load_data(config, data, test_data, **extra)
    quality = report.summary()
    line = reading.describe(quality)
    if line:
        _say(line)
    return splits, quality


def _train_worker(module, config, specs, run_dir, strategy) -> None:
    """A multi-worker job's other workers: the same data, preprocessing (fitted identically,
    from the same data and seed) and training steps as the chief, in a temporary folder."""
    info = run_dir / "run.json" if run_dir is not None else None
    if info and info.exists() and rundir.read_json(info).get("state") != "started":
        _say("training already finished in this run directory; nothing to do")
        return
    with distribute.worker_dir() as tmp:
        splits, _ = _load(module, config, *specs)
        prep = training.preprocessing(module, config, splits, tmp)
        # Resume from the chief's backup when the run directory is on shared storage.
        restore_from = (run_dir or tmp) / "backup"
        model = training.fit(module, config, prep, splits, tmp, strategy, restore_from)
        _say(f"trained weights: {training.fingerprint(model)}")
    _say("done; the chief writes the run directory, checkpoints and export")
