"""Property-based fuzzing of every --data adapter: a valid dataset or one clear UserError.

Each property writes a generated file (random bytes, broken quoting, BOMs and other encodings,
wrong, duplicate and missing columns, blank and huge lines, ragged CoNLL columns, empty
sequences, unseen labels, truncated or fake images) and loads it the way ``--data`` does. The
outcome must be a valid dataset or a ``UserError`` whose message names the file; any other
exception fails the test. Runs are derandomized (the same cases every time) and bounded by
``LSTM_RECIPES_FUZZ_EXAMPLES`` (default 100 per adapter); the count per adapter is printed at the
end of the module.
"""

from __future__ import annotations

import collections
import gzip
import io
import itertools
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lstm_recipes import recipe as recipe_lib
from lstm_recipes import vision
from lstm_recipes.data import Splits
from lstm_recipes.data.frames import Recording
from lstm_recipes.data.tfds import load_tfds
from lstm_recipes.errors import UserError

EXAMPLES = int(os.environ.get("LSTM_RECIPES_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

sentiment = recipe_lib.load_recipe("sentiment")
translation = recipe_lib.load_recipe("translation")
frame_labeling = recipe_lib.load_recipe("frame_labeling")
tagging = recipe_lib.load_recipe("tagging")
char_lm = recipe_lib.load_recipe("char_lm")
captioning = recipe_lib.load_recipe("image_captioning")

CASES: collections.Counter = collections.Counter()
OUTCOMES: collections.Counter = collections.Counter()
_fresh = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def report_counts(request):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\nfuzzed --data adapters (cases: valid datasets / clear errors):")
        for name in sorted(CASES):
            reporter.write_line(
                f"  {name:<28} {CASES[name]:>5} cases: {OUTCOMES[name, 'ok']} valid, "
                f"{OUTCOMES[name, 'error']} errors"
            )


def case_dir(tmp_path: Path) -> Path:
    folder = tmp_path / f"case{next(_fresh)}"
    folder.mkdir()
    return folder


def outcome(adapter: str, named: str, load):
    """Run ``load()``: its result, or None after a UserError that names ``named``."""
    CASES[adapter] += 1
    try:
        result = load()
    except UserError as e:
        message = str(e)
        assert named in message, f"the error does not name {named}: {message}"
        assert "Traceback" not in message and len(message) < 2000, message
        OUTCOMES[adapter, "error"] += 1
        return None
    OUTCOMES[adapter, "ok"] += 1
    return result


def check_splits(splits: Splits) -> None:
    assert isinstance(splits, Splits)
    assert splits.train and splits.validation and splits.test


# ----------------------------------------------------------------------------- strategies

LABELS = ["pos", "neg", "0", "1", "B-NP", "I-NP", "O"]
FIELDS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(LABELS),
    st.sampled_from(
        ['"', '""', '"x', 'a"b', '"a,b"', "a,b", "\r", "\t", "\x00", "\ufeff", "\u2028", "\x85"]
        + ["é", "😀", "\U0010fffd", "NaN", "inf", "-1e309", " ", "\\"]
    ),
)
# Python's csv module stops at fields past 131,072 characters.
HUGE = st.integers(1, 140_000).map(lambda n: "y" * n)
COLUMN_NAMES = st.sampled_from(["text", "label", "Text", "", "text ", "other", '"text"', "label"])
ENCODINGS = st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1"])


def encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


@st.composite
def table_text(
    draw, sep: str = ",", columns=COLUMN_NAMES, fields=FIELDS, header=("text", "label")
) -> str:
    """Header and rows, mostly plausible (so some load), often broken."""
    header = draw(st.one_of(st.just(list(header)), st.lists(columns, max_size=4)))
    width = len(header)
    field = st.one_of(fields, HUGE) if draw(st.integers(0, 9)) == 0 else fields
    rows = draw(
        st.lists(
            st.lists(field, min_size=max(width - 1, 0), max_size=width + 1)
            if draw(st.booleans())
            else st.lists(field, min_size=width, max_size=width),
            max_size=30,
        )
    )
    lines = [sep.join(header)] + [sep.join(row) for row in rows]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), "")
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return newline.join(lines) + draw(st.sampled_from(["", newline]))


