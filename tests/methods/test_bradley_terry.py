"""Bradley–Terry: hand-solvable cases and recovery of known scores from synthetic pairs."""

import itertools
import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import expit

from multilabel_llm.methods.bradley_terry import (
    BTSettings,
    bt_loss_and_grad,
    fit_bradley_terry,
    fit_bradley_terry_position,
    hard_outcomes,
)

PAIR = np.array([[0, 1]])


def all_pairs(k):
    return np.array(list(itertools.combinations(range(k), 2)))


def test_two_items_without_penalty_recover_the_logit():
    # p = .8 → s0 - s1 = log(.8/.2) = log 4
    for optimizer in ("lbfgs", "adam"):
        s = fit_bradley_terry(
            [0.8], PAIR, 2, BTSettings(l2=0.0, optimizer=optimizer, max_iter=20000)
        )
        assert s[0] - s[1] == pytest.approx(math.log(4), abs=1e-4 if optimizer == "lbfgs" else 2e-2)


def test_two_items_with_l2_match_the_hand_derived_optimum():
    # With s0 = -s1 = d/2 the loss is BCE(.8, σ(d)) + λ d²/2; the optimum solves σ(d) - .8 + λ d = 0.
    lam = 0.01
    d_star = brentq(lambda d: expit(d) - 0.8 + lam * d, 0.0, 5.0)
    assert d_star == pytest.approx(1.3065, abs=1e-3)  # slightly below log 4 = 1.3863
    exact = fit_bradley_terry([0.8], PAIR, 2, BTSettings(l2=lam, optimizer="lbfgs"))
    assert exact[0] - exact[1] == pytest.approx(d_star, abs=1e-5)
    assert exact.sum() == pytest.approx(0.0, abs=1e-5)  # the penalty centres the scores
    adam = fit_bradley_terry([0.8], PAIR, 2, BTSettings(l2=lam, seed=4))
    assert adam[0] - adam[1] == pytest.approx(d_star, abs=2e-2)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    pairs = all_pairs(4)
    probs = rng.uniform(size=(2, len(pairs)))
    s = rng.normal(size=(2, 4))
    _, grad = bt_loss_and_grad(s, probs, pairs, 0.01)
    h = 1e-6
    for i in range(2):
        for k in range(4):
            sp, sm = s.copy(), s.copy()
            sp[i, k] += h
            sm[i, k] -= h
            num = (
                bt_loss_and_grad(sp, probs, pairs, 0.01)[0][i]
                - bt_loss_and_grad(sm, probs, pairs, 0.01)[0][i]
            ) / (2 * h)
            assert grad[i, k] == pytest.approx(num, abs=1e-5)


def both_orders(k):
    pairs = all_pairs(k)
    return np.concatenate([pairs, pairs[:, ::-1]])


def test_position_term_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    pairs = both_orders(4)
    probs = rng.uniform(size=(2, len(pairs)))
    s = rng.normal(size=(2, 5))  # 4 scores + the position term
    _, grad = bt_loss_and_grad(s, probs, pairs, 0.01, position_term=True)
    h = 1e-6
    for i in range(2):
        for k in range(5):
            sp, sm = s.copy(), s.copy()
            sp[i, k] += h
            sm[i, k] -= h
            num = (
                bt_loss_and_grad(sp, probs, pairs, 0.01, True)[0][i]
                - bt_loss_and_grad(sm, probs, pairs, 0.01, True)[0][i]
            ) / (2 * h)
            assert grad[i, k] == pytest.approx(num, abs=1e-5)


def test_position_term_recovers_a_known_home_advantage():
    truth = np.array([[1.5, 0.5, 0.0, -0.7, -1.3], [-2.0, 1.0, 0.3, -0.4, 0.6]])
    truth = truth - truth.mean(axis=1, keepdims=True)
    home = np.array([-1.2, 0.7])  # example 0 prefers answer "b", example 1 answer "a"
    pairs = both_orders(5)
    probs = expit(truth[:, pairs[:, 0]] - truth[:, pairs[:, 1]] + home[:, None])
    exact, h = fit_bradley_terry_position(probs, pairs, 5, BTSettings(l2=0.0, optimizer="lbfgs"))
    exact -= exact.mean(axis=1, keepdims=True)
    assert exact == pytest.approx(truth, abs=1e-4)
    assert h == pytest.approx(home, abs=1e-4)
    adam, h_adam = fit_bradley_terry_position(probs, pairs, 5, BTSettings(l2=0.0))
    adam -= adam.mean(axis=1, keepdims=True)
    assert np.abs(adam - truth).max() < 0.05 and np.abs(h_adam - home).max() < 0.05
    # the same model asked in label order only: a plain fit absorbs the preference into
    # the scores
    s_one = fit_bradley_terry(probs[:, :10], pairs[:10], 5, BTSettings(l2=0.0, optimizer="lbfgs"))
    s_one -= s_one.mean(axis=1, keepdims=True)
    assert np.abs(s_one - truth).max() > 0.5
    # one example in, a vector and a float out
    one, h_one = fit_bradley_terry_position(probs[0], pairs, 5, BTSettings(optimizer="lbfgs"))
    assert one.shape == (5,) and isinstance(h_one, float) and h_one == pytest.approx(-1.2, abs=0.05)


