"""lstm_recipes.crf: the CRF loss, Viterbi and forward-backward marginals against brute force."""

import itertools

import numpy as np
import tensorflow as tf

from lstm_recipes import crf


def test_crf_loss_equals_brute_force_and_viterbi_finds_the_best_path():
    n = 3
    layer = crf.CRF(n)
    layer.build((None, None, n + 1))
    rng = np.random.default_rng(0)
    layer.transitions.assign(rng.normal(size=(n, n)).astype("float32"))
    layer.start.assign(rng.normal(size=n).astype("float32"))
    layer.end.assign(rng.normal(size=n).astype("float32"))
    emissions = rng.normal(size=(2, 4, n + 1)).astype("float32")
    y = np.array([[1, 3, 2, 2], [2, 1, 0, 0]], "int32")  # 0 pads
    trans, start, end = (v.numpy() for v in (layer.transitions, layer.start, layer.end))

    def score(row, path):
        e = emissions[row, :, 1:]
        s = start[path[0]] + end[path[-1]] + sum(e[t, k] for t, k in enumerate(path))
        return s + sum(trans[a, b] for a, b in zip(path, path[1:]))

    nll, best = [], []
    for row in range(2):
        length = int((y[row] > 0).sum())
        paths = list(itertools.product(range(n), repeat=length))
        scores = np.array([score(row, p) for p in paths])
        log_z = np.log(np.exp(scores - scores.max()).sum()) + scores.max()
        nll.append(log_z - score(row, tuple(y[row, :length] - 1)))
        best.append(paths[int(scores.argmax())])
    np.testing.assert_allclose(
        float(layer.loss(tf.constant(y), tf.constant(emissions))), np.mean(nll), rtol=1e-5
    )
    allowed = [[True] * n for _ in range(n)]
    path = crf.viterbi(emissions[:, :, 1:], y > 0, allowed, [True] * n, trans, start, end).numpy()
    assert tuple(path[0]) == best[0] and tuple(path[1, :2]) == best[1]


def test_viterbi_equals_brute_force_under_constraints():
    labels = ["O", "B-NP", "I-NP", "B-VP", "I-VP"]
    allowed, start = crf.chunk_constraints(labels)
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(5), size=(3, 4))).astype("float32")
    mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]], bool)
    got = crf.viterbi(lp, mask, allowed, start).numpy()
    for row in range(3):
        n = int(mask[row].sum())
        best, best_score = None, -np.inf
        for path in itertools.product(range(5), repeat=n):
            if not start[path[0]] or not all(allowed[a][b] for a, b in zip(path, path[1:])):
                continue
            score = sum(lp[row, t, k] for t, k in enumerate(path))
            if score > best_score:
                best, best_score = path, score
        assert tuple(got[row, :n]) == best
    assert crf.chunk_constraints(["NOUN", "VERB"]) is None
    iob2 = crf.chunk_constraints(["O", "B-NP", "I-NP", "I-VP"])
    assert iob2[0][0][2] is False and iob2[0][1][2] is True and iob2[0][1][3] is False


def test_marginals_equal_brute_force_over_all_paths():
    n, steps = 3, 4
    rng = np.random.default_rng(1)
    emissions = rng.normal(size=(2, steps, n)).astype("float32")
    transitions = rng.normal(size=(n, n)).astype("float32")
    start, end = rng.normal(size=n).astype("float32"), rng.normal(size=n).astype("float32")
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    # Label 2 may not follow label 0: hard limits combine with the learned scores.
    allowed = [[True, True, False], [True] * 3, [True] * 3]
    got = crf.marginals(emissions, mask, allowed, [True] * 3, transitions, start, end).numpy()
    for row in range(2):
        length = int(mask[row].sum())
        expected = np.zeros((length, n))
        for path in itertools.product(range(n), repeat=length):
            if any(not allowed[a][b] for a, b in zip(path, path[1:])):
                continue
            score = start[path[0]] + end[path[-1]]
            score += sum(emissions[row, t, k] for t, k in enumerate(path))
            score += sum(transitions[a, b] for a, b in zip(path, path[1:]))
            for t, k in enumerate(path):
                expected[t, k] += np.exp(score)
        expected /= expected.sum(-1, keepdims=True)
        np.testing.assert_allclose(got[row, :length], expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
    # Padding steps repeat the last real step's marginals.
    np.testing.assert_allclose(got[1, 2:], np.stack([got[1, 1]] * 2), atol=1e-6)


def test_marginals_without_transitions_are_a_softmax_of_emissions():
    emissions = np.random.default_rng(2).normal(size=(1, 5, 4)).astype("float32")
    got = crf.marginals(emissions, np.ones((1, 5), bool)).numpy()
    np.testing.assert_allclose(got, tf.nn.softmax(emissions).numpy(), atol=1e-5)


def test_follows_constraints_refuses_iob1():
    labels = ["B-NP", "I-NP", "O"]
    assert crf.follows_constraints(labels, [["B-NP", "I-NP", "O"]])
    assert not crf.follows_constraints(labels, [["O", "I-NP"]])
    assert not crf.follows_constraints(["NOUN", "VERB"], [["NOUN"]])
