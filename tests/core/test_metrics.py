"""Every metric against values computed by hand on small cases (docs/metrics.md)."""

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from multilabel_llm.core.metrics import (
    NLL_CLIP,
    MetricSettings,
    alignment_scores,
    bootstrap_ci,
    example_f1_per_example,
    f1_counts,
    l1_per_example,
    macro_f1_from_counts,
    micro_f1_from_counts,
    nll_per_example,
    predicted_sets,
    score_examples,
)

NEG_LOG_EPS = -math.log(NLL_CLIP)  # 18.420680...


def test_multilabel_nll_is_per_label_bernoulli_cross_entropy():
    q = [[0.8, 0.1]]
    h = [[1.0, 0.5]]
    # -log .8 - (.5 log .1 + .5 log .9) = 0.2231436 + 1.1512925 + 0.0526803
    assert nll_per_example(q, h, multilabel=True)[0] == pytest.approx(1.4271164, abs=1e-6)


def test_multilabel_nll_of_hard_labels_is_minus_log_likelihood_of_the_gold_set():
    # gold set {a}: likelihood of G (and of its complement) = .9 * (1 - .2)
    q = [[0.9, 0.2]]
    h = [[1.0, 0.0]]
    assert nll_per_example(q, h, True)[0] == pytest.approx(-math.log(0.9 * 0.8), abs=1e-9)


def test_hard_prediction_nll_is_minus_log_eps_times_l1_as_in_table2():
    # Table 2's hard-prediction rows satisfy NLL = 18.42 * L1 (24.11 = 18.42 * 1.31);
    # this definition reproduces that identity exactly.
    eps = NLL_CLIP
    q = np.array([[1 - eps, eps, eps], [eps, 1 - eps, eps]])
    h = np.array([[1.0, 0.0, 0.5], [1 / 3, 2 / 3, 0.0]])
    nll = nll_per_example(q, h, True)
    l1 = l1_per_example(q, h)
    assert nll[0] == pytest.approx(0.5 * NEG_LOG_EPS, rel=1e-6)
    assert nll == pytest.approx(NEG_LOG_EPS * l1, rel=1e-6)


def test_single_label_nll_is_cross_entropy_with_human_distribution():
    q = [[0.7, 0.2, 0.1]]
    h = [[2 / 3, 1 / 3, 0.0]]
    # -(2/3 log .7 + 1/3 log .2) = 0.2377833 + 0.5364793
    assert nll_per_example(q, h, multilabel=False)[0] == pytest.approx(0.7742626, abs=1e-6)


def test_nll_clips_at_nll_clip():
    assert nll_per_example([[0.0, 1.0]], [[1.0, 0.0]], False)[0] == pytest.approx(NEG_LOG_EPS)
    # multi-label: q = 1 for an absent label costs -log(eps) too
    assert nll_per_example([[1.0]], [[0.0]], True)[0] == pytest.approx(NEG_LOG_EPS, rel=1e-6)
    # a custom clip
    assert nll_per_example([[0.0]], [[1.0]], True, nll_clip=1e-3)[0] == pytest.approx(
        -math.log(1e-3)
    )


def test_l1_by_hand():
    q = [[0.8, 0.1], [0.4, 0.6]]
    h = [[1.0, 0.5], [0.0, 1.0]]
    assert l1_per_example(q, h) == pytest.approx([0.6, 0.8])
    single = l1_per_example([[0.7, 0.2, 0.1]], [[2 / 3, 1 / 3, 0.0]])
    assert single[0] == pytest.approx(0.2666667, abs=1e-6)


def test_predicted_sets_thresholds_and_argmax():
    q = [[0.6, 0.5, 0.2], [0.1, 0.49, 0.0]]
    assert predicted_sets(q, True).tolist() == [[1, 1, 0], [0, 0, 0]]
    assert predicted_sets(q, True, threshold=0.55).tolist() == [[1, 0, 0], [0, 0, 0]]
    single = [[0.2, 0.5, 0.3], [NLL_CLIP, NLL_CLIP, NLL_CLIP], [0.5, 0.5, 0.0], [1 / 3] * 3]
    # a unique argmax; a shared maximum (all-eps unparseable hard prediction, a tie, the
    # uniform distribution) predicts nothing
    assert predicted_sets(single, False).tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]


PRED = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0]])
GOLD = np.array([[0, 1, 1], [0, 0, 0], [0, 0, 0], [1, 0, 0]])


