"""Encodings, undecodable bytes and bad rows (issue #19): each reader through ``data.reading``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import cli_ok, make_reviews
from lstm_recipes.recipes import sentiment

from lstm_recipes import card
from lstm_recipes import recipe as recipe_lib
from lstm_recipes.cli import main
from lstm_recipes.data import captions, conll, files, parallel, reading
from lstm_recipes.errors import UserError

HINT = "(or skip such rows with --set skip_bad_rows=N)"


def test_cp1252_is_refused_as_utf8_naming_the_line_and_read_with_its_encoding(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label\nfine,pos\ncaf\xe9 cr\xe8me,neg\n")
    with pytest.raises(UserError, match=r"expected UTF-8 text in .*byte 0xe9 .*\(line 3\)") as e:
        files.read_table(path, ["text", "label"])
    assert "encoding=NAME" in str(e.value) and "\n" not in str(e.value)
    with reading.options(encoding="cp1252") as report:
        rows = files.read_table(path, ["text", "label"])
    assert rows[1]["text"] == "café crème"
    # Nothing replaced or skipped: the summary only names the codec.
    assert report.summary() == {"encoding": "cp1252"}


def test_replaced_bytes_are_counted_per_file(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label\ncaf\xe9,pos\n\xff\xfe ok,neg\n")
    with reading.options(decode_errors="replace") as report:
        rows = files.read_table(path, ["text", "label"])
    assert [r["text"] for r in rows] == ["caf\ufffd", "\ufffd\ufffd ok"]
    summary = report.summary()
    assert summary["replaced_bytes"] == 3 and summary["replaced_in"] == {str(path): 3}
    assert "3 undecodable byte(s) replaced" in reading.describe(summary)


def _ragged(tmp_path):
    path = tmp_path / "ragged.csv"
    rows = ["text,label", "a,pos", "b,pos,extra", "c,neg", "d", "e,neg", "f,pos,x,y", "g,neg"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_ragged_rows_are_refused_by_default_with_the_hint(tmp_path):
    path = _ragged(tmp_path)
    with pytest.raises(UserError) as e:
        files.read_table(path, ["text", "label"])
    assert str(e.value) == (
        f"{path}:3: expected 2 fields like the header, found 3 (quote fields that hold a comma) "
        + HINT
    )


def test_skip_bad_rows_skips_two_reporting_each_and_refuses_a_third(tmp_path, capsys):
    path = _ragged(tmp_path)
    with reading.options(skip_bad_rows=3) as report:
        rows = files.read_table(path, ["text", "label"])
    assert [r["text"] for r in rows] == ["a", "c", "e", "g"]
    assert [s.split(": ")[0] for s in report.skipped] == [f"{path}:3", f"{path}:5", f"{path}:7"]
    assert (
        f"skipped {path}:5: expected 2 fields like the header, found 1" in capsys.readouterr().out
    )
    with reading.options(skip_bad_rows=2) as report, pytest.raises(UserError) as e:
        files.read_table(path, ["text", "label"])
    message = str(e.value)
    assert message.startswith(f"{path}:7: expected 2 fields like the header, found 4")
    assert "2 bad rows skipped before it; skip_bad_rows=2 allows no more" in message
    assert report.summary()["skipped_rows"] == 2


def test_empty_labels_and_bad_json_lines_are_bad_rows(tmp_path):
    csv_path = tmp_path / "r.csv"
    rows = make_reviews(60)
    lines = [
        "text,label",
        *[f"{t},{y}" for t, y in rows[:30]],
        "no label here,",
        *[f"{t},{y}" for t, y in rows[30:]],
    ]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = recipe_lib.resolve_config(sentiment, "tiny", [])
    with pytest.raises(UserError, match=r"r.csv: row 32 has an empty 'label' \(or skip"):
        sentiment.load_data(config, str(csv_path))
    with reading.options(skip_bad_rows=1) as report:
        splits = sentiment.load_data(config, str(csv_path))
    assert sum(splits.sizes().values()) == 60 and report.skipped_count == 1

    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "a", "label": "x"}\n{"text": \n{"text": "b"}\n[1]\n')
    with reading.options(skip_bad_rows=3) as report:
        assert files.read_table(jsonl, ["text", "label"]) == [{"text": "a", "label": "x"}]
    assert [s.split(": ")[0] for s in report.skipped] == [f"{jsonl}:{n}" for n in (2, 3, 4)]


def test_a_malformed_conll_line_drops_its_sentence(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("The DT B\ncat NN I\n\nA DT B\ndog\nran VB O\n\nIt PRP B\n")
    with pytest.raises(UserError, match=r"train.txt:5: expected 3 columns .*\(or skip such rows"):
        conll.read_conll(path)
    with reading.options(skip_bad_rows=1) as report:
        sentences = conll.read_conll(path)
    assert [s[0] for s in sentences] == [["The", "cat"], ["It"]]
    assert report.skipped_count == 1


def test_tab_pairs_without_a_tab_are_bad_rows(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("one\tuno\nno tab here\ntwo\tdos\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"pairs.txt:2: expected source<TAB>target"):
        parallel.read_pairs(str(path))
    with reading.options(skip_bad_rows=1):
        assert parallel.read_pairs(str(path))[0] == [("one", "uno"), ("two", "dos")]


def _flickr(tmp_path, missing: list[str]):
    """Flickr8k's layout with dummy image files (reading captions never opens them)."""
    folder = tmp_path / "Flicker8k_Dataset"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (folder / name).write_bytes(b"\xff\xd8 not opened here")
    lines = [f"{n}#{k}\ta caption {k}" for n in ("a.jpg", *missing, "b.jpg") for k in range(2)]
    (tmp_path / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_captions_of_a_missing_image_are_skipped_within_the_bound(tmp_path):
    # Flickr8k's own token file names this image, which its image folder does not hold.
    data = _flickr(tmp_path, ["2258277193_586949ec62.jpg.1"])
    with pytest.raises(UserError, match=r"1 image\(s\) not in .*'2258277193_586949ec62.jpg.1'"):
        captions.read_captions(str(data))
    with reading.options(skip_bad_rows=1) as report:
        by_image, _ = captions.read_captions(str(data))
    assert sorted(by_image) == ["a.jpg", "b.jpg"]
    assert report.skipped[0].startswith(f"{data / 'Flickr8k.token.txt'}:3: expected the image")


def test_more_missing_images_than_the_bound_are_refused(tmp_path):
    data = _flickr(tmp_path, ["gone1.jpg", "gone2.jpg"])
    with reading.options(skip_bad_rows=1), pytest.raises(UserError) as e:
        captions.read_captions(str(data))
    assert "has captions for 2 image(s) not in" in str(e.value)
    assert "skip_bad_rows=1 allows no more" in str(e.value)


def test_bad_settings_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="expected encoding to be a Python codec name .* 'klingon'"):
        reading.options(encoding="klingon").__enter__()
    with pytest.raises(UserError, match="expected decode_errors strict or replace, got 'ignore'"):
        reading.options(decode_errors="ignore").__enter__()
    runner = CliRunner()
    for setting, message in [
        ("encoding=klingon", "expected encoding to be a Python codec name"),
        ("decode_errors=ignore", "--set decode_errors: expected one of strict, replace"),
        ("skip_bad_rows=-1", "--set skip_bad_rows: expected at least 0"),
    ]:
        run_dir = tmp_path / setting.split("=")[0]
        args = ["run", "sentiment", "--preset", "tiny", "--set", setting]
        result = runner.invoke(main, [*args, "--run-dir", str(run_dir)])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
        assert not run_dir.exists()