def plausible_reviews(rng_seed: int, n: int, sep: str = ",") -> str:
    import random

    rng = random.Random(rng_seed)
    words = ["good", "bad", "fine", "dull", "great", "awful"]
    rows = [
        f"{' '.join(rng.choices(words, k=4))}{sep}{rng.choice(['pos', 'neg'])}" for _ in range(n)
    ]
    return "\n".join([f"text{sep}label", *rows]) + "\n"


@st.composite
def mutated(draw, text: str) -> str:
    """``text`` with up to three local faults: inserted junk or a huge line, a deleted span, a
    duplicated or blank line. A third of the cases keep it intact, so many of them load."""
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.integers(0, 4))
        if kind == 0:
            text = text[:at] + draw(FIELDS) + text[at:]
        elif kind == 1:
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif kind == 2:
            text = text[:at] + "\n\n" + text[at:]
        elif kind == 3:
            lines = text.split("\n")
            text = "\n".join(lines + [lines[draw(st.integers(0, len(lines) - 1))]])
        else:
            text = text[:at] + "\n" + "z" * draw(st.integers(1, 140_000)) + "\n" + text[at:]
    return text


@st.composite
def file_bytes(draw, text_strategy) -> bytes:
    """Random bytes, or generated text in a random encoding."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=400))
    if kind == 1:
        return encode(draw(text_strategy), draw(ENCODINGS))
    return encode(draw(text_strategy), "utf-8")


@st.composite
def maybe_gzip(draw, raw: bytes) -> tuple[bytes, str]:
    """(bytes, suffix): plain, gzipped, truncated gzip or bytes pretending to be gzip."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        packed = gzip.compress(raw)
        return packed, ".gz"
    if kind == 1:
        packed = gzip.compress(raw)
        return packed[: draw(st.integers(0, max(len(packed) - 1, 0)))], ".gz"
    if kind == 2:
        packed = bytearray(gzip.compress(raw))
        if len(packed) > 12:
            packed[draw(st.integers(10, len(packed) - 1))] ^= 0xFF  # corrupt the stream
        return bytes(packed), ".gz"
    return raw, ""


# ----------------------------------------------------------------------------- tables (sentiment)


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(["csv", "tsv"]))
@example(data=None, fmt="csv")
def test_sentiment_csv_tsv(tmp_path, data, fmt):
    sep = "," if fmt == "csv" else "\t"
    if data is None:  # a file that loads, so the property is not only about errors
        raw, suffix = plausible_reviews(0, 60, sep).encode(), ""
    else:
        text = st.one_of(
            table_text(sep),
            st.integers(0, 99).map(lambda s: plausible_reviews(s, 40, sep)).flatmap(mutated),
        )
        raw, suffix = data.draw(maybe_gzip(data.draw(file_bytes(text))))
    path = case_dir(tmp_path) / f"reviews.{fmt}{suffix}"
    path.write_bytes(raw)
    splits = outcome(
        f"sentiment {fmt}", path.name, lambda: sentiment.load_data(TINY_SENTIMENT, str(path))
    )
    if splits is not None:
        check_splits(splits)
        assert all(isinstance(t, str) and isinstance(y, str) and y for t, y in splits.train)
        assert len({y for _, y in splits.train}) >= 2


TINY_SENTIMENT = sentiment.PRESETS["tiny"]

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def jsonl_text(draw, keys=("text", "label"), values=JSON_VALUES) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(draw(st.text(max_size=30)))  # not JSON
        elif kind == 1:
            lines.append(json.dumps(draw(JSON_VALUES)))  # JSON, maybe not an object
        elif kind == 2:
            lines.append("")
        else:
            row = {
                k: draw(values) if draw(st.booleans()) else draw(st.sampled_from(LABELS))
                for k in keys
                if draw(st.integers(0, 9))
            }
            lines.append(json.dumps(row, ensure_ascii=draw(st.booleans())))
    return "\n".join(lines)


def plausible_jsonl(seed: int) -> str:
    rows = plausible_reviews(seed, 40).splitlines()[1:]
    return "".join(
        json.dumps({"text": t, "label": y}) + "\n" for t, y in (r.split(",") for r in rows)
    )


