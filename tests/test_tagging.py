"""tagging: token readers and their errors, chunk scoring, CRF marginals, export, predictions."""

import gzip
import json
import random
import shutil

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import LITERT_APP, cli_ok, fresh_python, readme_block
from serving_edges import run_edge_inputs

from lstm_recipes import crf, metrics
from lstm_recipes import recipe as recipe_lib
from lstm_recipes.cli import main
from lstm_recipes.data import conll
from lstm_recipes.errors import UserError

# Its tests share a module fixture (a trained run): one pytest-xdist worker runs them all.
pytestmark = pytest.mark.xdist_group("tagging")

tagging = recipe_lib.load_recipe("tagging")
TINY = tagging.PRESETS["tiny"]
TINY_RUN = ("run", "tagging", "--preset", "tiny")

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
    with pytest.raises(UserError, match="expected sentences in train, validation and test"):
        tagging.load_data(TINY, str(only_empty))


def test_unseen_test_labels_are_scored_and_unseen_batch_labels_reported(tmp_path):
    train = write_conll(tmp_path / "train.txt", chunk_sentences(50))
    odd = write_conll(tmp_path / "test.txt", [[("x", "NN", "B-ZZ")]])
    # A test tag training never saw is kept: evaluation scores it as an error (conlleval).
    loaded = tagging.load_data(TINY, str(train), str(odd))
    assert loaded.test[0][1] == ["B-ZZ"]
    splits = tagging.load_data(TINY, str(train))
    prep = tagging.fit_preprocessing(TINY, splits.train)
    tokens, tags, features = splits.test[0]
    unseen = [(tokens, ["B-ZZ"] * len(tags), features)]
    with pytest.raises(UserError, match="expected labels seen in training .* found 'B-ZZ'"):
        tagging.batches(TINY, prep, unseen, training=False)


def test_tfds_conll2003_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    # Mock examples draw token and tag lists of independent random lengths: the loader must
    # say so rather than tag misaligned tokens.
    with (
        tfds.testing.mock_data(num_examples=12),
        pytest.raises(
            UserError,
            match=r"tfds:conll2003@train: example \d+: expected as many .ner. tags as tokens",
        ),
    ):
        tagging.load_data(TINY, "tfds:conll2003")


def test_conllu_default_columns_are_form_and_upos(tmp_path):
    path = tmp_path / "ud.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    items, _ = tagging._read(TINY, str(path))
    assert items[0][0] == ["I", "ca", "n't", "go", "."]
    assert items[0][1] == ["PRON", "AUX", "PART", "VERB", "PUNCT"]


def test_token_tab_tag_files_with_blank_line_breaks(tmp_path):
    path = tmp_path / "tags.tsv"
    path.write_text("New\tB-LOC\nYork\tI-LOC\n\nHi\tO\n", encoding="utf-8")
    assert conll.read_conll(path) == [
        (["New", "York"], ["B-LOC", "I-LOC"], []),
        (["Hi"], ["O"], []),
    ]


def test_builtin_sample_tags_each_word_with_the_mark_after_it():
    sentences = conll.punctuation_sentences(['Well, is it good? Yes: very -- "fun".'])
    assert sentences == [
        (
            ["Well", "is", "it", "good", "Yes", "very", "fun"],
            ["COMMA", "O", "O", "QUESTION", "COMMA", "O", "PERIOD"],
            [],
        )
    ]
    splits = tagging.load_data(TINY, "builtin")
    assert len(splits.train) == TINY.max_examples
    tags = {t for _, tags, _ in splits.train for t in tags}
    assert tags == {"O", "COMMA", "PERIOD", "QUESTION"}


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


