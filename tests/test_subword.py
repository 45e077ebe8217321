"""Subword units (``tokenizer=subword``): the SentencePiece round trip on every script, no
unknown pieces, a reproducible model, clear errors, and a translation run whose export gives
evaluation's strings in a fresh process."""

import csv
import importlib.util
import json
import re
import sys

import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import REPO, cli_ok, fresh_python
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_recipes import recipe as recipe_lib
from lstm_recipes.cli import main
from lstm_recipes.data import subword
from lstm_recipes.errors import UserError

# The translation tests share a module fixture (a trained run): one pytest-xdist worker runs them.
TRANSLATION_RUN = pytest.mark.xdist_group("subword_translation")

ENGLISH = [
    "the cat sat on the mat",
    "where is the station?",
    "tom doesn't like green apples.",
    "we met in 1999 at the old market",
] * 40
EDGES = [
    "",
    "naïve café über Ångström",  # accents the training text never had
    "e\u0301le\u0300ve",  # combining accents, kept as they are
    "東京で会いましょう",  # CJK
    "Ελληνικά и русский",
    "مرحبا بالعالم",
    "🎉 emoji 👩‍👩‍👧 ok",
    "ﬁ ① Ｈ",  # what NFKC would rewrite
    "İstanbul ΣΑΣ",
]


@pytest.fixture(scope="module")
def english_model():
    return subword.train(ENGLISH, 300, lowercase=False, seed=1)


def _round_trip(model, texts):
    tokenizer = subword.Tokenizer(model, lowercase=False)
    ids = tokenizer(tf.constant(texts, tf.string))
    out = [t.decode("utf-8") for t in tokenizer.detokenize(ids).numpy()]
    return ids, out


def test_every_script_round_trips_and_nothing_is_an_unknown_piece(english_model):
    ids, out = _round_trip(english_model, EDGES)
    assert out == EDGES
    assert subword.PIECES[1] == "[UNK]" and not tf.reduce_any(ids.flat_values == 1)


# SentencePiece cuts at spaces: runs of them become one, and none is kept at either end.
def _spaces_collapsed(text: str) -> str:
    return " ".join(part for part in text.replace("\u00a0", " ").split(" ") if part)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=30), max_size=8))
def test_any_text_round_trips_but_for_runs_of_spaces(english_model, texts):
    ids, out = _round_trip(english_model, texts)
    assert out == [_spaces_collapsed(t) for t in texts]
    assert not tf.reduce_any(ids.flat_values == 1)


def test_the_same_text_and_seed_learn_the_same_model(english_model):
    assert subword.train(ENGLISH, 300, lowercase=False, seed=1) == english_model
    pieces = subword.pieces(english_model)
    assert pieces[:4] == list(subword.PIECES)
    assert pieces[4:260] == [f"<0x{b:02X}>" for b in range(256)] and len(pieces) > 260


def test_a_vocabulary_too_small_for_the_byte_pieces_is_refused_in_one_line():
    with pytest.raises(UserError, match="at least 261 .* found 200"):
        subword.train(ENGLISH, 200, lowercase=False, seed=1)
    with pytest.raises(UserError, match="no training text"):
        subword.train(["", "  "], 300, lowercase=False, seed=1)


