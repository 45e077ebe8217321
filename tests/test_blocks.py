"""Shared blocks: masking is honoured, shapes are right, the fast-kernel settings are kept."""

import warnings

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from lstm_recipes import blocks  # noqa: E402
from lstm_recipes.metrics import classification_metrics  # noqa: E402


def test_masked_pooling_ignores_padding():
    x = np.array([[[1.0, -5.0], [3.0, 2.0], [100.0, 100.0]]], "float32")
    mask = np.array([[True, True, False]])
    pooled = blocks.MaskedPooling("max_mean")(x, mask=mask).numpy()
    np.testing.assert_allclose(pooled, [[3.0, 2.0, 2.0, -1.5]])


def test_masked_pooling_of_an_all_padding_row_is_zero():
    x = np.full((1, 2, 3), 7.0, "float32")
    pooled = blocks.MaskedPooling("max_mean")(x, mask=np.zeros((1, 2), bool)).numpy()
    np.testing.assert_array_equal(pooled, np.zeros((1, 6)))


def test_padding_does_not_change_the_encoding():
    # Right padding + mask must give the same summary as the unpadded sequence.
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 4, mask_zero=True)(tokens)
    y = blocks.sequence_summary(x, "last", dict(units=3, num_layers=2, bidirectional=True))
    model = keras.Model(tokens, y)
    short = model(np.array([[5, 6, 7]])).numpy()
    padded = model(np.array([[5, 6, 7, 0, 0, 0]])).numpy()
    np.testing.assert_allclose(short, padded, atol=1e-6)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_stacked_lstm_shapes_and_states(bidirectional):
    width = 4 * (2 if bidirectional else 1)
    encoder = blocks.StackedLSTM(
        4, num_layers=2, bidirectional=bidirectional, residual=True, return_state=True
    )
    out, h, c = encoder(np.zeros((2, 5, 3), "float32"))
    assert out.shape == (2, 5, width) and h.shape == (2, width) and c.shape == (2, width)
    lstms = [layer for layer in encoder._flatten_layers() if isinstance(layer, keras.layers.LSTM)]
    assert lstms and all(
        layer.recurrent_dropout == 0
        and not layer.unroll
        and layer.use_bias
        and layer.activation is keras.activations.tanh
        for layer in lstms
    )


def test_fast_path_guard_names_each_slow_layer_and_reason_once():
    from lstm_recipes import fastpath

    def model(**kwargs):
        x = keras.Input((None, 3))
        return keras.Model(x, blocks.StackedLSTM(4, num_layers=2, **kwargs)(x), name="m")

    assert fastpath.slow_layers(model()) == []
    slow = model(recurrent_dropout=0.2)
    found = fastpath.slow_layers(slow)
    # Both directions of both layers, found inside StackedLSTM and Bidirectional.
    assert len(found) == 4 and all("recurrent_dropout=0.2" in reason for _, reason in found)
    assert {path.rsplit("/", 1)[-1] for path, _ in found} == {
        "forward_lstm_0",
        "backward_lstm_0",
        "forward_lstm_1",
        "backward_lstm_1",
    }
    with pytest.warns(UserWarning, match=r"layers m/.*forward_lstm_0.*recurrent_dropout=0.2"):
        fastpath.check_model(slow)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastpath.check_model(slow)  # the same layers and reason: no second warning
    x = keras.Input((None, 3))
    odd = keras.Model(
        x,
        [
            keras.layers.LSTM(2, activation="relu", name="relu_lstm")(x),
            keras.layers.GRU(2, reset_after=False, name="old_gru")(x),
            keras.layers.SimpleRNN(2, name="plain")(x),
            blocks.StackedLSTM(2, bidirectional=False, cell="nog", name="variant")(x),
        ],
    )
    reasons = dict(fastpath.slow_layers(odd))
    assert "activation=relu" in reasons[f"{odd.name}/relu_lstm"]
    assert "reset_after=False" in reasons[f"{odd.name}/old_gru"]
    assert "no cuDNN kernel" in reasons[f"{odd.name}/plain"]
    assert "LSTMVariantCell" in reasons[f"{odd.name}/variant/lstm_0"]


def test_classification_metrics_match_hand_counts():
    # truth:      a a a b b c
    # predicted:  a a b b c c
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # F1: a = 2*1*(2/3)/(1+2/3) = 0.8; b = 0.5; c = 2*0.5*1/1.5 = 2/3
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_token_dropout_never_touches_padding_and_is_off_at_inference():
    ids = np.array([[5, 6, 7, 8, 0, 0]] * 200, "int32")
    layer = blocks.TokenDropout(0.5, seed=1)
    dropped = np.asarray(layer(ids, training=True))
    assert (dropped[:, 4:] == 0).all()
    replaced = (dropped[:, :4] == 1).mean()
    assert 0.4 < replaced < 0.6
    assert (np.asarray(layer(ids, training=False)) == ids).all()


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple_rnn", "nig", "fgr"])
def test_stack_step_equals_a_one_step_sequence(cell):
    # A search feeds a token at a time through StackedLSTM.step: it must give what the layers
    # give a one-step sequence (the fused LSTM's step its very numbers).
    from lstm_recipes import cells

    stack = blocks.StackedLSTM(6, 2, bidirectional=False, cell=cell, residual=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 1, 6)).astype("float32")
    stack.build(x.shape)
    n = cells.num_states(cell)
    states = [[rng.normal(size=(4, 6)).astype("float32") for _ in range(n)] for _ in range(2)]
    want, want_states = stack.run(x, initial_states=states)
    got, got_states = stack.step(x[:, 0], states)
    tolerance = 0 if cell == "lstm" else 1e-6
    np.testing.assert_allclose(got, want[:, 0], atol=tolerance)
    for layer_got, layer_want in zip(got_states, want_states):
        assert len(layer_got) == len(layer_want) == n
        for a, b in zip(layer_got, layer_want):
            np.testing.assert_allclose(a, b, atol=tolerance)


def test_a_bidirectional_stack_has_no_step():
    stack = blocks.StackedLSTM(4, 1, bidirectional=True)
    stack.build((2, 1, 3))
    with pytest.raises(ValueError, match="bidirectional stack has no step"):
        stack.step(np.zeros((2, 3), "float32"), [[np.zeros((2, 4), "float32")] * 2])
