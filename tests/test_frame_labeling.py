"""frame_labeling: readers and their errors, chunk and segment scoring, windows, export."""

import gzip
import json
import random

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import cli_ok, fresh_python
from serving_edges import run_edge_inputs

from lstm_recipes import metrics
from lstm_recipes import recipe as recipe_lib
from lstm_recipes.cli import main
from lstm_recipes.data import conll
from lstm_recipes.data import frames as frames_lib
from lstm_recipes.errors import UserError

frame_labeling = recipe_lib.load_recipe("frame_labeling")
TINY = frame_labeling.PRESETS["tiny"]

DET, NOUN = ["the", "a", "this"], ["cat", "dog", "mat", "Paris", "idea"]
VERB, PREP = ["sat", "saw", "likes"], ["on", "in", "near"]


def chunk_sentences(n: int, seed: int = 0):
    """Generated `word POS chunk` sentences whose chunks follow from the word classes."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = [(rng.choice(DET), "DT", "B-NP"), (rng.choice(NOUN), "NN", "I-NP")]
        s.append((rng.choice(VERB), "VBD", "B-VP"))
        if rng.random() < 0.5:
            s.append((rng.choice(PREP), "IN", "B-PP"))
        s += [(rng.choice(DET), "DT", "B-NP"), (rng.choice(NOUN), "NN", "I-NP"), (".", ".", "O")]
        out.append(s)
    return out


def write_conll(path, sentences):
    text = "\n\n".join("\n".join(" ".join(t) for t in s) for s in sentences) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


CONLLU = """# sent_id = 1
# text = I can't go.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
3.1\tgo\tgo\tVERB\tVB\t_\t_\t_\t_\t_
4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = 2
1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_
"""


# ----------------------------------------------------------------------------- readers


def test_conll_columns_conllu_and_jsonl(tmp_path):
    path = write_conll(tmp_path / "train.txt", chunk_sentences(3))
    sentences = conll.read_conll(path, "0", "-1", ("1",))
    tokens, tags, feats = sentences[0]
    assert tags[0] == "B-NP" and feats[0][0] == "DT" and len(sentences) == 3
    gz = tmp_path / "ud.conllu.gz"
    gz.write_bytes(gzip.compress(CONLLU.encode()))
    ud = conll.read_conll(gz, "form", "upos")
    assert ud == [
        (["I", "ca", "n't", "go", "."], ["PRON", "AUX", "PART", "VERB", "PUNCT"], []),
        (["Yes"], ["INTJ"], []),
    ]
    assert conll.read_conll(gz, "form", "xpos")[0][1] == ["PRP", "MD", "RB", "VB", "."]
    jsonl = tmp_path / "t.jsonl"
    rows = [{"tokens": ["a", "b"], "tags": ["X", "Y"]}, {"tokens": [], "tags": []}]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    read = conll.read_jsonl(jsonl)
    assert conll.drop_empty(read) == [(["a", "b"], ["X", "Y"], [])]


def test_conll_errors_are_clear(tmp_path):
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("the DT B-NP\ncat NN\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"ragged.txt:2: expected 3 columns like the first line"):
        conll.read_conll(ragged)
    ok = write_conll(tmp_path / "ok.txt", chunk_sentences(2))
    with pytest.raises(UserError, match="expected a column between -3 and 2, got 5"):
        conll.read_conll(ok, "0", "5")
    gz = tmp_path / "ud.conllu"
    gz.write_text(CONLLU, encoding="utf-8")
    with pytest.raises(UserError, match="expected a column in id, form.*got 'ner'"):
        conll.read_conll(gz, "form", "ner")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n\n", encoding="utf-8")
    with pytest.raises(UserError, match="no tagged sentences"):
        conll.read_conll(empty)
    mismatch = tmp_path / "m.jsonl"
    mismatch.write_text('{"tokens": ["a", "b"], "tags": ["X"]}\n', encoding="utf-8")
    with pytest.raises(UserError, match="m.jsonl:1: expected as many tags as tokens, found 1"):
        conll.read_jsonl(mismatch)
    only_empty = tmp_path / "e.jsonl"
    only_empty.write_text('{"tokens": [], "tags": []}\n' * 5, encoding="utf-8")
    with pytest.raises(UserError, match="expected sequences in train, validation and test"):
        frame_labeling.load_data(TINY, str(only_empty))


def test_unseen_test_labels_are_scored_and_unseen_batch_labels_reported(tmp_path):
    train = write_conll(tmp_path / "train.txt", chunk_sentences(50))
    odd = write_conll(tmp_path / "test.txt", [[("x", "NN", "B-ZZ")]])
    # A test tag training never saw is kept: evaluation scores it as an error (conlleval).
    loaded = frame_labeling.load_data(TINY, str(train), str(odd))
    assert loaded.test[0][1] == ["B-ZZ"]
    splits = frame_labeling.load_data(TINY, str(train))
    prep = frame_labeling.fit_preprocessing(TINY, splits.train)
    tokens, tags, features = splits.test[0]
    unseen = [(tokens, ["B-ZZ"] * len(tags), features)]
    with pytest.raises(UserError, match="expected labels seen in training .* found 'B-ZZ'"):
        frame_labeling.batches(TINY, prep, unseen, training=False)


def test_frames_long_csv_folder_and_errors(tmp_path):
    rows = ["sequence_id,step,x,y,label"]
    for seq in ("a", "b"):
        for step in reversed(range(5)):
            rows.append(f"{seq},{step},{step},{-step},{'up' if step < 3 else 'down'}")
    path = tmp_path / "frames.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    recordings, names = frames_lib.read_long_csv(path)
    assert names == ["x", "y"] and len(recordings) == 2
    np.testing.assert_array_equal(recordings[0].frames[:, 0], [0, 1, 2, 3, 4])
    assert list(recordings[0].labels) == ["up", "up", "up", "down", "down"]
    bad = tmp_path / "bad.csv"
    bad.write_text("sequence_id,step,x,label\na,0,1.5,up\na,1,oops,up\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.csv:3: expected a number, found 'oops'"):
        frames_lib.read_long_csv(bad)
    with pytest.raises(UserError, match="missing label, found sequence_id, step, x, y, activity"):
        frames_lib.read_long_csv(_rename_column(tmp_path, path))
    folder = tmp_path / "seqs"
    folder.mkdir()
    np.savez(folder / "one.npz", frames=np.ones((4, 2), np.float32), labels=np.array(["a"] * 4))
    (folder / "two.csv").write_text("x,y,label\n1,2,a\n3,4,b\n", encoding="utf-8")
    recordings, names = frames_lib.read_sequence_folder(folder)
    assert [r.frames.shape for r in recordings] == [(4, 2), (2, 2)]
    np.savez(folder / "three.npz", frames=np.ones((4, 3), np.float32), labels=np.array(["a"] * 4))
    with pytest.raises(UserError, match="expected 2 features like one.npz, found 3"):
        frames_lib.read_sequence_folder(folder)


def _rename_column(tmp_path, path):
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(path.read_text().replace(",label", ",activity"), encoding="utf-8")
    return renamed


def test_builtin_frames_split_by_subject():
    splits = frame_labeling.load_data(frame_labeling.PRESETS["default"], "builtin")
    groups = [{r.group for r in part} for part in (splits.train, splits.validation, splits.test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(map(len, groups)) == 10
    recording = splits.train[0]
    assert recording.frames.shape[1] == 6 and len(set(recording.labels)) == 7


def test_tfds_conll2003_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    # Mock examples draw token and tag lists of independent random lengths: the loader must
    # say so rather than tag misaligned tokens.
    with (
        tfds.testing.mock_data(num_examples=12),
        pytest.raises(
            UserError, match="tfds:conll2003: example 1: expected as many 'ner' tags as tokens"
        ),
    ):
        frame_labeling.load_data(TINY, "tfds:conll2003")


# ----------------------------------------------------------------------------- scoring


def test_chunk_scores_on_hand_made_cases():
    # IOB2: one of two chunks right.
    gold = [["B-NP", "I-NP", "O", "B-VP"]]
    pred = [["B-NP", "I-NP", "O", "B-NP"]]
    s = metrics.chunk_scores(gold, pred)
    assert (s["precision"], s["recall"], s["f1"]) == (50.0, 50.0, 50.0)
    assert s["per_type"]["VP"]["recall"] == 0.0 and s["per_type"]["NP"]["precision"] == 50.0
    # IOB1 (I starts a chunk, B only between same-type neighbours) equals its IOB2 spelling.
    iob1 = [["I-NP", "I-NP", "B-NP", "I-VP", "O", "I-PP"]]
    iob2 = [["B-NP", "I-NP", "B-NP", "B-VP", "O", "B-PP"]]
    assert metrics.chunks(iob1[0]) == metrics.chunks(iob2[0])
    assert metrics.chunk_scores(iob2, iob1)["f1"] == 100.0
    # BIOES.
    assert metrics.chunks(["S-PER", "B-LOC", "E-LOC", "O", "B-ORG", "I-ORG", "E-ORG"]) == {
        (0, 1, "PER"),
        (1, 3, "LOC"),
        (4, 7, "ORG"),
    }
    # A chunk cut short is wrong at both ends' sense: 0 of 1 gold, 0 of 2 predicted.
    s = metrics.chunk_scores([["B-NP", "I-NP", "I-NP"]], [["B-NP", "I-NP", "B-NP"]])
    assert (s["precision"], s["recall"]) == (0.0, 0.0)


def test_segment_f1_on_hand_made_cases():
    gold = [list("aaaabbbbcc")]
    assert metrics.segment_f1(gold, gold) == 100.0
    # b shifted by one step: IoU 3/5 >= 0.5 still a hit; c missing entirely.
    pred = [list("aaaaabbbbb")]
    # a: IoU 4/5 hit; b: IoU 3/6 = 0.5 hit; c unmatched -> P 2/2, R 2/3.
    assert metrics.segment_f1(gold, pred) == pytest.approx(100 * 2 * 1 * (2 / 3) / (1 + 2 / 3))


# ----------------------------------------------------------------------------- model


def test_windowed_frames_equal_the_model_on_one_window_and_ignore_padding():
    config = recipe_lib.resolve_config(frame_labeling, "tiny", ["window=16", "stride=8"])
    prep = {"kind": "frames", "features": 3, "mean": [0.0] * 3, "std": [1.0] * 3}
    prep["labels"] = ["a", "b"]
    model = frame_labeling.build_model(config, prep)
    tagger = frame_labeling.Tagger(config, model, prep)
    x = np.random.default_rng(0).normal(size=(1, 16, 3)).astype("float32")
    _, probs = tagger.tag_frames(tf.constant(x))
    direct = tf.nn.softmax(model({"frames": x})[..., 1:]).numpy()
    np.testing.assert_allclose(probs.numpy(), direct, atol=1e-5)
    long = np.random.default_rng(1).normal(size=(2, 45, 3)).astype("float32")
    long[1, 30:] = np.nan
    labels, probs = tagger.tag_frames(tf.constant(long))
    assert labels.shape == (2, 45) and probs.shape == (2, 45, 2)
    assert set(labels.numpy()[1, 30:]) == {b""} and b"" not in set(labels.numpy()[0])
    np.testing.assert_allclose(probs.numpy().sum(-1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def chunk_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("chunks")
    data = write_conll(root / "train.txt", chunk_sentences(400))
    run_dir = root / "run"
    cli_ok(
        "run",
        "frame_labeling",
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--run-dir",
        str(run_dir),
        "--set",
        "epochs=8",
        "--set",
        "learning_rate=0.01",
    )
    return run_dir


def test_tiny_tagger_learns_chunks(chunk_run):
    result = json.loads((chunk_run / "metrics.json").read_text())
    assert result["accuracy"] > 0.9, result["accuracy"]
    assert result["chunk_f1"] > 80, result["chunk_f1"]
    assert (chunk_run / "plots" / "confusion_matrix.png").exists()


def test_tagger_export_round_trip_in_a_fresh_process(chunk_run, tmp_path):
    from lstm_recipes import training

    module, config, _ = training.load_run(chunk_run)
    prep = training.read_json(chunk_run / "preprocessing.json")
    model = training.load_model(module, config, prep, chunk_run)
    tagger = frame_labeling.Tagger(config, model, prep)
    tokens = [["the", "cat", "sat", "on", "a", "mat", "."], ["Paris", "likes", "", "", "", "", ""]]
    expected = tagger.tag_tokens(tf.constant(tokens))[0].numpy().astype(str).tolist()
    assert expected[1][2:] == [""] * 5
    script = (
        "import json, sys, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "t = m.signatures['serving_default'](tokens=tf.constant(json.loads(sys.argv[2])))\n"
        "x = m.signatures['tag_text'](text=tf.constant(['the cat sat on a mat .', '']))\n"
        "print(json.dumps([t['tags'].numpy().astype(str).tolist(),\n"
        "                  x['tags'].numpy().astype(str).tolist()]))\n"
    )
    export = str(chunk_run / "export" / "1")
    served, from_text = fresh_python(script, export, json.dumps(tokens), cwd=tmp_path)
    assert served == expected
    assert from_text[0] == expected[0] and set(from_text[1]) == {""}


def test_predict_tags_lines(chunk_run):
    result = CliRunner().invoke(main, ["predict", str(chunk_run), "--json", "the dog saw a cat ."])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["tokens"] == ["the", "dog", "saw", "a", "cat", "."]
    assert len(row["tags"]) == 6


def test_frames_csv_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["sequence_id,step,x,y,label"]
    for seq in range(12):
        for step in range(120):
            label = "walk" if (step // 30) % 2 == 0 else "rest"
            level = 2.0 if label == "walk" else -2.0
            rows.append(f"s{seq},{step},{level + rng.normal():.3f},{rng.normal():.3f},{label}")
    path = tmp_path / "frames.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    cli_ok(
        "run",
        "frame_labeling",
        "--preset",
        "tiny",
        "--data",
        str(path),
        "--run-dir",
        str(run_dir),
        "--set",
        "window=32",
        "--set",
        "stride=16",
        "--set",
        "epochs=6",
        "--set",
        "learning_rate=0.01",
    )
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["accuracy"] > 0.8, result
    assert "segment_f1_50" in result
    # Served edge inputs: no frames, zero steps, NaN/inf/huge values, wrong widths.
    run_edge_inputs(run_dir / "export" / "1")


def test_conllu_default_columns_are_form_and_upos(tmp_path):
    path = tmp_path / "ud.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    items, _, _ = frame_labeling._read(TINY, str(path), "tokens")
    assert items[0][0] == ["I", "ca", "n't", "go", "."]
    assert items[0][1] == ["PRON", "AUX", "PART", "VERB", "PUNCT"]


def test_crf_tagger_end_to_end(tmp_path):
    data = write_conll(tmp_path / "train.txt", chunk_sentences(400))
    run_dir = tmp_path / "run"
    cli_ok(
        "run",
        "frame_labeling",
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--run-dir",
        str(run_dir),
        "--set",
        "crf=true",
        "--set",
        "feature_columns=1",
        "--set",
        "epochs=6",
        "--set",
        "learning_rate=0.01",
    )
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["chunk_f1"] > 80, result["chunk_f1"]
    # The export (verified in a fresh process by `run`) takes tokens and the POS column.
    meta = json.loads((run_dir / "export/1/assets.extra/lstm_recipes.json").read_text())
    assert set(meta["signatures"]["serving_default"]["inputs"]) == {"tokens", "features"}


def test_crf_is_refused_for_frames():
    prep = {"kind": "frames", "features": 2, "mean": [0.0] * 2, "std": [1.0] * 2, "labels": ["a"]}
    config = recipe_lib.resolve_config(frame_labeling, "tiny", ["crf=true"])
    with pytest.raises(UserError, match="crf=true is for tokens"):
        frame_labeling.build_model(config, prep)


def test_token_tab_tag_files_with_blank_line_breaks(tmp_path):
    path = tmp_path / "tags.tsv"
    path.write_text("New\tB-LOC\nYork\tI-LOC\n\nHi\tO\n", encoding="utf-8")
    assert conll.read_conll(path) == [
        (["New", "York"], ["B-LOC", "I-LOC"], []),
        (["Hi"], ["O"], []),
    ]


def test_served_tagger_edge_inputs(chunk_run):
    results = run_edge_inputs(chunk_run / "export" / "1")
    assert {r["signature"] for r in results} == {"serving_default", "tag_text"}