def test_crf_tagger_exports_marginals_not_a_softmax_of_emissions():
    labels = ["B-NP", "I-NP", "O"]
    prep = {"constrained": True, "words": ["the", "cat"], "chars": list("thecas"), "features": []}
    prep["labels"] = labels
    config = recipe_lib.resolve_config(tagging, "tiny", ["crf=true"])
    model = tagging.build_model(config, prep)
    layer = model.get_layer("crf")
    rng = np.random.default_rng(0)
    layer.transitions.assign(3 * rng.normal(size=(3, 3)).astype("float32"))
    layer.start.assign(rng.normal(size=3).astype("float32"))
    tagger = tagging.Tagger(config, model, prep)
    tokens = tf.constant([["the", "cat", "sat"], ["cat", "", ""]])
    tags, probabilities = tagger(tokens)
    inputs, real = tagger.inputs(tokens)
    emissions = model(inputs)[..., 1:]
    allowed, start = crf.chunk_constraints(labels)
    expected = crf.marginals(
        emissions, real, allowed, start, layer.transitions, layer.start, layer.end
    )
    np.testing.assert_allclose(probabilities.numpy(), expected.numpy(), atol=1e-5)
    assert not np.allclose(probabilities.numpy(), tf.nn.softmax(emissions).numpy(), atol=1e-3)
    np.testing.assert_allclose(probabilities.numpy().sum(-1), 1.0, atol=1e-5)
    assert tags.numpy()[1, 1:].tolist() == [b"", b""]


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def chunk_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("chunks")
    data = write_conll(root / "train.txt", chunk_sentences(400))
    run_dir = root / "run"
    cli_ok(
        *TINY_RUN,
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


def test_test_predictions_are_written_as_conll_lines(chunk_run):
    from lstm_recipes import rundir

    module, config, _ = rundir.load_run(chunk_run)
    splits = module.load_data(config, str(chunk_run.parent / "train.txt"))
    labels = set(rundir.read_json(chunk_run / "preprocessing.json")["labels"])
    lines = (chunk_run / "predictions.conll").read_text(encoding="utf-8").split("\n")[:-1]
    tokens = sum(len(tokens) for tokens, _, _ in splits.test)
    assert len(lines) == tokens + len(splits.test)
    rows = iter(lines)
    for tokens, tags, _ in splits.test:
        for token, tag in zip(tokens, tags):
            word, gold, predicted = next(rows).split(" ")
            assert (word, gold) == (token, tag) and predicted in labels
        assert next(rows) == ""


def test_tagger_export_round_trip_in_a_fresh_process(chunk_run, tmp_path):
    from lstm_recipes.run import Run

    run = Run.reopen(chunk_run)
    config, prep, model = run.config, run.prep, run.model
    tagger = tagging.Tagger(config, model, prep)
    tokens = [["the", "cat", "sat", "on", "a", "mat", "."], ["Paris", "likes", "", "", "", "", ""]]
    expected = tagger(tf.constant(tokens))[0].numpy().astype(str).tolist()
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


def test_served_tagger_edge_inputs(chunk_run):
    results = run_edge_inputs(chunk_run / "export" / "1")
    assert {r["signature"] for r in results} == {"serving_default", "tag_text"}


@pytest.mark.slow  # the CRF path runs fast in test_crf_tagger_exports_marginals
def test_crf_tagger_end_to_end(tmp_path):
    data = write_conll(tmp_path / "train.txt", chunk_sentences(400))
    run_dir = tmp_path / "run"
    cli_ok(
        *TINY_RUN,
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


# ----------------------------------------------------------------------------- LiteRT

# The app's side: README's id maker, vocabulary.json, the LiteRT interpreter only.
TAG_APP = (
    LITERT_APP
    + r"""
folder = sys.argv[1]
meta = json.load(open(f"{folder}/metadata.json"))
vocabulary = json.load(open(f"{folder}/vocabulary.json", encoding="utf-8"))
exec(sys.argv[2])  # the README's tagging_ids
tag = Interpreter(model_path=f"{folder}/model.tflite").get_signature_runner("serving_default")
out = []
for tokens, columns in json.loads(sys.argv[3]):
    result = tag(**tagging_ids(tokens, vocabulary, meta, columns))
    out.append([[t.decode() for t in result["tags"][0]], result["probabilities"][0].tolist()])
print(json.dumps(out))
"""
)


def litert_equals_savedmodel(run_dir, sentences, columns, tmp_path, atol=1e-5):
    """Tag ``sentences`` through README ids + the LiteRT file in a LiteRT-only process and
    through the newest SavedModel; assert equal tags and probabilities."""
    version = cli_ok("export", str(run_dir), "--format", "litert").output.split()[-1]
    rows = [[tokens, cols] for tokens, cols in zip(sentences, columns)]
    app = fresh_python(
        TAG_APP, version, readme_block("tagging_ids"), json.dumps(rows), cwd=tmp_path
    )
    saved = sorted((run_dir / "export").glob("[0-9]*"), key=lambda p: int(p.name))[-1]
    serve = tf.saved_model.load(str(saved)).signatures["serving_default"]
    width = max(len(t) for t in sentences)
    args = {"tokens": tf.constant([t + [""] * (width - len(t)) for t in sentences])}
    if columns[0]:
        padded = [c + [[""] * len(c[0])] * (width - len(c)) for c in columns]
        args["features"] = tf.constant(padded)
    want = serve(**args)
    for n, (tags, probabilities) in enumerate(app):
        steps = len(sentences[n])
        assert tags == want["tags"].numpy()[n, :steps].astype(str).tolist()
        got = np.asarray(probabilities)[:steps]
        np.testing.assert_allclose(got, want["probabilities"].numpy()[n, :steps], atol=atol)
    return version


def test_litert_tagger_with_the_readme_ids_equals_the_savedmodel(chunk_run, tmp_path):
    run_dir = shutil.copytree(chunk_run, tmp_path / "run")
    sentences = [["the", "cat", "sat", "on", "a", "mat", "."], ["Paris", "LIKES"],
                 ["ÜNÏCÖDÉ", "🎉", "supercalifragilisticexpialidocious"], []]  # fmt: skip
    version = litert_equals_savedmodel(run_dir, sentences, [[]] * 4, tmp_path)
    meta = json.loads((tmp_path / version / "metadata.json").read_text())
    assert meta["streaming"].startswith("no (bidirectional")


def causal_run(tmp_path, *settings):
    data = write_conll(tmp_path / "train.txt", chunk_sentences(300))
    run_dir = tmp_path / "run"
    cli_ok("train", "tagging", "--preset", "tiny", "--data", str(data), "--run-dir",
           str(run_dir), "--set", "bidirectional=false", *settings)  # fmt: skip
    cli_ok("export", str(run_dir))
    return run_dir


def test_a_causal_tagger_steps_token_by_token_like_the_whole_sentence(tmp_path):
    run_dir = causal_run(tmp_path, "--set", "feature_columns=1", "--set", "layers=2",
                         "--set", "char_encoder=lstm")  # fmt: skip
    sentence = ["the", "dog", "saw", "near", "a", "idea", "."]
    pos = [["DT"], ["NN"], ["VBD"], ["IN"], ["DT"], ["XX"], ["."]]
    version = litert_equals_savedmodel(run_dir, [sentence], [pos], tmp_path)
    from ai_edge_litert.interpreter import Interpreter

    from lstm_recipes.run import Run

    run = Run.reopen(run_dir)
    inputs, _ = tagging.Tagger(run.config, run.model, run.prep).inputs(
        tf.constant([sentence]), tf.constant([pos])
    )
    want = tf.nn.softmax(run.model(inputs, training=False)[..., 1:]).numpy()[0]
    saved = tf.saved_model.load(str(run_dir / "export" / "1")).signatures["step"]
    meta = json.loads((tmp_path / version / "metadata.json").read_text())
    assert (meta["layers"], meta["num_states"], meta["units"]) == (2, 2, run.config.units)
    assert meta["streaming"].startswith("step")
    interpreter = Interpreter(model_path=f"{version}/model.tflite")
    assert set(interpreter.get_signature_list()) == {"serving_default", "step"}
    device = interpreter.get_signature_runner("step")
    states = lite_states = np.zeros((1, 2 * 2, run.config.units), np.float32)
    for t in range(len(sentence)):
        token = {k: v.numpy()[:, t] for k, v in inputs.items()}
        out = saved(**{k: tf.constant(v) for k, v in token.items()}, states=tf.constant(states))
        states = out["states"].numpy()
        np.testing.assert_allclose(out["probabilities"].numpy()[0], want[t], atol=1e-5)
        lite = device(**token, states=lite_states)
        lite_states = lite["states"]
        np.testing.assert_allclose(lite["probabilities"][0], want[t], atol=1e-4)
        assert lite["tags"][0].decode() == run.prep["labels"][want[t].argmax()]
    padding = {k: np.zeros_like(v) for k, v in token.items()}  # id 0: no token
    kept = device(**padding, states=lite_states)["states"]
    np.testing.assert_array_equal(kept, lite_states, "a padding token changed the states")


def test_a_crf_tagger_converts_and_says_it_cannot_stream(tmp_path):
    run_dir = causal_run(tmp_path, "--set", "crf=true")
    sentences = [["the", "cat", "sat", "on", "a", "mat", "."], ["a", "dog"]]
    version = litert_equals_savedmodel(run_dir, sentences, [[]] * 2, tmp_path, atol=1e-4)
    meta = json.loads((tmp_path / version / "metadata.json").read_text())
    assert meta["streaming"].startswith("no (a CRF")
    saved = tf.saved_model.load(str(run_dir / "export" / "1"))
    assert "step" not in saved.signatures
