"""--validation-data: the given set replaces the carved validation split in every recipe that
takes it, is recorded in the run, and a recipe whose load_data lacks it refuses in one line."""

import json
from pathlib import Path

from click.testing import CliRunner
from conftest import cli_ok, make_reviews, write_csv
from test_image_captioning import _captions, _write_images

from lstm_recipes import recipe as recipe_lib
from lstm_recipes.cli import main

sentiment = recipe_lib.load_recipe("sentiment")
translation = recipe_lib.load_recipe("translation")
captioning = recipe_lib.load_recipe("image_captioning")


def test_sentiment_run_uses_the_validation_file_and_records_it(tmp_path):
    train = write_csv(tmp_path / "train.csv", make_reviews(300))
    validation = write_csv(tmp_path / "valid.csv", make_reviews(40, seed=5))
    run = tmp_path / "run"
    cli_ok(
        "train",
        "sentiment",
        "--preset",
        "tiny",
        "--data",
        str(train),
        "--validation-data",
        str(validation),
        "--set",
        "max_examples=0",
        "--run-dir",
        str(run),
    )
    info = json.loads((run / "run.json").read_text())
    assert info["validation_data"] == str(validation)
    # Nothing is carved for validation: train and the carved test share cover the 300 rows.
    assert info["sizes"]["validation"] == 40
    assert info["sizes"]["train"] + info["sizes"]["test"] == 300
    # A reopened run reads the same validation file.
    cli_ok("evaluate", str(run))


def test_translation_validation_file_is_reversed_with_the_data(tmp_path):
    pairs = [(f"uno {i}", f"one {i}") for i in range(60)]
    (tmp_path / "pairs.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs))
    (tmp_path / "valid.tsv").write_text("dos\ttwo\ntres\tthree\n")
    config = translation.Config(reverse=True)
    splits = translation.load_data(
        config, str(tmp_path / "pairs.tsv"), validation_data=str(tmp_path / "valid.tsv")
    )
    assert splits.validation == [("two", "dos"), ("three", "tres")]
    assert ("one 0", "uno 0") in splits.train + splits.test


def test_captioning_validation_folder_replaces_the_dev_list(tmp_path):
    names = _write_images(tmp_path / "data" / "images", n=10)
    caps = _captions(names)
    rows = ["image,caption"] + [f"{n},{c}" for n in names for c in caps[n]]
    (tmp_path / "data" / "captions.csv").write_text("\n".join(rows) + "\n")
    other = _write_images(tmp_path / "valid" / "images", n=3)
    rows = ["image,caption"] + [f"{n},{c}" for n in other for c in _captions(other)[n]]
    (tmp_path / "valid" / "captions.csv").write_text("\n".join(rows) + "\n")
    splits = captioning.load_data(
        captioning.Config(validation_size=2, test_size=2),
        str(tmp_path / "data"),
        validation_data=str(tmp_path / "valid"),
    )
    assert splits.sizes() == {"train": 8, "validation": 3, "test": 2}
    assert all(Path(image).parent.parent.name == "valid" for image, _ in splits.validation)


def test_a_recipe_without_validation_data_refuses_it_in_one_line(tmp_path):
    source = Path(recipe_lib.recipes_dir()) / "sentiment.py"
    old = source.read_text().replace(
        "    validation_data: str | None = None,\n) -> Splits:", ") -> Splits:", 1
    )
    assert old != source.read_text()  # the edit took: this copy lacks the parameter
    (tmp_path / "old_sentiment.py").write_text(old)
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(tmp_path / "old_sentiment.py"),
            "--preset",
            "tiny",
            "--validation-data",
            "x.csv",
            "--run-dir",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code != 0
    assert "does not take --validation-data" in result.output
    assert "Traceback" not in result.output