def test_example_f1_by_hand():
    # {a,b} vs {b,c}: 2*1/4; {} vs {}: 1; {a} vs {}: 0; {a} vs {a}: 1
    assert example_f1_per_example(PRED, GOLD) == pytest.approx([0.5, 1.0, 0.0, 1.0])
    sk = f1_score(GOLD, PRED, average="samples", zero_division=1)
    assert example_f1_per_example(PRED, GOLD).mean() == pytest.approx(sk)


def test_micro_macro_f1_by_hand():
    counts = f1_counts(PRED, GOLD).sum(axis=1)  # (3, L)
    # label a: tp 1 fp 2 fn 0 -> 0.5; b: tp 1 -> 1; c: fn 1 -> 0
    assert counts.tolist() == [[1, 1, 0], [2, 0, 0], [0, 0, 1]]
    assert micro_f1_from_counts(counts) == pytest.approx(4 / 7)
    assert macro_f1_from_counts(counts) == pytest.approx(0.5)
    assert micro_f1_from_counts(counts) == pytest.approx(
        f1_score(GOLD, PRED, average="micro", zero_division=0)
    )
    assert macro_f1_from_counts(counts) == pytest.approx(
        f1_score(GOLD, PRED, average="macro", zero_division=0)
    )


def test_alignment_scores_multilabel_end_to_end():
    q = np.array([[0.6, 0.5, 0.2], [0.1, 0.2, 0.3], [0.9, 0.1, 0.1], [0.7, 0.0, 0.4]])
    h = np.array([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    out = alignment_scores(q, h, GOLD, True)
    assert out["example_f1"] == pytest.approx(0.625)
    assert out["micro_f1"] == pytest.approx(4 / 7)
    assert out["macro_f1"] == pytest.approx(0.5)
    assert out["l1"] == pytest.approx(np.abs(q - h).sum(axis=1).mean())
    # row 2: -(log .9 + log .8 + log .7)
    per = nll_per_example(q, h, True)
    assert per[1] == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.7)))


def test_single_label_scores_are_accuracy_like():
    q = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [1 / 3, 1 / 3, 1 / 3]])
    gold = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    h = np.array([[1.0, 0.0, 0.0], [1 / 3, 2 / 3, 0.0], [0.0, 0.0, 1.0]])
    out = alignment_scores(q, h, gold, False)
    # argmax: a (right), c (wrong), none (uniform: no prediction, wrong)
    assert out["example_f1"] == pytest.approx(1 / 3)
    # tp 1, fp 1, fn 2 -> 2 / (2 + 1 + 2)
    assert out["micro_f1"] == pytest.approx(2 / 5)
    # per class F1: a: tp 1 -> 1; b: fn 1 -> 0; c: fp 1, fn 1 -> 0
    assert out["macro_f1"] == pytest.approx(1 / 3)
    nll = [-math.log(0.7), -(math.log(0.1) / 3 + 2 * math.log(0.3) / 3), -math.log(1 / 3)]
    assert out["nll"] == pytest.approx(np.mean(nll))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        nll_per_example([[0.5, 0.5]], [[0.5]], True)
    with pytest.raises(ValueError, match="NaN"):
        l1_per_example([[np.nan]], [[0.5]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        l1_per_example([[1.5]], [[0.5]])
    with pytest.raises(ValueError, match="nll_clip"):
        MetricSettings(nll_clip=0.0)


def test_bootstrap_by_hand_and_seeded():
    # two examples with NLL 0 and 1: resampled means lie in {0, .5, 1}
    scores = score_examples([[0.5], [0.5]], [[0.5], [0.5]], [[0], [0]], True, ids=["x", "y"])
    scores.nll = np.array([0.0, 1.0])
    ci = bootstrap_ci(scores, n_boot=2000, seed=3)
    mean, lo, hi = ci["nll"]
    assert mean == 0.5 and lo == 0.0 and hi == 1.0
    # constant per-example values give a degenerate interval at the value
    mean, lo, hi = ci["l1"]
    assert mean == lo == hi == 0.0
    assert bootstrap_ci(scores, 200, seed=3) == bootstrap_ci(scores, 200, seed=3)


def test_bootstrap_ci_brackets_point_estimate():
    rng = np.random.default_rng(0)
    q = rng.uniform(size=(60, 4))
    h = rng.uniform(size=(60, 4))
    gold = (h > 0.5).astype(int)
    scores = score_examples(q, h, gold, True)
    for metric, (mean, lo, hi) in bootstrap_ci(scores, 500, seed=1).items():
        assert lo <= mean <= hi, metric
        assert hi - lo > 0, metric