def test_model_card_lists_what_was_replaced_and_skipped(tmp_path):
    config = recipe_lib.resolve_config(sentiment, "tiny", ["encoding=cp1252"])
    quality = {
        "encoding": "cp1252",
        "replaced_bytes": 4,
        "replaced_in": {"a.csv": 4},
        "skipped_rows": 25,
        "skipped": [f"a.csv:{n}: expected 2 fields" for n in range(reading.SHOWN)],
    }
    info = {"data": "a.csv", "preset": "tiny"}
    text = card.write(sentiment, config, tmp_path, info, {}, {}, {}, quality).read_text()
    part = text.split("## Data quality")[1].split("## Config")[0]
    assert "`cp1252`" in part and "replaced by U+FFFD: 4" in part and "`a.csv`: 4" in part
    assert "bad rows skipped: 25" in part and "a.csv:19: expected" in part
    assert "... and 5 more" in part
    # A run made before data reports has no such part.
    assert (
        "Data quality" not in card.write(sentiment, config, tmp_path, info, {}, {}, {}).read_text()
    )


def test_cli_run_on_cp1252_data_with_a_bad_row(tmp_path):
    """End to end: a cp1252 CSV with one undecodable byte and one ragged row."""
    rows = [f"{text},{label}".encode() for text, label in make_reviews(300)]
    rows[10] = b"caf\xe9 cr\xe8me superb charming,pos"  # cp1252 text
    rows[20] = b"odd \x81 byte awful dull,neg"  # 0x81 is undefined in cp1252: replaced
    rows.insert(30, b"a ragged row,neg,extra")  # line 32
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label\n" + b"\n".join(rows) + b"\n")
    run_dir = tmp_path / "run"
    result = cli_ok(
        "run",
        "sentiment",
        "--preset",
        "tiny",
        "--data",
        str(path),
        "--set",
        "encoding=cp1252",
        "--set",
        "decode_errors=replace",
        "--set",
        "skip_bad_rows=1",
        "--run-dir",
        str(run_dir),
    )
    assert f"skipped {path}:32: expected 2 fields like the header, found 3" in result.output
    assert "data quality (cp1252): 1 undecodable byte(s) replaced" in result.output
    report = json.loads((run_dir / "data_report.json").read_text())
    assert report["skipped_rows"] == 1 and report["replaced_in"] == {str(path): 1}
    card_text = (run_dir / "model_card.md").read_text()
    assert "## Data quality" in card_text and "`cp1252`" in card_text
    assert f"`{path}:32: expected 2 fields like the header, found 3" in card_text
