"""decoding.greedy and beam_search against NumPy references and brute force."""

import itertools

import numpy as np
import tensorflow as tf

from lstm_recipes import decoding

V, H, END = 5, 6, 2


def random_step(seed: int):
    """A small random recurrent step (TF) and the same step in NumPy."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(V, H)).astype("float32")
    rec = rng.normal(size=(H, H)).astype("float32") * 0.5
    out = rng.normal(size=(H, V)).astype("float32") * 2

    def step_tf(tokens, state, constants):
        h = tf.tanh(tf.gather(emb, tokens) + state @ rec + constants)
        return h @ out, h

    def step_np(token, h, constant):
        h = np.tanh(emb[token] + h @ rec + constant)
        return h @ out, h

    return step_tf, step_np


def log_softmax(x):
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def test_beam_width_one_is_the_greedy_reference():
    step_tf, step_np = random_step(0)
    batch, max_length = 7, 9
    rng = np.random.default_rng(1)
    h0 = rng.normal(size=(batch, H)).astype("float32")
    const = rng.normal(size=(batch, H)).astype("float32")
    start = np.array([1] * batch, "int32")
    got = decoding.greedy(step_tf, tf.constant(h0), tf.constant(const), start, END, max_length)
    beam1 = decoding.beam_search(
        step_tf, tf.constant(h0), tf.constant(const), start, END, max_length, 1, 0.6
    )
    np.testing.assert_array_equal(got.numpy(), beam1.numpy())
    for row in range(batch):
        h, token, expected = h0[row], 1, []
        for _ in range(max_length):
            logits, h = step_np(token, h, const[row])
            token = int(np.argmax(logits))
            expected.append(token)
            if token == END:
                break
        decoded = list(got.numpy()[row])
        assert decoded[: len(expected)] == expected
        assert all(t == END for t in decoded[len(expected) :])


def test_wide_beam_finds_the_exact_best_hypothesis():
    # With a beam as wide as every possible hypothesis, beam search is exhaustive search.
    step_tf, step_np = random_step(3)
    max_length = 3
    rng = np.random.default_rng(4)
    for row in range(4):
        h0 = rng.normal(size=(1, H)).astype("float32")
        const = rng.normal(size=(1, H)).astype("float32")
        best, best_score = None, -np.inf
        for seq in itertools.product(range(V), repeat=max_length):
            if END in seq:
                seq = seq[: seq.index(END) + 1]
            h, token, score = h0[0], 1, 0.0
            for t in seq:
                logits, h = step_np(token, h, const[0])
                score += log_softmax(logits)[t]
                token = t
            if score > best_score + 1e-6:
                best, best_score = seq, score
        got = decoding.beam_search(
            step_tf, tf.constant(h0), tf.constant(const), [1], END, max_length, V**max_length, 0.0
        ).numpy()[0]
        assert tuple(got[: len(best)]) == best, (row, got, best, best_score)


def test_beam_beats_greedy_when_the_first_choice_misleads():
    # Step 1: "a" (p=.6) or "b" (p=.4). After "a" every continuation has p<=.3; after "b"
    # the end has p=.99. Greedy takes "a"; a beam of 2 finds "b END" (0.396 > 0.18).
    table = np.full((V, V), 1e-3, "float32")
    table[1] = [0, 0, 0, 0.6, 0.4]
    table[3] = [0.1, 0.1, 0.3, 0.25, 0.25]
    table[4] = [0, 0, 0.99, 0.005, 0.005]
    table[2] = [0, 0, 1.0, 0, 0]
    logits = np.log(table + 1e-9)

    def step(tokens, state, constants):
        return tf.gather(logits, tokens), state

    state = tf.zeros([1, 1])
    greedy = decoding.greedy(step, state, (), [1], END, 4).numpy()[0]
    beam = decoding.beam_search(step, state, (), [1], END, 4, 2, 0.0).numpy()[0]
    assert greedy[0] == 3
    assert list(beam[:2]) == [4, END]


def test_empty_batch_and_end_mask():
    step_tf, _ = random_step(0)
    out = decoding.beam_search(
        step_tf, tf.zeros([0, H]), tf.zeros([0, H]), tf.zeros([0], tf.int32), END, 5, 3
    )
    assert out.shape[0] == 0
    mask = decoding.until_end(tf.constant([[4, 3, END, END], [END, 0, 0, 0], [3, 3, 3, 3]]), END)
    assert mask.numpy().tolist() == [
        [True, True, False, False],
        [False, False, False, False],
        [True, True, True, True],
    ]


def test_search_runs_inside_a_graph_function():
    step_tf, _ = random_step(5)

    @tf.function(autograph=False)
    def run(h0, max_length):
        return decoding.beam_search(step_tf, h0, h0, tf.fill([tf.shape(h0)[0]], 1), END, max_length)

    out = run(tf.random.normal([3, H], seed=1), tf.constant(6))
    assert out.shape[0] == 3 and out.shape[1] <= 6


def test_decode_all_times_only_the_batches_after_the_first_which_traces():
    from lstm_recipes import seq2seq

    items = [f"s{i:03d} " * (i % 7 + 1) for i in range(100)]
    timing: dict = {}
    echo = lambda rows, width: rows  # noqa: E731  (a search that returns its inputs)
    assert seq2seq.decode_all(echo, items, 1, batch=64, timing=timing) == items
    assert timing["items"] == 100 - 64 and timing["seconds"] > 0
    assert timing["per_second"] == timing["items"] / timing["seconds"]
    one: dict = {}
    seq2seq.decode_all(echo, items[:10], 1, batch=64, timing=one)
    assert one["items"] == 10, "a single batch is all there is to time"


# ----------------------------------------------------------------------------- issue #22's search


def previous_search():
    """The search before issue #22 (benchmarks/decoding_reference.py): every beam of every row
    on every step. The faster search must give its very tokens."""
    import importlib.util

    from conftest import REPO

    path = REPO / "benchmarks" / "decoding_reference.py"
    spec = importlib.util.spec_from_file_location("decoding_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_blocked_top_k_equals_top_k_with_ties_and_masked_values():
    rng = np.random.default_rng(0)
    for trial in range(60):
        rows, n = int(rng.integers(1, 5)), int(rng.integers(1, 12_000))
        k = min(int(rng.integers(1, 6)), n)
        x = rng.normal(size=(rows, n)).astype("float32")
        if trial % 3 == 0:  # many equal values, across blocks
            x = np.round(x * 2) / 2
        if trial % 4 == 0:  # what a finished hypothesis contributes: -1e9 almost everywhere
            x[:, rng.integers(0, n, n // 2)] = -1e9
        want = tf.math.top_k(x, k)
        got = decoding.top_k(tf.constant(x), k)
        np.testing.assert_array_equal(got[0].numpy(), want.values.numpy(), f"trial {trial}")
        np.testing.assert_array_equal(got[1].numpy(), want.indices.numpy(), f"trial {trial}")


def _wide_step(seed: int, vocab: int, width: int = 16):
    # A step over a vocabulary long enough for the blocked top-k, with features and a
    # separate projection (what the attention decoder gives the search).
    rng = np.random.default_rng(seed)
    emb = tf.constant(rng.normal(size=(vocab, width)).astype("float32"))
    rec = tf.constant(rng.normal(size=(width, width)).astype("float32") * 0.5)
    out = tf.constant(rng.normal(size=(width, vocab)).astype("float32") * 3)
    end_bias = np.zeros(vocab, "float32")
    # Rows end after a few steps, at different steps (the best of 9,000 logits is far higher).
    end_bias[END] = 2.0 if vocab < 100 else 28.0

    def features(tokens, state, constants):
        h = tf.tanh(tf.gather(emb, tokens) + state @ rec + constants)
        return h, h

    def project(h):
        return h @ out + end_bias

    def step(tokens, state, constants):
        h, state = features(tokens, state, constants)
        return project(h), state

    return step, features, project


def test_search_gives_the_previous_search_tokens_for_every_width():
    reference = previous_search()
    rng = np.random.default_rng(3)
    for seed, vocab in ((0, 5), (1, 40), (2, 9000)):
        step, features, project = _wide_step(seed, vocab)
        batch = 11
        h0 = tf.constant(rng.normal(size=(batch, 16)).astype("float32"))
        const = tf.constant(rng.normal(size=(batch, 16)).astype("float32"))
        start = tf.fill([batch], 1)
        for width in (1, 2, 4, 7):
            args = (h0, const, start, END, 12)
            want = reference._beam_search(step, *args, width, 0.6).numpy()
            got = decoding.beam_search(step, *args, width, 0.6).numpy()
            np.testing.assert_array_equal(got, want, f"vocab {vocab}, width {width}")
            projected = decoding.beam_search(features, *args, width, 0.6, project=project)
            np.testing.assert_array_equal(projected.numpy(), want, f"vocab {vocab}, {width}")
            # Rows ended at different steps: the set-aside rows were exercised.
            lengths = decoding.until_end(tf.constant(want), END).numpy().sum(-1)
            assert len(set(lengths.tolist())) > 1, (vocab, width, lengths)


def test_side_by_side_loops_give_one_loops_ids_padded_with_the_end_marker():
    calls = []

    def search(lengths):
        # Each row writes its own number of 7s, then the end marker 3; as many steps as the
        # longest row of the slice searched.
        calls.append(int(tf.shape(lengths)[0]))
        steps = tf.range(tf.reduce_max(lengths))[tf.newaxis]
        return tf.where(steps < lengths[:, tf.newaxis], 7, 3)

    lengths = tf.constant([1, 5, 2, 2, 9, 1, 3, 4, 2, 6])
    whole = search(lengths).numpy()
    calls.clear()
    split = decoding.side_by_side(search, (lengths,), 3, loops=2, least=4).numpy()
    np.testing.assert_array_equal(split, whole)
    assert calls == [5, 5]  # two slices; the second's 6 steps padded to 9
    calls.clear()
    few = decoding.side_by_side(search, (lengths[:7],), 3, loops=2, least=4).numpy()
    np.testing.assert_array_equal(few, whole[:7])
    assert calls == [7]  # under 2 x 4 rows: one loop
