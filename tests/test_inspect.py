"""``lstm-recipes inspect``: traced gate values, probes, unit discovery and its errors.

The per-recipe outputs (HTML and PNGs for each recipe kind) are checked on the tiny runs of
test_contract.py, which already trains every recipe.
"""

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from lstm_recipes import blocks, celltrace, inspection, probes
from lstm_recipes.cli import main
from lstm_recipes.errors import UserError

TEXT = 'he said "go home now" and left (slowly) then "stop it" she said, "no" he said ok '


def _char_model(text: str, units: int, cell: str = "lstm", bidirectional: bool = False):
    vocab = sorted(set(text))
    ids = np.array([[vocab.index(c) + 1 for c in text]], np.int32)
    inputs = keras.Input((None,), dtype="int32", name="chars")
    x = keras.layers.Embedding(len(vocab) + 1, len(vocab) + 1, embeddings_initializer="identity")(
        inputs
    )
    x = blocks.StackedLSTM(units, 1, bidirectional=bidirectional, cell=cell, name="lstm")(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    return model, ids, vocab


def test_a_hand_built_quote_unit_is_ranked_first_for_inside_quotes():
    units = 6
    model, ids, vocab = _char_model(TEXT * 3, units)
    lstm = model.get_layer("lstm").rnns[0]
    rng = np.random.default_rng(0)
    kernel, recurrent, bias = (rng.normal(0, 0.3, w.shape) for w in lstm.get_weights())
    u, q = units, vocab.index('"') + 1
    for gate in range(4):  # unit 0 listens to nothing but what is set below
        kernel[:, gate * u], recurrent[:, gate * u], bias[gate * u] = 0, 0, 0
    # At a quote the forget gate closes and the input gate opens: the cell takes z, which flips
    # the sign of the unit's own output (h ~ +0.76 inside, -0.76 after a closing quote, 0 at the
    # start). Elsewhere the cell keeps its value.
    kernel[q, 0], bias[0] = 20.0, -10.0
    kernel[q, u], bias[u] = -20.0, 10.0
    recurrent[0, 2 * u], bias[2 * u] = -20.0, 5.0
    bias[3 * u] = 10.0
    lstm.set_weights([kernel, recurrent, bias])
    seq = inspection.Sequence(ids, list(TEXT * 3), "chars")
    result = inspection.inspect_model(model, [seq], cells=3)
    best = {b.probe: b for b in result.best}
    assert best["inside quotes"].unit == (1, "forward", 0)
    assert best["inside quotes"].r > 0.9
    assert result.units[0] == (1, "forward", 0)


def _transcribed_lstm(x, kernel, recurrent, bias, steps):
    """Keras's LSTM equations, gate order i, f, c, o."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    u = recurrent.shape[0]
    h, c, rows = np.zeros(u), np.zeros(u), []
    for t in range(steps):
        z = x[t] @ kernel + h @ recurrent + bias
        i, f, o = sig(z[:u]), sig(z[u : 2 * u]), sig(z[3 * u :])
        c = f * c + i * np.tanh(z[2 * u : 3 * u])
        h = o * np.tanh(c)
        rows.append({"input_gate": i, "forget_gate": f, "output_gate": o, "cell": c, "output": h})
    return rows


def _transcribed_peephole(x, kernel, recurrent, bias, peep, steps):
    """Greff et al.'s vanilla LSTM (Section 2) with peepholes, block order z, i, f, o."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    u = recurrent.shape[0]
    y, c, rows = np.zeros(u), np.zeros(u), []
    for t in range(steps):
        a = x[t] @ kernel + y @ recurrent + bias
        z = np.tanh(a[:u])
        i = sig(a[u : 2 * u] + peep["i"] * c)
        f = sig(a[2 * u : 3 * u] + peep["f"] * c)
        c = z * i + c * f
        o = sig(a[3 * u :] + peep["o"] * c)
        y = np.tanh(c) * o
        rows.append({"input_gate": i, "forget_gate": f, "output_gate": o, "cell": c, "output": y})
    return rows


@pytest.mark.parametrize("cell", ["lstm", "vanilla"])
def test_traced_gates_equal_a_numpy_transcription_of_the_cell(cell):
    stack = blocks.StackedLSTM(5, 1, bidirectional=False, cell=cell)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 7, 4)).astype("float32")
    stack(x)
    weights = [rng.normal(0, 0.6, w.shape).astype("float32") for w in stack.get_weights()]
    stack.set_weights(weights)
    (trace,) = celltrace.trace_stack(stack, x)
    if cell == "lstm":
        expected = _transcribed_lstm(x[0], *weights, steps=4)
    else:
        names = [w.path.rsplit("/", 1)[-1] for w in stack.weights]
        by_name = dict(zip(names, weights))
        peep = {g: by_name[f"peephole_{g}"] for g in "ifo"}
        expected = _transcribed_peephole(
            x[0], by_name["kernel"], by_name["recurrent_kernel"], by_name["bias"], peep, steps=4
        )
    for t, row in enumerate(expected):
        for name, value in row.items():
            np.testing.assert_allclose(trace.values[name][t], value, rtol=1e-4, atol=1e-5)