def test_sentiment_jsonl_integer_past_the_digit_limit(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text('{"text": "a", "label": ' + "1" * 5000 + "}\n")
    with pytest.raises(UserError, match="big.jsonl:1: expected one JSON object per line"):
        sentiment.load_data(TINY_SENTIMENT, str(path))


@FUZZ
@given(data=st.data())
@example(data=None)
def test_sentiment_jsonl(tmp_path, data):
    if data is None:  # nested thousands deep and an integer past Python's digit limit
        raw, suffix = ("[" * 100_000 + "\n" + '{"text": 1' + "1" * 5000 + "}\n").encode(), ""
    else:
        plausible = st.integers(0, 99).map(plausible_jsonl).flatmap(mutated)
        text = st.one_of(jsonl_text(), plausible)
        raw, suffix = data.draw(maybe_gzip(data.draw(file_bytes(text))))
    path = case_dir(tmp_path) / f"reviews.jsonl{suffix}"
    path.write_bytes(raw)
    splits = outcome(
        "sentiment jsonl", path.name, lambda: sentiment.load_data(TINY_SENTIMENT, str(path))
    )
    if splits is not None:
        check_splits(splits)


@FUZZ
@given(
    classes=st.lists(
        st.tuples(
            st.sampled_from(["pos", "neg", "pos", "neg", ".hidden", "ünï", "a b", "0"]),
            st.lists(
                st.one_of(
                    st.binary(max_size=40),
                    st.text(max_size=40).map(str.encode),
                    st.sampled_from([b"good fine film", b"bad dull", b"\xef\xbb\xbfgreat"]),
                ),
                max_size=8,
            ),
        ),
        max_size=5,
    )
)
def test_sentiment_class_folders(tmp_path, classes):
    root = case_dir(tmp_path) / "reviews"
    root.mkdir()
    for name, texts in classes:
        (root / name).mkdir(exist_ok=True)
        for i, raw in enumerate(texts):
            (root / name / f"{i}.txt").write_bytes(raw)
    splits = outcome(
        "sentiment class folders", "reviews", lambda: sentiment.load_data(TINY_SENTIMENT, str(root))
    )
    if splits is not None:
        assert all(isinstance(t, str) for t, _ in splits.train)


def test_sentiment_test_labels_unseen_in_training(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text(plausible_reviews(1, 40))
    test = tmp_path / "test.csv"
    test.write_text("text,label\nmeh,neutral\ngood,pos\n")
    with pytest.raises(UserError, match=r"test labels of .*test.csv.* found 'neutral'"):
        sentiment.load_data(TINY_SENTIMENT, str(train), str(test))


# ----------------------------------------------------------------------------- CoNLL (tagging)

TOKEN_CONFIG = tagging.PRESETS["tiny"]


@st.composite
def conll_text(draw, conllu: bool) -> str:
    tags = st.sampled_from(["B-NP", "I-NP", "O"] * 5 + ["NOUN", "VERB", "_"])
    words = st.one_of(
        st.sampled_from(["the", "cat", "sat", ".", "Ünï", "😀"] * 3),
        st.text(st.characters(exclude_categories=("Z", "Cc", "Cs")), min_size=1, max_size=6),
    )
    sep = "\t" if conllu else draw(st.sampled_from([" ", "\t", "  "]))
    lines = []
    width = draw(st.sampled_from([10, 10, 2] if conllu else [2, 2, 3, 1]))
    for _ in range(draw(st.integers(0, 40))):
        if conllu and draw(st.booleans()):
            lines.append("# sent_id = " + draw(st.text(max_size=8)))
        for i in range(draw(st.integers(0, 6))):
            kind = draw(st.integers(0, 40))
            if kind == 0:  # ragged
                row = draw(st.lists(words, min_size=0, max_size=width + 2))
            elif kind == 1:
                row = (
                    ["-DOCSTART-", "-X-", "O"]
                    if not conllu
                    else [f"{i + 1}-{i + 2}", "dont"] + ["_"] * 8
                )
            else:
                row = [draw(words) for _ in range(width - 1)] + [draw(tags)]
                if conllu:
                    row[0] = str(i + 1) if draw(st.integers(0, 5)) else f"{i}.1"
                    if width == 10:
                        row[3] = draw(tags)
            lines.append(sep.join(row))
        lines.append("")
    return "\n".join(lines)


def plausible_conll(seed: int, conllu: bool) -> str:
    import random

    rng = random.Random(seed)
    sentences = []
    for _ in range(40):
        rows = [(rng.choice(["the", "a"]), "B-NP"), (rng.choice(["cat", "dog"]), "I-NP")]
        rows.append((rng.choice(["sat", "ran"]), "O"))
        if conllu:
            rows = [f"{i}\t{w}\t_\t{t}\t_\t_\t0\t_\t_\t_" for i, (w, t) in enumerate(rows, 1)]
            sentences.append("# text = x\n" + "\n".join(rows))
        else:
            sentences.append("\n".join(f"{w} {t}" for w, t in rows))
    return "\n\n".join(sentences) + "\n"


@FUZZ
@given(data=st.data(), suffix=st.sampled_from([".txt", ".conll", ".conllu"]))
def test_tagging_conll(tmp_path, data, suffix):
    conllu = suffix == ".conllu"
    plausible = st.integers(0, 99).map(lambda seed: plausible_conll(seed, conllu))
    text = data.draw(st.one_of(conll_text(conllu), plausible.flatmap(mutated)))
    raw, gz = data.draw(maybe_gzip(data.draw(file_bytes(st.just(text)))))
    path = case_dir(tmp_path) / f"tags{suffix}{gz}"
    path.write_bytes(raw)
    columns = data.draw(
        st.sampled_from(
            [
                [],
                [],
                [],
                ["tag_column=upos"],
                ["token_column=1", "tag_column=2"],
                ["feature_columns=1"],
                ["tag_column=-9"],
            ]
        )
    )
    config = recipe_lib.resolve_config(tagging, "tiny", columns)
    splits = outcome(
        f"tagging CoNLL{'-U' if suffix == '.conllu' else ''}",
        path.name,
        lambda: tagging.load_data(config, str(path)),
    )
    if splits is not None:
        check_splits(splits)
        for tokens, tags, feats in splits.train + splits.validation + splits.test:
            assert tokens and len(tokens) == len(tags) and all(len(f) == len(tokens) for f in feats)


@FUZZ
@given(data=st.data())
def test_tagging_jsonl(tmp_path, data):
    token_lists = st.lists(st.sampled_from(["a", "b", "c", "Ü"]), max_size=5)
    plausible = st.lists(
        st.lists(st.sampled_from(["a", "b", "Ü", ""]), max_size=5).map(
            lambda t: json.dumps({"tokens": t, "tags": ["O"] * len(t)})
        ),
        min_size=20,
        max_size=40,
    ).map("\n".join)
    text = data.draw(
        st.one_of(
            jsonl_text(keys=("tokens", "tags"), values=st.one_of(token_lists, JSON_VALUES)),
            plausible.flatmap(mutated),
        )
    )
    raw, gz = data.draw(maybe_gzip(data.draw(file_bytes(st.just(text)))))
    path = case_dir(tmp_path) / f"tags.jsonl{gz}"
    path.write_bytes(raw)
    splits = outcome("tagging JSONL", path.name, lambda: tagging.load_data(TOKEN_CONFIG, str(path)))
    if splits is not None:
        check_splits(splits)


def test_tagging_tags_unseen_in_training(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("".join(f"w{i} B-NP\nx I-NP\n\n" for i in range(30)))
    test = tmp_path / "test.txt"
    test.write_text("w B-XYZ\n\n")
    # Unseen test tags are scored as errors by evaluation (conlleval), not refused.
    splits = tagging.load_data(TOKEN_CONFIG, str(train), str(test))
    assert splits.test[0][1] == ["B-XYZ"]


# ----------------------------------------------------------------------------- frames (frame_labeling)

FRAMES_CONFIG = frame_labeling.PRESETS["tiny"]
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 5).map(str),
    st.sampled_from(["", "x", "nan", "1e400", "1_0", " 1"]),
)


@st.composite
def long_csv_text(draw) -> str:
    header = ["sequence_id", "step", "f0", "f1", "label"]
    if draw(st.integers(0, 3)) == 0:
        header = draw(st.lists(st.sampled_from([*header, "", "f0"]), max_size=6))
    rows = []
    for seq in range(draw(st.integers(0, 8))):
        for step in range(draw(st.integers(0, 8))):
            row = [
                str(seq),
                str(step),
                draw(NUMBERS),
                draw(NUMBERS),
                draw(st.sampled_from(["a", "b", ""])),
            ]
            if draw(st.integers(0, 15)) == 0:
                row = row[: draw(st.integers(0, 6))]
            rows.append(",".join(row[: len(header)] if len(row) > len(header) else row))
    return "\n".join([",".join(header), *rows])


def plausible_long_csv(seed: int) -> str:
    rng = np.random.default_rng(seed)
    rows = [
        f"s{q},{t},{rng.normal():.3f},{rng.normal():.3f},{'ab'[(t // 3) % 2]}"
        for q in range(8)
        for t in range(6)
    ]
    return "\n".join(["sequence_id,step,f0,f1,label", *rows]) + "\n"


@FUZZ
@given(data=st.data())
def test_frame_labeling_long_csv(tmp_path, data):
    plausible = st.integers(0, 99).map(plausible_long_csv).flatmap(mutated)
    text = st.one_of(long_csv_text(), plausible)
    raw, gz = data.draw(maybe_gzip(data.draw(file_bytes(text))))
    path = case_dir(tmp_path) / f"frames.csv{gz}"
    path.write_bytes(raw)
    splits = outcome(
        "frame_labeling frames CSV",
        path.name,
        lambda: frame_labeling.load_data(FRAMES_CONFIG, str(path)),
    )
    if splits is not None:
        check_splits(splits)
        assert all(
            isinstance(r, Recording) and len(r.frames) == len(r.labels) > 0 for r in splits.train
        )


@st.composite
def npz_bytes(draw) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=200))
    steps, feats = draw(st.integers(0, 5)), draw(st.integers(0, 3))
    arrays = {
        "frames": np.asarray(
            draw(st.lists(st.floats(width=32), min_size=steps * feats, max_size=steps * feats)),
            np.float32,
        ).reshape(steps, feats),
        "labels": np.array(
            draw(st.lists(st.sampled_from(["a", "b"]), min_size=steps, max_size=steps)), dtype=str
        ),
    }
    if kind == 1:
        arrays.pop(draw(st.sampled_from(["frames", "labels"])))
    if kind == 2:
        arrays["frames"] = np.array(["x"] * steps)
    if kind == 3:
        arrays["labels"] = arrays["labels"][:-1] if steps else np.zeros((2, 2))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    packed = buffer.getvalue()
    if draw(st.integers(0, 4)) == 0:
        packed = packed[: draw(st.integers(0, len(packed)))]
    return packed