def test_position_term_needs_both_orders_and_stays_finite_on_hard_outcomes():
    with pytest.raises(ValueError, match="both orders.*one order only, e.g. \\(0, 1\\)"):
        fit_bradley_terry_position(np.full(6, 0.3), all_pairs(4), 4)
    # every answer "b": without the penalty h would run to minus infinity
    s, h = fit_bradley_terry_position(np.zeros(12), both_orders(4), 4, BTSettings())
    assert np.isfinite(h) and h < -1.0 and np.abs(s).max() < 1e-3


def test_recovers_known_scores_from_synthetic_pairwise_probabilities():
    truth = np.array(
        [[1.5, 0.5, 0.0, -0.7, -1.3], [-2.0, 1.0, 0.3, -0.4, 0.6], [0.2, -0.2, 3.0, -1.0, -2.0]]
    )
    truth = truth - truth.mean(axis=1, keepdims=True)
    pairs = all_pairs(5)
    probs = expit(truth[:, pairs[:, 0]] - truth[:, pairs[:, 1]])
    exact = fit_bradley_terry(probs, pairs, 5, BTSettings(l2=0.0, optimizer="lbfgs"))
    exact -= exact.mean(axis=1, keepdims=True)
    assert exact == pytest.approx(truth, abs=1e-4)
    adam = fit_bradley_terry(probs, pairs, 5, BTSettings(l2=0.0, seed=0, max_iter=5000))
    adam -= adam.mean(axis=1, keepdims=True)
    assert np.abs(adam - truth).max() < 0.05
    # the ranking is exact, and differences (what the methods use) are recovered
    assert (np.argsort(adam, axis=1) == np.argsort(truth, axis=1)).all()


def test_default_l2_shrinks_but_keeps_order():
    truth = np.array([2.0, 0.5, -0.5, -2.0])
    pairs = all_pairs(4)
    probs = expit(truth[pairs[:, 0]] - truth[pairs[:, 1]])
    s = fit_bradley_terry(probs, pairs, 4, BTSettings())
    assert list(np.argsort(-s)) == [0, 1, 2, 3]
    assert abs(s[0] - s[3]) < abs(truth[0] - truth[3])  # shrunk by the penalty
    assert abs(s[0] - s[3]) > 0.8 * abs(truth[0] - truth[3])


def test_seeded_and_deterministic():
    pairs = all_pairs(4)
    probs = np.random.default_rng(1).uniform(size=(3, len(pairs)))
    a = fit_bradley_terry(probs, pairs, 4, BTSettings(seed=7))
    b = fit_bradley_terry(probs, pairs, 4, BTSettings(seed=7))
    c = fit_bradley_terry(probs, pairs, 4, BTSettings(seed=8))
    assert np.array_equal(a, b)
    # the problem is strictly convex, so another start lands on (nearly) the same optimum
    assert np.abs(a - c).max() < 0.05


def test_hard_outcomes_round_and_stay_finite():
    assert hard_outcomes([0.9, 0.1, 0.5, 0.51]).tolist() == [1.0, 0.0, 0.5, 1.0]
    # item 0 beats everyone: hard outcomes would diverge without the penalty
    pairs = all_pairs(3)
    s = fit_bradley_terry(hard_outcomes([0.7, 0.9, 0.6]), pairs, 3, BTSettings())
    assert np.isfinite(s).all() and s[0] > s[1] > s[2]


def test_bad_inputs():
    with pytest.raises(ValueError, match="pairs"):
        fit_bradley_terry([0.5, 0.5], PAIR, 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_bradley_terry([1.2], PAIR, 2)
    with pytest.raises(ValueError, match="itself"):
        fit_bradley_terry([0.5], np.array([[1, 1]]), 2)
    with pytest.raises(ValueError, match="optimizer"):
        BTSettings(optimizer="sgd")