def test_without_tensorflow_text_the_message_says_what_to_install(monkeypatch, english_model):
    import builtins

    real_import = builtins.__import__

    def no_text_ops(name, *args, **kwargs):
        if name == "tensorflow_text":
            raise ImportError("No module named 'tensorflow_text'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_text_ops)
    with pytest.raises(UserError, match="pip install 'tensorflow-text=="):
        subword.Tokenizer(english_model, lowercase=False)


# ----------------------------------------------------------------------------- translation

NAMES = ["anna", "boris", "carla", "dmitri", "elena", "farid"]


def _pairs() -> list[tuple[str, str]]:
    # 600 different sources: every name with every number.
    return [
        (f"{name} has {number} cats.", f"{name} tiene {number} gatos.")
        for name in NAMES
        for number in range(100)
    ]


@pytest.fixture(scope="module")
def subword_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("subword")
    data = root / "pairs.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in _pairs()), encoding="utf-8")
    run_dir = root / "run"
    cli_ok(
        "run", "translation", "--preset", "tiny", "--data", str(data), "--run-dir", str(run_dir),
        "--set", "tokenizer=subword", "--set", "source_vocab=300", "--set", "target_vocab=300",
        "--set", "max_examples=0", "--set", "epochs=6", "--set", "learning_rate=0.01",
        "--set", "test_size=60", "--set", "validation_size=60", "--set", "max_length=30",
    )  # fmt: skip
    return run_dir


@TRANSLATION_RUN
def test_a_subword_run_learns_and_its_export_gives_evaluations_strings(subword_run, tmp_path):
    metrics = json.loads((subword_run / "metrics.json").read_text())
    assert metrics["token_accuracy"] > 0.5, metrics
    with open(subword_run / "translations.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert len(rows) == 60
    meta = json.loads((subword_run / "export" / "1" / "assets.extra/lstm_recipes.json").read_text())
    assert meta["requires"] == ["tensorflow_text"]
    card = (subword_run / "model_card.md").read_text()
    assert "Loading it needs `tensorflow_text` imported" in card
    script = (
        "import json, sys, tensorflow as tf, tensorflow_text\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "x = tf.constant(json.loads(sys.argv[2]))\n"
        "out = {k: [t.decode() for t in m.signatures[k](text=x)['translation'].numpy()]\n"
        "       for k in ('serving_default', 'greedy')}\n"
        "print(json.dumps(out))\n"
    )
    sources = [row["source"] for row in rows]
    served = fresh_python(
        script, str(subword_run / "export" / "1"), json.dumps(sources), cwd=tmp_path
    )
    assert served["greedy"] == [row["greedy"] for row in rows]
    assert served["serving_default"] == [row["beam"] for row in rows]
    # predict (this package's process, which imports what the metadata requires) gives them too.
    result = cli_ok("predict", str(subword_run), "--json", "--signature", "greedy", sources[0])
    assert json.loads(result.output.strip().splitlines()[-1])["translation"] == rows[0]["greedy"]


@TRANSLATION_RUN
def test_unseen_words_are_spelled_from_pieces_never_unknown(subword_run):
    from lstm_recipes.run import Run

    run = Run.reopen(subword_run)
    translation = recipe_lib.load_recipe("translation")
    search = translation.translator(run.config, run.model, run.prep)
    unseen = ["zoë has 57 ñandúes.", "Ωmega 東京 🎉 has 3 cats."]
    ids = search.prepare(tf.constant(unseen))
    assert not tf.reduce_any(ids == 1), "an unseen character became the unknown id"
    for text in search(tf.constant(unseen), 3).numpy():
        text = text.decode("utf-8")
        assert "[UNK]" not in text and "\u2047" not in text, text


@TRANSLATION_RUN
def test_the_names_probe_puts_unseen_names_in_every_test_pair_that_keeps_the_name(subword_run):
    spec = importlib.util.spec_from_file_location("names_probe", REPO / "benchmarks" / "names.py")
    probe = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec.loader.exec_module(probe)
        result = probe.probe(subword_run, None, "anna")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    with open(subword_run / "translations.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    keeping = [r for r in rows if r["source"].startswith("anna ") and "anna" in r["reference"]]
    assert result["pairs"] == len(keeping) > 0
    # Dmitri is a name of this data's training sources too, so it is left out.
    assert result["names"] == len([n for n in probe.NAMES if n.lower() not in NAMES]) == 39
    for search in ("greedy", "beam"):
        copied = int(result[f"{search}: unseen name copied"].split()[0])
        assert 0 <= copied <= result["pairs"] and result[f"{search}: anna kept"] <= result["pairs"]
        source, _ = result[f"{search} examples"][0]
        assert "anna" not in source and source.split()[0] in probe.NAMES


def test_a_shared_vocabulary_one_model_one_embedding_with_copy_and_name_swap(tmp_path):
    # One run for both options (copy needs the shared vocabulary): CI time.
    from lstm_recipes.run import Run

    # And name_swap: pairs that keep a name past the first word, so there are names to swap.
    kept = [(f"I see {n.title()} {k}.", f"Veo a {n.title()} {k}.") for n in NAMES for k in range(9)]
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in _pairs() + kept), encoding="utf-8")
    run_dir = tmp_path / "run"
    result = cli_ok(
        "run", "translation", "--preset", "tiny", "--data", str(data), "--run-dir", str(run_dir),
        "--set", "tokenizer=subword", "--set", "shared_vocabulary=true", "--set",
        "source_vocab=300", "--set", "max_examples=0", "--set", "epochs=1", "--set",
        "test_size=20", "--set", "validation_size=20", "--set", "max_length=30", "--set",
        "copy=true", "--set", "name_swap=1.0",
    )  # fmt: skip
    swapped = re.search(r"name swap: ([\d,]+) of ([\d,]+) training pairs", result.output)
    assert swapped and swapped[1] == swapped[2] and int(swapped[1]) > 20, result.output
    prep = json.loads((run_dir / "preprocessing.json").read_text())
    assert prep["shared"] and prep["source_subword"] == prep["target_subword"]
    rows = len(prep["source_vocabulary"]) + 2
    assert prep["target_vocabulary"] == prep["source_vocabulary"] and rows <= 300
    model = Run.reopen(run_dir).model
    assert model.get_layer("decoder").embedding is model.get_layer("source_embedding")
    tables = [w for w in model.weights if w.path.endswith("embeddings")]
    assert [tuple(w.shape) for w in tables] == [(rows, 16)], "one embedding for both sides"
    assert model.get_layer("decoder").copy_gate.built
    # The run's export passed the fresh-process check against evaluation's strings to land.
    assert (run_dir / "export" / "1" / "saved_model.pb").exists()


def test_a_shared_vocabulary_of_words_is_refused_in_one_line(tmp_path):
    args = ["train", "translation", "--preset", "tiny", "--run-dir", str(tmp_path / "run")]
    result = CliRunner().invoke(main, [*args, "--set", "shared_vocabulary=true"])
    assert result.exit_code == 2, result.output
    assert "expected tokenizer=subword with shared_vocabulary=true" in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


# ----------------------------------------------------------------------------- captioning


def test_a_subword_captioner_trains_and_its_export_names_what_it_needs(tmp_path):
    run_dir = tmp_path / "run"
    cli_ok(
        "run", "image_captioning", "--preset", "tiny", "--run-dir", str(run_dir),
        "--set", "tokenizer=subword", "--set", "vocab_size=300", "--set", "epochs=1",
    )  # fmt: skip
    prep = json.loads((run_dir / "preprocessing.json").read_text())
    assert prep["tokenizer"] == "subword" and prep["vocabulary"][:2] == ["[START]", "[END]"]
    # The export was checked against the in-process captions in a fresh process to land here.
    meta = json.loads((run_dir / "export" / "1" / "assets.extra/lstm_recipes.json").read_text())
    assert meta["requires"] == ["tensorflow_text"]
    with open(run_dir / "captions.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows and not any("[UNK]" in row["beam"] + row["greedy"] for row in rows)