def plausible_npz(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    labels = np.array(["a", "b"] * 10)
    np.savez(buffer, frames=rng.normal(size=(20, 2)).astype(np.float32), labels=labels)
    return buffer.getvalue()


@FUZZ
@given(
    files=st.lists(
        st.tuples(st.sampled_from([".npz", ".csv", *["good"] * 10]), st.data()),
        max_size=8,
    )
)
def test_frame_labeling_sequence_folder(tmp_path, files):
    root = case_dir(tmp_path) / "recordings"
    root.mkdir()
    for i, (suffix, data) in enumerate(files):
        if suffix == "good":
            suffix, raw = ".npz", plausible_npz(i)
        elif suffix == ".npz":
            raw = data.draw(npz_bytes())
        else:
            raw = data.draw(
                file_bytes(
                    table_text(
                        columns=st.sampled_from(["f0", "f1", "label", "step", ""]),
                        fields=NUMBERS,
                        header=("step", "f0", "label"),
                    )
                )
            )
        (root / f"seq{i}{suffix}").write_bytes(raw)
    splits = outcome(
        "frame_labeling frame folder",
        "recordings",
        lambda: frame_labeling.load_data(FRAMES_CONFIG, str(root)),
    )
    if splits is not None:
        check_splits(splits)


# ----------------------------------------------------------------------------- parallel text (translation)

TINY_TRANSLATION = translation.PRESETS["tiny"]


@st.composite
def pairs_text(draw) -> str:
    sides = st.one_of(
        st.text(max_size=15), st.sampled_from(["hello", "hola", "", " ", "\u2028", "a\rb"])
    )
    lines = []
    for _ in range(draw(st.integers(0, 40))):
        fields = (
            draw(st.lists(sides, min_size=1, max_size=3))
            if draw(st.integers(0, 9)) == 0
            else [draw(sides), draw(sides)]
        )
        lines.append("\t".join(fields))
    return "\n".join(lines)


def plausible_pairs(n: int) -> str:
    return "".join(f"number {i}\tnúmero {i}\n" for i in range(n))


@FUZZ
@given(data=st.data(), form=st.sampled_from(["txt", "tsv", "zip", "aligned", "jsonl", "csv"]))
@example(data=None, form="zip")
def test_translation_pairs(tmp_path, data, form):
    folder = case_dir(tmp_path)
    if data is None:
        text = plausible_pairs(60)
    else:
        text = data.draw(
            st.one_of(pairs_text(), st.integers(0, 80).map(plausible_pairs).flatmap(mutated))
        )
    if form in ("txt", "tsv"):
        raw, gz = (
            data.draw(maybe_gzip(data.draw(file_bytes(st.just(text)))))
            if data
            else (text.encode(), "")
        )
        path = folder / f"pairs.{form}{gz}"
        path.write_bytes(raw)
        spec, named = str(path), path.name
    elif form == "zip":
        path = folder / "pairs.zip"
        kind = data.draw(st.integers(0, 4)) if data else 1
        if kind == 0:
            path.write_bytes(data.draw(st.binary(max_size=300)))
        else:
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
                members = ["spa.txt"] if kind != 2 else ["a.txt", "b.tsv"]
                for member in members:
                    archive.writestr(member, encode(text, data.draw(ENCODINGS)) if data else text)
                archive.writestr("_about.txt", "about")
            if kind == 3:  # damage the compressed member
                raw = bytearray(path.read_bytes())
                raw[data.draw(st.integers(30, max(31, len(raw) // 2)))] ^= 0x55
                path.write_bytes(bytes(raw))
        spec, named = str(path), path.name
    elif form == "aligned":
        left, right = folder / "train.en", folder / "train.es"
        lines = [line.split("\t") + [""] for line in text.split("\n")]
        left.write_bytes(data.draw(file_bytes(st.just("\n".join(x[0] for x in lines)))))
        right.write_bytes(
            data.draw(
                file_bytes(
                    st.just("\n".join(x[1] for x in lines[: data.draw(st.integers(0, len(lines)))]))
                )
            )
        )
        spec, named = f"{left},{right}", "train.e"
    else:
        path = folder / f"pairs.{form}"
        if form == "jsonl":
            raw = data.draw(file_bytes(jsonl_text(keys=("source", "target"))))
        else:
            raw = data.draw(
                file_bytes(
                    table_text(
                        columns=st.sampled_from(["source", "target", "", "x"]),
                        header=("source", "target"),
                    )
                )
            )
        path.write_bytes(raw)
        spec, named = str(path), path.name
    splits = outcome(
        f"translation {form}", named, lambda: translation.load_data(TINY_TRANSLATION, spec)
    )
    if splits is not None:
        check_splits(splits)
        assert all(s.strip() and t.strip() for s, t in splits.train)


# ----------------------------------------------------------------------------- text (char_lm)

TINY_CHAR_LM = char_lm.PRESETS["tiny"]


@FUZZ
@given(data=st.data(), folder=st.booleans())
def test_char_lm_text(tmp_path, data, folder):
    text = st.one_of(
        st.text(max_size=300),
        st.integers(0, 3000).map(lambda n: "To be, or not to be. " * (n // 20)).flatmap(mutated),
    )
    root = case_dir(tmp_path)
    if folder:
        target = root / "texts"
        target.mkdir()
        for i in range(data.draw(st.integers(0, 3))):
            raw, gz = data.draw(maybe_gzip(data.draw(file_bytes(text))))
            (target / f"part{i}.txt{gz}").write_bytes(raw)
        named = "texts"
    else:
        raw, gz = data.draw(maybe_gzip(data.draw(file_bytes(text))))
        target = root / f"input.txt{gz}"
        target.write_bytes(raw)
        named = target.name
    splits = outcome(
        "char_lm text" + (" folder" if folder else ""),
        named,
        lambda: char_lm.load_data(TINY_CHAR_LM, str(target)),
    )
    if splits is not None:
        assert isinstance(splits.train, str) and len(splits.train) > TINY_CHAR_LM.seq_length


# ----------------------------------------------------------------------------- images (image_captioning)

TINY_CAPTIONING = recipe_lib.resolve_config(
    captioning, "tiny", ["validation_size=2", "test_size=2"]
)


def _png(seed: int) -> bytes:
    import tensorflow as tf

    image = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), np.uint8)
    return tf.io.encode_png(image).numpy()


def _jpeg(seed: int) -> bytes:
    import tensorflow as tf

    image = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), np.uint8)
    return tf.io.encode_jpeg(image).numpy()


@st.composite
def image_file(draw) -> bytes:
    kind = draw(st.integers(0, 40))
    if kind == 0:
        return draw(st.binary(max_size=100))  # not an image
    if kind == 1:
        return b""
    good = _png(kind) if draw(st.booleans()) else _jpeg(kind)
    if kind == 2:  # truncated
        return good[: draw(st.integers(1, len(good) - 1))]
    if kind == 3:  # one flipped byte
        raw = bytearray(good)
        raw[draw(st.integers(0, len(raw) - 1))] ^= 0xFF
        return bytes(raw)
    return good


@FUZZ
@given(
    data=st.data(), form=st.sampled_from(["captions.csv", "captions.jsonl", "Flickr8k.token.txt"])
)
def test_image_captioning_folder(tmp_path, data, form):
    root = case_dir(tmp_path) / "photos"
    root.mkdir()
    names = [
        f"img{i}.{data.draw(st.sampled_from(['png', 'jpg']))}"
        for i in range(data.draw(st.integers(0, 12)))
    ]
    for name in names:
        (root / name).write_bytes(data.draw(image_file()))
    caption = st.one_of(
        st.text(max_size=20),
        st.text(
            st.characters(
                exclude_characters=',"\r\n\t\x85\u2028\u2029\x0b\x0c\x1c\x1d\x1e',
                exclude_categories=("Cs",),
            ),
            max_size=20,
        ),
        st.sampled_from(["a red circle", "two blue squares"]),
    )
    referenced = st.sampled_from(names * 20 + ["missing.png"])
    if form == "captions.csv":
        rows = [
            (data.draw(referenced), data.draw(caption))
            for _ in range(data.draw(st.integers(0, 30)))
        ]
        text = (
            "image,caption\n" + "".join(f"{a},{b}\n" for a, b in rows)
            if data.draw(st.integers(0, 5))
            else data.draw(table_text())
        )
    elif form == "captions.jsonl":
        lines = [
            json.dumps(
                {
                    "image": data.draw(referenced),
                    "captions": data.draw(
                        st.lists(caption, min_size=1, max_size=3)
                        if data.draw(st.integers(0, 30))
                        else JSON_VALUES
                    ),
                }
            )
            for _ in range(data.draw(st.integers(0, 30)))
        ]
        text = "\n".join(lines)
    else:
        lines = [
            f"{data.draw(referenced)}#{i}\t{data.draw(caption)}"
            if data.draw(st.integers(0, 40))
            else data.draw(st.text(max_size=20))
            for i in range(data.draw(st.integers(0, 30)))
        ]
        text = "\n".join(lines)
    (root / form).write_bytes(data.draw(file_bytes(st.just(text))))

    def load():
        splits = captioning.load_data(TINY_CAPTIONING, str(root))
        for ref, _ in splits.train + splits.validation + splits.test:
            vision.checked_image_bytes(ref)  # what feature caching does before training
        return splits

    splits = outcome(f"image_captioning {form.split('.', 1)[1]}", "photos", load)
    if splits is not None:
        check_splits(splits)


# ----------------------------------------------------------------------------- tfds specs


@settings(FUZZ, max_examples=max(10, EXAMPLES // 3))
@given(name=st.text(st.sampled_from("abz_09/:.- Üx"), max_size=12))
@example(name="imdb_reviews/no_such_config")
@example(name="a/b/c")
@example(name="")
def test_tfds_specs(name):
    # "zz" keeps generated names off real datasets, which would try the network.
    if name and not name.startswith(("imdb_reviews/", "a/")):
        name = "zz" + name
    spec = "tfds:" + name
    outcome("tfds specs", name or "tfds:NAME", lambda: load_tfds(spec, ["text"], "--data FILE"))
