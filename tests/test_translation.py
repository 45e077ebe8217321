"""translation: data forms and their errors, attention and decoder numerics, the shared search,
export round trip."""

import dataclasses
import gzip
import json
import shutil
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import cli_ok, fresh_python
from serving_edges import run_edge_inputs

from lstm_recipes import attention, decoding, seq2seq
from lstm_recipes import recipe as recipe_lib
from lstm_recipes.cli import main
from lstm_recipes.data import parallel
from lstm_recipes.data import text as text_lib
from lstm_recipes.data.dates import date_pairs
from lstm_recipes.errors import UserError

# Its tests share a module fixture (a trained run): one pytest-xdist worker runs them all.
pytestmark = pytest.mark.xdist_group("translation")

translation = recipe_lib.load_recipe("translation")
TINY = translation.PRESETS["tiny"]

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
NUMEROS = ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"]


def number_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """English digit words -> Spanish digit words, reversed: a task with reordering."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        digits = rng.integers(0, 10, rng.integers(1, 5))
        pairs.append(
            (" ".join(NUMBERS[d] for d in digits), " ".join(NUMEROS[d] for d in digits[::-1]))
        )
    return pairs


def write_tsv(path, pairs, extra=True):
    lines = [
        f"{s}\t{t}" + ("\tCC-BY 2.0 (France) Attribution: tatoeba.org" if extra else "")
        for s, t in pairs
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- data forms


def test_every_pairs_form_reads_the_same_pairs(tmp_path):
    pairs = number_pairs(50)
    tsv = write_tsv(tmp_path / "pairs.txt", pairs)
    gz = tmp_path / "pairs.tsv.gz"
    gz.write_bytes(gzip.compress(tsv.read_bytes()))
    archive = tmp_path / "spa-eng.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("spa-eng/_about.txt", "about this file")
        z.writestr("spa-eng/spa.txt", tsv.read_text(encoding="utf-8"))
    zipped_gz = tmp_path / "spa-eng.zip.gz"
    zipped_gz.write_bytes(gzip.compress(archive.read_bytes()))
    (tmp_path / "train.en").write_text("\n".join(s for s, _ in pairs) + "\n", encoding="utf-8")
    (tmp_path / "train.es.gz").write_bytes(gzip.compress("\n".join(t for _, t in pairs).encode()))
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"en": s, "es": t}) for s, t in pairs), encoding="utf-8")
    forms = [
        parallel.read_pairs(str(tsv)),
        parallel.read_pairs(str(gz)),
        parallel.read_pairs(str(archive)),
        parallel.read_pairs(str(zipped_gz)),
        parallel.read_pairs(f"{tmp_path / 'train.en'},{tmp_path / 'train.es.gz'}"),
        parallel.read_pairs(str(jsonl), "en", "es"),
    ]
    for read, _source in forms:
        assert read == pairs


def test_zip_gz_is_read_as_data_forms_promises_and_a_bad_one_is_named(tmp_path):
    assert any(".zip[.gz]" in form for form in translation.DATA_FORMS)
    pairs = number_pairs(60)
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("pairs.tsv", write_tsv(tmp_path / "p.tsv", pairs).read_text(encoding="utf-8"))
    good = tmp_path / "pairs.zip.gz"
    good.write_bytes(gzip.compress(inner.read_bytes()))
    assert parallel.read_pairs(str(good))[0] == pairs
    splits = translation.load_data(TINY, str(good))
    assert sorted(splits.train + splits.validation + splits.test) == sorted(pairs)
    not_gzip = tmp_path / "plain.zip.gz"
    not_gzip.write_bytes(inner.read_bytes())
    with pytest.raises(UserError, match="expected a zip archive at .*plain.zip.gz"):
        parallel.read_pairs(str(not_gzip))
    not_zip = tmp_path / "text.zip.gz"
    not_zip.write_bytes(gzip.compress(b"one\tuno\n"))
    with pytest.raises(UserError, match="expected a zip archive at .*text.zip.gz"):
        parallel.read_pairs(str(not_zip))


def test_pairs_errors_name_the_file_line_and_what_was_expected(tmp_path):
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("one\tuno\ntwo without a tab\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"ragged.txt:2: expected source<TAB>target, found 1"):
        parallel.read_pairs(str(ragged))
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n", encoding="utf-8")
    (tmp_path / "a.es").write_text("uno\ndos\n", encoding="utf-8")
    with pytest.raises(UserError, match="line-aligned files, found 3 lines in .* and 2 in"):
        parallel.read_pairs(f"{tmp_path / 'a.en'},{tmp_path / 'a.es'}")
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"source": "one", "translation": "uno"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="missing target"):
        parallel.read_pairs(str(jsonl))
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("a.txt", "x\ty\n")
        z.writestr("b.txt", "x\ty\n")
    with pytest.raises(UserError, match="one .txt/.tsv file of pairs .* a.txt, b.txt"):
        parallel.read_pairs(str(two))
    assert parallel.read_pairs(str(two), zip_member="b.txt")[0] == [("x", "y")]
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError, match="no sentence pairs"):
        parallel.read_pairs(str(empty))
    with pytest.raises(UserError, match="found no file at"):
        parallel.read_pairs(str(tmp_path / "missing.txt"))
    with pytest.raises(UserError, match=r"expected a .txt, .tsv, .zip"):
        parallel.read_pairs(str(tmp_path / "a.en"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"one\tuno\n\xff\xfe\tdos\n")
    with pytest.raises(UserError, match=r"UTF-8 .* \(line 2\)"):
        parallel.read_pairs(str(bad))


def test_load_data_splits_reverses_and_limits(tmp_path):
    path = write_tsv(tmp_path / "p.txt", number_pairs(200), extra=False)
    config = recipe_lib.resolve_config(
        translation, "tiny", ["test_size=20", "validation_size=0.1", "max_examples=50"]
    )
    splits = translation.load_data(config, str(path))
    assert splits.sizes() == {"train": 50, "validation": 20, "test": 20}
    again = translation.load_data(config, str(path))
    assert again.test == splits.test, "the test split is fixed by the seed"
    reverse = dataclasses.replace(config, reverse=True)
    flipped = translation.load_data(reverse, str(path))
    assert flipped.test == [(t, s) for s, t in splits.test]


def test_tfds_translation_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=20):
        splits = translation.load_data(TINY, "tfds:ted_hrlr_translate/pt_to_en")
        train = [row for batch in splits.train.batches() for row in zip(*batch)]
    assert splits.sizes()["test"] == 20
    # The train split streams (never a list); its rows are text pairs, read again on demand.
    assert not isinstance(splits.train, list) and len(train) == len(splits.train) > 0
    assert all(isinstance(s, str) and isinstance(t, str) for s, t in train)


def test_builtin_dates_are_correct_and_deterministic():
    import datetime

    pairs = date_pairs(300, seed=5)
    assert pairs == date_pairs(300, seed=5)
    for source, target in pairs:
        day = datetime.date.fromisoformat(target)
        assert str(day.year) in source
        for name in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"):
            if source.startswith(name):
                assert day.strftime("%A") == name


# ----------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("kind", ["dot", "general", "additive"])
def test_attention_matches_numpy_and_ignores_padding(kind):
    rng = np.random.default_rng(0)
    query = rng.normal(size=(2, 3, 4)).astype("float32")
    memory = rng.normal(size=(2, 5, 4)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    layer = attention.Attention(kind, units=6)
    context, weights = layer(query, memory, mask)
    if kind == "dot":
        scores = np.einsum("btd,bsd->bts", query, memory) / 2.0  # scaled by sqrt(4)
    elif kind == "general":
        (w,) = layer.memory_proj.get_weights()
        scores = np.einsum("btd,bsd->bts", query, memory @ w) / 2.0
    else:
        (u,) = layer.memory_proj.get_weights()
        wq, bq = layer.query_proj.get_weights()
        (v,) = layer.score_proj.get_weights()
        hidden = np.tanh((query @ wq + bq)[:, :, None, :] + (memory @ u)[:, None, :, :])
        scores = (hidden @ v)[..., 0]
    scores = np.where(mask[:, None, :], scores, -1e9)
    expected_w = np.exp(scores - scores.max(-1, keepdims=True))
    expected_w /= expected_w.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, expected_w, atol=1e-5)
    np.testing.assert_allclose(context, expected_w @ memory, atol=1e-5)
    assert np.all(np.asarray(weights)[0, :, 3:] == 0)


@pytest.mark.parametrize("layers", [1, 2])
def test_decoder_steps_equal_the_teacher_forced_decoder(layers):
    decoder = attention.AttentionDecoder(20, 8, 12, num_layers=layers, attention="additive")
    rng = np.random.default_rng(1)
    target = rng.integers(2, 20, (3, 6)).astype("int32")
    memory = rng.normal(size=(3, 4, 10)).astype("float32")
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], bool)
    h = rng.normal(size=(3, 12)).astype("float32")
    c = rng.normal(size=(3, 12)).astype("float32")
    full = decoder([target, memory, mask, h, c]).numpy()
    states = [[h, c] for _ in range(layers)]
    keys = decoder.attention.keys(memory)
    for t in range(target.shape[1]):
        logits, states = decoder.step(target[:, t], states, memory, keys, mask)
        np.testing.assert_allclose(logits, full[:, t], atol=1e-4)


def _copying_decoder(gate_bias: float | None = None):
    # A copying decoder over 20 ids, with its source, memory and start states.
    decoder = attention.AttentionDecoder(20, 8, 12, attention="general", copy=True)
    rng = np.random.default_rng(2)
    source = np.array([[5, 9, 9, 4], [7, 11, 0, 0], [13, 0, 0, 0]], "int32")
    memory = rng.normal(size=(3, 4, 10)).astype("float32")
    h = rng.normal(size=(3, 12)).astype("float32")
    c = rng.normal(size=(3, 12)).astype("float32")
    target = rng.integers(2, 20, (3, 6)).astype("int32")
    full = decoder([target, memory, source != 0, h, c, source]).numpy()
    if gate_bias is not None:
        decoder.copy_gate.bias.assign([gate_bias])
    return decoder, source, memory, h, c, target, full


def test_a_copying_decoder_gives_log_probabilities_and_its_steps_equal_teacher_forcing():
    decoder, source, memory, h, c, target, full = _copying_decoder()
    np.testing.assert_allclose(tf.reduce_logsumexp(full, -1), 0.0, atol=1e-5)
    states, keys = [[h, c]], decoder.attention.keys(memory)
    for t in range(target.shape[1]):
        out, states = decoder.step(target[:, t], states, memory, keys, source != 0, source)
        np.testing.assert_allclose(out, full[:, t], atol=1e-4)


def test_the_copy_mixture_is_the_dense_mixture_with_repeated_ids_and_padding():
    decoder = attention.AttentionDecoder(12, 4, 6, copy=True)
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 12)).astype("float32")
    gate = rng.normal(size=(2, 3, 1)).astype("float32")
    source = np.array([[5, 7, 5, 0], [9, 9, 9, 2]], "int32")
    weights = rng.random((2, 3, 4)).astype("float32") * (source != 0)[:, None]
    weights /= weights.sum(-1, keepdims=True)
    g = 1 / (1 + np.exp(-gate))
    expected = g * np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for b, t, s in np.ndindex(weights.shape):
        expected[b, t, source[b, s]] += (1 - g[b, t, 0]) * weights[b, t, s]
    got = np.exp(decoder._mix(logits, gate, weights, source).numpy())
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_decoder_that_only_copies_writes_only_its_sources_pieces():
    decoder, source, memory, h, c, *_ = _copying_decoder(gate_bias=-60.0)
    out = decoding.search_attention_decoder(
        decoder, decoder.start_states(h, c), memory, source != 0, 2, 3, 6, 3, source=source
    ).numpy()
    for ids, row in zip(out, source):
        assert set(ids) <= set(row[row != 0]), (ids, row)


def test_a_decoder_that_never_copies_searches_as_one_without_copying():
    decoder, source, memory, h, c, *_ = _copying_decoder(gate_bias=60.0)
    plain = attention.AttentionDecoder(20, 8, 12, attention="general")
    plain([np.zeros((1, 1), "int32"), memory[:1], source[:1] != 0, h[:1], c[:1]])
    kept = [w for w in decoder.weights if "copy_gate" not in w.path]
    plain.set_weights([w.numpy() for w in kept])
    for beam in (1, 3):
        outs = [
            decoding.search_attention_decoder(
                d, d.start_states(h, c), memory, source != 0, 2, 3, 8, beam, source=source
            ).numpy()
            for d in (decoder, plain)
        ]
        np.testing.assert_array_equal(*outs)


@pytest.mark.parametrize("copy", [False, True])
def test_a_bfloat16_vocabulary_product_is_near_float32_and_searches(copy):
    decoder, source, memory, h, c, target, _ = _copying_decoder()
    if not copy:
        decoder = attention.AttentionDecoder(20, 8, 12, attention="general")
        decoder([target, memory, source != 0, h, c])
    extra = (source,) if copy else ()
    features, _ = decoder.step_features(target[:, 0], [[h, c]], memory,
                                        decoder.attention.keys(memory), source != 0, *extra)  # fmt: skip
    exact = decoder.project(features).numpy()
    low = decoder.project(features, decoder.bfloat16_kernel()).numpy()
    # Inputs and weights rounded to 8 significant bits, each product's sum in bfloat16 too.
    scale = np.abs(exact).max()
    np.testing.assert_allclose(low, exact, atol=0.05 * scale)
    assert not np.array_equal(low, exact)  # the bfloat16 product ran
    for beam in (1, 3):
        out = decoding.search_attention_decoder(
            decoder, decoder.start_states(h, c), memory, source != 0, 2, 3, 6, beam,
            source=source if copy else None, products="bfloat16",
        ).numpy()  # fmt: skip
        assert out.shape[0] == 3 and out.dtype == np.int32 and out.min() >= 0
    with pytest.raises(ValueError, match="expected products float32 or bfloat16, got 'half'"):
        decoding.search_attention_decoder(
            decoder, decoder.start_states(h, c), memory, source != 0, 2, 3, 6, 1,
            source=source if copy else None, products="half",
        )  # fmt: skip


def test_copy_without_a_shared_vocabulary_is_refused():
    config = dataclasses.replace(TINY, copy=True)
    with pytest.raises(UserError, match="expected shared_vocabulary=true with copy=true"):
        translation.fit_preprocessing(config, [("a b", "c d")])


def test_dot_attention_needs_matching_widths():
    config = dataclasses.replace(TINY, attention="dot", encoder_units=8, decoder_units=12)
    with pytest.raises(UserError, match="attention=dot needs decoder_units = 2 x encoder_units"):
        translation.build_model(config, {"source_vocabulary": ["a"], "target_vocabulary": ["b"]})


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def number_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("numbers")
    data = write_tsv(root / "numbers.txt", number_pairs(3000))
    run_dir = root / "run"
    cli_ok(
        "run",
        "translation",
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--run-dir",
        str(run_dir),
        "--set",
        "max_examples=0",
        "--set",
        "epochs=6",
        "--set",
        "learning_rate=0.01",
        "--set",
        "attention=general",
    )
    return run_dir


def test_litert_is_refused_in_one_line_saying_why(number_run):
    result = CliRunner().invoke(main, ["export", str(number_run), "--format", "litert"])
    assert result.exit_code == 2, result.output
    assert "translation has no LiteRT export" in result.output, result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1
    assert not (number_run / "export" / "litert").exists()


def test_tiny_run_learns_and_writes_its_outputs(number_run):
    metrics = json.loads((number_run / "metrics.json").read_text())
    assert metrics["token_accuracy"] > 0.6, metrics
    assert metrics["bleu_beam"] > 20, metrics
    assert {"bleu_greedy", "chrf_greedy", "chrf_beam"} <= set(metrics)
    rows = (number_run / "translations.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "source\treference\tgreedy\tbeam" and len(rows) == metrics["pairs"] + 1
    assert (number_run / "plots" / "attention_0.png").stat().st_size > 1000


def test_evaluate_and_export_with_a_bfloat16_search(number_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(number_run, run_dir, ignore=shutil.ignore_patterns("export"))
    before = json.loads((run_dir / "metrics.json").read_text())
    cli_ok("evaluate", str(run_dir), "--decode-precision", "bfloat16")
    after = json.loads((run_dir / "metrics.json").read_text())
    assert before["decode_precision"] == "float32" and after["decode_precision"] == "bfloat16"
    # Logits rounded to bfloat16 change a near tie here and there, not what the model learned.
    assert abs(after["bleu_beam"] - before["bleu_beam"]) < 5, (before, after)
    cli_ok("export", str(run_dir), "--decode-precision", "bfloat16")  # verified when exported
    facts = json.loads(
        (run_dir / "export" / "1" / "assets.extra" / "lstm_recipes.json").read_text()
    )
    assert facts["decode_precision"] == "bfloat16"
    assert json.loads((run_dir / "config.json").read_text())["decode_precision"] == "float32"


def test_decode_precision_is_refused_for_a_recipe_that_does_not_search(tmp_path):
    run_dir = tmp_path / "run"
    cli_ok("train", "sentiment", "--preset", "tiny", "--run-dir", str(run_dir), "--set", "epochs=1")
    # Refused before the run's data and model load: without its preprocessing file a later
    # refusal would fail on that file instead.
    (run_dir / "preprocessing.json").rename(tmp_path / "preprocessing.json")
    result = CliRunner().invoke(main, ["evaluate", str(run_dir), "--decode-precision", "bfloat16"])
    assert result.exit_code == 2, result.output
    assert "expected --decode-precision with a recipe that searches" in result.output
    assert "sentiment does not" in result.output and "Traceback" not in result.output
    assert not (run_dir / "metrics.json").exists()


class _TranslatorBeforeTheSharedSearch:
    """The translation recipe's own search before ``seq2seq.AttentionSearch`` replaced it
    (Translator and translate_all, unchanged but for names): the expected strings."""

    def __init__(self, config, model, prep):
        self.config = config
        self.vectorizer = text_lib.make_vectorizer(
            prep["source_vocabulary"], text_lib.split_punctuation_lower, "old_source"
        )
        self.words_table = tf.constant(["", "[UNK]", *prep["target_vocabulary"]])
        self.model = model

    def translate(self, text, beam_width):
        get = self.model.get_layer
        ids = tf.cast(text_lib.dense_ids(self.vectorizer(text), self.config.max_length), tf.int32)
        mask = tf.not_equal(ids, 0)
        memory, h, c = get("encoder")(get("source_embedding")(ids), mask=mask, training=False)
        decoder = get("decoder")
        states = decoder.start_states(get("bridge_h")(h), get("bridge_c")(c))
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), -1)
        real_length = tf.reduce_max(tf.concat([[0], lengths], 0))
        max_length = tf.minimum(2 * real_length + 10, self.config.max_length + 10)
        out = decoding.search_attention_decoder(
            decoder, states, memory, mask, 2, 3, max_length, beam_width, self.config.length_penalty
        )
        words = decoding.output_words(self.words_table, out, 2, 3)
        return text_lib.detokenize(tf.strings.reduce_join(words, axis=-1, separator=" "))

    def translate_all(self, texts, beam_width, batch=64):
        fn = tf.function(
            lambda t: self.translate(t, beam_width),
            input_signature=[tf.TensorSpec([None], tf.string)],
            autograph=False,
        )
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = [""] * len(texts)
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            for i, result in zip(chunk, fn(tf.constant([texts[i] for i in chunk])).numpy()):
                out[i] = result.decode("utf-8", "replace")
        return out


def test_shared_search_gives_the_strings_the_recipe_gave_before(number_run):
    from lstm_recipes.run import Run

    run = Run.reopen(number_run)
    config, prep, model = run.config, run.prep, run.model
    assert config.lowercase, "the reference vectorizes lowercased, as the tiny run does"
    sentences = [s for s, _ in number_pairs(150, seed=7)] + ["", "nine " * 60, "wörds ¿?"]
    before = _TranslatorBeforeTheSharedSearch(config, model, prep)
    search = translation.translator(config, model, prep)
    for width in (1, config.beam_width):
        expected = before.translate_all(sentences, width)
        assert seq2seq.decode_all(search, sentences, width) == expected, f"beam width {width}"
    assert len(set(expected)) > 10, "the trained model tells the sentences apart"


def test_exported_model_equals_the_in_process_decoder(number_run, tmp_path):
    from lstm_recipes.run import Run

    run = Run.reopen(number_run)
    config, prep, model = run.config, run.prep, run.model
    search = translation.translator(config, model, prep)
    sentences = ["one two three", "nine", "", "seven " * 400, "unknown wörds ¿?"]
    beam = seq2seq.decode_all(search, sentences, config.beam_width)
    greedy = seq2seq.decode_all(search, sentences, 1)
    assert greedy == seq2seq.decode_all(search, sentences, 1, batch=2), (
        "batching does not change the result"
    )
    script = (
        "import json, sys, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "x = tf.constant(json.loads(sys.argv[2]))\n"
        "out = {k: [t.decode() for t in m.signatures[k](text=x)['translation'].numpy()]\n"
        "       for k in ('serving_default', 'greedy')}\n"
        "print(json.dumps(out))\n"
    )
    export = str(number_run / "export" / "1")
    served = fresh_python(script, export, json.dumps(sentences), cwd=tmp_path)
    assert served["serving_default"] == beam
    assert served["greedy"] == greedy


def test_predict_translates_arguments_and_files(number_run, tmp_path):
    result = CliRunner().invoke(main, ["predict", str(number_run), "--json", "one two"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["text"] == "one two" and isinstance(row["translation"], str)
    lines = tmp_path / "in.txt"
    lines.write_text("three\nfour five\n", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["predict", str(number_run), "--file", str(lines), "--signature", "greedy"]
    )
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 2


def test_cli_reports_bad_pairs_files_without_a_traceback(tmp_path):
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("one\tuno\nno tab here\n", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["run", "translation", "--preset", "tiny", "--data", str(ragged)]
    )
    assert result.exit_code == 2
    assert "ragged.txt:2: expected source<TAB>target" in result.output
    assert "Traceback" not in result.output


def test_served_translation_edge_inputs(number_run):
    results = run_edge_inputs(number_run / "export" / "1")
    assert {r["signature"] for r in results} == {"serving_default", "greedy"}


def test_faster_search_gives_the_previous_search_strings(number_run):
    from test_decoding import previous_search

    from lstm_recipes.run import Run

    reference = previous_search().reference_search
    run = Run.reopen(number_run)
    search = translation.translator(run.config, run.model, run.prep)
    sentences = [s for s, _ in number_pairs(200, seed=11)] + ["", "nine " * 60]
    ids = search.prepare(tf.constant(sentences))
    for width in (1, run.config.beam_width):
        want = search.text(reference(search, ids, width)).numpy().tolist()
        assert search.decode(ids, width).numpy().tolist() == want, f"beam width {width}"
    assert len(set(want)) > 10, "the trained model tells the sentences apart"