def test_a_backward_layer_is_reported_in_the_sequences_own_order():
    model, ids, _ = _char_model(TEXT, 4, bidirectional=True)
    stack = model.get_layer("lstm")
    x = celltrace.stack_inputs(model, stack)(ids)
    forward, backward = celltrace.trace_stack(stack, x)
    own = np.asarray(stack(x))[0]  # forward outputs, then backward ones, both in text order
    np.testing.assert_allclose(backward.values["output"], own[:, 4:], atol=1e-4)
    np.testing.assert_allclose(forward.values["output"], own[:, :4], atol=1e-4)


def test_probes_hold_the_state_after_each_character():
    found = probes.char_probes('a "b" (c)\nde', {"vowel": probes.parse_regex("vowel=[ae]")[1]})
    assert found["inside quotes"].tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert found["inside brackets"].tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    assert found["position in the line"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert found["start of a word"].tolist() == [1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0]
    assert found["vowel"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]


def test_token_probes_and_chunk_tags():
    found = probes.token_probes(["He", "said", "``", "go", "''", "(", "now", ")"], {})
    assert found["inside quotes"].tolist() == [0, 0, 1, 1, 0, 0, 0, 0]
    assert found["inside brackets"].tolist() == [0, 0, 0, 0, 0, 1, 1, 0]
    tags = [["B-NP", "I-NP", "O", "B-VP"]]
    assert probes.is_iob(tags) and not probes.is_iob([["NOUN", "VERB"]])
    assert probes.label_probes(tags, chunks=True)["inside a chunk"][0].tolist() == [1, 1, 0, 1]
    assert set(probes.label_probes([["NOUN", "VERB", "NOUN"]], chunks=False)) == {
        "label=NOUN",
        "label=VERB",
    }


@pytest.mark.parametrize(
    "spec, expected",
    [("bad=(", "valid regex"), ("empty=x*", "does not match the empty string")],
)
def test_bad_probe_regexes_are_refused(spec, expected):
    with pytest.raises(UserError, match=expected):
        probes.parse_regex(spec)


def test_a_model_without_recurrent_layers_is_refused():
    inputs = keras.Input((None,), dtype="int32")
    model = keras.Model(inputs, keras.layers.Embedding(5, 3)(inputs))
    seq = inspection.Sequence(np.ones((1, 4), np.int32), list("abcd"), "chars")
    with pytest.raises(UserError, match="expected a model with recurrent layers"):
        inspection.inspect_model(model, [seq])


def test_layer_out_of_range_and_empty_text_are_refused():
    model, ids, _ = _char_model(TEXT, 3)
    seq = inspection.Sequence(ids, list(TEXT), "chars")
    with pytest.raises(UserError, match="expected --layer between 1 and 1"):
        inspection.inspect_model(model, [seq], layer=2)
    with pytest.raises(UserError, match="found an empty input"):
        inspection.check_texts(["fine", "  "])


def test_cli_refuses_a_folder_that_is_not_a_run_in_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    result = CliRunner().invoke(main, ["inspect", str(tmp_path), "some text"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"Error: expected a run directory with run.json, found none in {tmp_path}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
