"""Pretrained word vectors: the file formats, the bad-file errors, coverage, and a run that
starts from (and can freeze) them."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import cli_ok

from lstm_recipes.cli import main
from lstm_recipes.data import vectors
from lstm_recipes.errors import UserError

VOCABULARY = ["the", "cat", "Paris", "zzz"]
GLOVE = "the 0.1 0.2 0.3\ncat -1 0 1e-2\nparis 2 2 2\nother 9 9 9\n"


def test_glove_rows_are_kept_for_the_vocabulary_only_lowercase_as_a_fallback(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text(GLOVE, encoding="utf-8")
    found = vectors.load(path, VOCABULARY)
    assert found.dim == 3 and found.matrix.shape == (4, 3)
    assert found.found.tolist() == [True, True, True, False]
    np.testing.assert_allclose(found.matrix[:3], [[0.1, 0.2, 0.3], [-1, 0, 0.01], [2, 2, 2]])
    assert found.coverage() == {"dim": 3, "words": 4, "found": 3, "coverage": 0.75}
    assert np.abs(found.matrix[3]).sum() > 0, "a missing word gets a random row, not zeros"


def test_a_word2vec_header_and_gzip_are_read(tmp_path):
    path = tmp_path / "vectors.vec.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("4 3\n" + GLOVE.replace("paris", "Paris"))
    found = vectors.load(path, VOCABULARY)
    assert found.found.tolist() == [True, True, True, False]
    np.testing.assert_allclose(found.matrix[2], [2, 2, 2])


@pytest.mark.parametrize(
    "content, expected",
    [
        ("the 1 2 3\ncat 1 2\n", "expected 3 numbers after the word on line 2"),
        ("3 2\nthe 1 2\ncat 1 2 3\n", "expected 2 numbers after the word on line 3"),
        ("the 1 2 x\n", "expected numbers after the word on line 1 of .* found 'x'"),
        ("", "found no vectors in it"),
        (b"\x80\x81\xfe binary\x00", "found bytes that are not UTF-8 text"),
    ],
)
def test_a_file_that_is_not_a_vectors_file_is_refused_in_one_line(tmp_path, content, expected):
    path = tmp_path / "bad.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=expected) as caught:
        vectors.load(path, VOCABULARY)
    assert "\n" not in str(caught.value)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(UserError, match="found no file there"):
        vectors.load(tmp_path / "nowhere.txt", VOCABULARY)


def test_sentiment_starts_from_the_vectors_and_keeps_them_frozen(reviews_csv, tmp_path):
    from conftest import make_reviews

    words = sorted({w for text, _ in make_reviews(300) for w in text.lower().split()})
    rng = np.random.default_rng(1)
    table = {w: rng.normal(size=6).round(4) for w in words[: len(words) // 2]}
    path = tmp_path / "vectors.txt"
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in table.items()))
    run_dir = tmp_path / "run"
    result = cli_ok("train", "sentiment", "--preset", "tiny", "--data", str(reviews_csv),
                    "--run-dir", str(run_dir), "--set", f"embeddings={path}",
                    "--set", "train_embeddings=false", "--set", "epochs=1")  # fmt: skip
    assert "training words found" in result.output
    prep = json.loads((run_dir / "preprocessing.json").read_text())
    report = prep["embeddings"]
    assert report["dim"] == 6 and 0 < report["found"] < report["words"]
    from lstm_recipes.run import Run

    run = Run.reopen(run_dir)
    weights = run.model.get_layer(index=2).get_weights()[0]  # tokens, word dropout, embedding
    assert weights.shape == (len(prep["vocabulary"]) + 2, 6)
    checked = 0
    for i, word in enumerate(prep["vocabulary"], 2):
        if word in table:
            np.testing.assert_allclose(weights[i], table[word], atol=1e-6)
            checked += 1
    assert checked == report["found"]
    card = (run.export().parent.parent / "model_card.md").read_text()
    assert f"{report['found']:,} of {report['words']:,} training words found" in card


def test_a_bad_vectors_file_stops_the_run_in_one_line(reviews_csv, tmp_path):
    path = tmp_path / "ragged.txt"
    path.write_text("good 1 2\nbad 1\n", encoding="utf-8")
    args = ["train", "sentiment", "--preset", "tiny", "--data", str(reviews_csv), "--run-dir",
            str(tmp_path / "run"), "--set", f"embeddings={path}"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "expected 2 numbers after the word on line 2" in result.output
    assert "Traceback" not in result.output


def test_tagging_starts_from_lowercased_word_vectors(tmp_path):
    table = {w: np.full(4, n, np.float32) for n, w in enumerate(["the", "a", "and", "of", "film"])}
    path = tmp_path / "vectors.txt"
    path.write_text("".join(f"{w.upper()} {' '.join(map(str, v))}\n" for w, v in table.items()))
    run_dir = tmp_path / "run"
    # 200 validation sentences, not 1,281 of the built-in data: this test is about the vectors.
    cli_ok("train", "tagging", "--preset", "tiny", "--run-dir", str(run_dir), "--set",
           f"embeddings={path}", "--set", "train_embeddings=false", "--set", "epochs=1",
           "--set", "validation_size=200")  # fmt: skip
    prep = json.loads((run_dir / "preprocessing.json").read_text())
    assert prep["embeddings"]["found"] == 5 and prep["embeddings"]["dim"] == 4
    from lstm_recipes.run import Run

    layer = next(x for x in Run.reopen(run_dir).model.layers if x.name.startswith("embedding"))
    weights = layer.get_weights()[0]
    for i, word in enumerate(prep["words"], 2):
        if word in table:
            np.testing.assert_allclose(weights[i], table[word])


def test_translation_starts_its_source_embedding_from_the_vectors(tmp_path):
    table = {w: np.full(5, n, np.float32) for n, w in enumerate(["march", "de", "2021", "may"])}
    path = tmp_path / "vectors.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in table.items()))
    run_dir = tmp_path / "run"
    cli_ok("train", "translation", "--preset", "tiny", "--run-dir", str(run_dir), "--set",
           f"embeddings={path}", "--set", "train_embeddings=false", "--set", "epochs=1")  # fmt: skip
    prep = json.loads((run_dir / "preprocessing.json").read_text())
    report = prep["embeddings"]
    assert report["dim"] == 5 and report["words"] == len(prep["source_vocabulary"])
    from lstm_recipes.run import Run

    weights = Run.reopen(run_dir).model.get_layer("source_embedding").get_weights()[0]
    assert weights.shape == (len(prep["source_vocabulary"]) + 2, 5)
    found = [w for w in prep["source_vocabulary"] if w in table]
    assert len(found) == report["found"] > 0
    for word in found:
        np.testing.assert_allclose(weights[prep["source_vocabulary"].index(word) + 2], table[word])


def test_translation_refuses_vectors_with_subword_units(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("march 1 2\n", encoding="utf-8")
    args = ["train", "translation", "--preset", "tiny", "--run-dir", str(tmp_path / "run"),
            "--set", f"embeddings={path}", "--set", "tokenizer=subword",
            "--set", "source_vocab=300", "--set", "target_vocab=300"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "expected tokenizer=words with embeddings" in result.output
    assert "Traceback" not in result.output
