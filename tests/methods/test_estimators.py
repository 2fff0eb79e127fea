"""Distribution methods on hand-built traces and breakdown frames (values by hand)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, softmax

from multilabel_llm.core.distributions import validate_distribution
from multilabel_llm.core.traces import LabelStep, Trace, TraceMeta
from multilabel_llm.methods.bradley_terry import BTSettings
from multilabel_llm.methods.breakdown import binary_breakdown, estimate_binary, unary_breakdown
from multilabel_llm.methods.estimators import (
    compare_to_none,
    constant_distribution,
    estimate,
    fit_compare_to_none_platt,
    hard_predictions,
    max_over_generations,
)
from multilabel_llm.methods.platt import PlattScaler, PlattSettings, fit_platt, fit_temperature
from multilabel_llm.methods.registry import PROBABILITY_FLOOR

LABELS = ["a", "b", "c"]
META = TraceMeta(labels=LABELS)  # score order: a, b, c, none


def make_trace(tid, logits, label_steps, pred):
    probs = softmax(np.asarray(logits, dtype=float), axis=1).tolist() if logits else []
    return Trace(
        id=tid,
        text_out="",
        pred_labels=pred,
        label_steps=[LabelStep(step=s, label=lab) for s, lab in label_steps],
        step_logits=[list(map(float, row)) for row in logits],
        step_probs=probs,
    )


# t1: '{"label": ["a", "b"]}': step 0 is the brace, a starts at step 1, b at step 3
T1 = make_trace(
    "t1",
    [[0, 0, 0, 0], [2.0, 1.0, 0.0, 0.5], [0, 0, 0, 0], [0.0, 3.0, 1.0, 0.0]],
    [(1, "a"), (3, "b")],
    ["a", "b"],
)
T2 = make_trace("t2", [[1.0, 0.0, 0.0, 2.0]], [], None)  # unparseable, no label step
T3 = make_trace("t3", [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 4.0]], [(1, "none")], [])
TRACES = [T1, T2, T3]
IDS = ["t1", "t2", "t3"]


def values(frame):
    return frame[LABELS].to_numpy()


def test_compare_to_none_multilabel_by_hand():
    frame = compare_to_none(META, TRACES, IDS, LABELS, True)
    assert frame["id"].tolist() == IDS
    # t1 at step 1: sigmoid(2 - .5), sigmoid(1 - .5), sigmoid(0 - .5)
    assert values(frame)[0] == pytest.approx([0.8175745, 0.6224593, 0.3775407], abs=1e-6)
    # t2 has no label step: generated step 0 is used
    assert values(frame)[1] == pytest.approx(expit(np.array([-1.0, -2.0, -2.0])))
    # t3's first label step is where "none" starts (step 1)
    assert values(frame)[2] == pytest.approx(expit(np.array([-4.0, -4.0, -3.0])))


def test_compare_to_none_single_label_is_softmax_of_label_logits():
    frame = compare_to_none(META, [T1], ["t1"], LABELS, False)
    assert values(frame)[0] == pytest.approx([0.6652410, 0.2447285, 0.0900306], abs=1e-6)


def test_compare_to_none_with_scaler():
    frame = compare_to_none(META, [T1], ["t1"], LABELS, True, PlattScaler(w=2.0, b=-1.0))
    assert values(frame)[0] == pytest.approx(expit(2 * np.array([1.5, 0.5, -0.5]) - 1))


def test_hard_predictions_by_hand():
    frame = hard_predictions(TRACES, IDS, LABELS, True)
    eps = PROBABILITY_FLOOR
    assert values(frame).tolist() == [[1 - eps, 1 - eps, eps], [eps, eps, eps], [eps, eps, eps]]
    single = hard_predictions([T1], ["t1"], LABELS, False, epsilon=0.01)
    assert values(single)[0] == pytest.approx([0.99, 0.01, 0.01])  # first label only


def test_max_over_generations_by_hand():
    frame = max_over_generations(META, TRACES, IDS, LABELS, True)
    p1 = softmax([2.0, 1.0, 0.0, 0.5])
    p3 = softmax([0.0, 3.0, 1.0, 0.0])
    assert values(frame)[0] == pytest.approx(np.maximum(p1, p3)[:3])
    assert values(frame)[0][1] == pytest.approx(p3[1])  # b peaks when it is generated
    # t2: no label step -> probabilities of generated step 0
    assert values(frame)[1] == pytest.approx(softmax([1.0, 0.0, 0.0, 2.0])[:3])
    assert values(frame)[2] == pytest.approx(softmax([0.0, 0.0, 1.0, 4.0])[:3])
    # the eps floor: a label that never has mass stays at eps
    t = make_trace("x", [[-1000.0, 0.0, 0.0, 0.0]], [(0, "b")], ["b"])
    assert values(max_over_generations(META, [t], ["x"], LABELS, True))[0][0] == PROBABILITY_FLOOR


def test_missing_trace_and_unknown_labels_raise():
    with pytest.raises(ValueError, match="no trace"):
        hard_predictions(TRACES, ["t1", "zz"], LABELS, True, source="traces.jsonl.gz")
    with pytest.raises(ValueError, match="no scores for labels"):
        compare_to_none(META, TRACES, IDS, ["a", "q"], True)


def test_platt_recovers_known_parameters():
    x = np.linspace(-3, 3, 61)
    y = expit(2.0 * x - 1.0)
    exact = fit_platt(x, y, PlattSettings(optimizer="lbfgs"))
    assert (exact.w, exact.b) == pytest.approx((2.0, -1.0), abs=1e-4)
    adam = fit_platt(x, y, PlattSettings(epochs=1000, lr=0.01))
    assert (adam.w, adam.b) == pytest.approx((2.0, -1.0), abs=0.05)
    assert fit_platt(x, y) == fit_platt(x, y)  # deterministic


def test_temperature_recovers_known_scale():
    z = np.random.default_rng(0).normal(size=(40, 3))
    scaler = fit_temperature(z, softmax(3.0 * z, axis=1), PlattSettings(optimizer="lbfgs"))
    assert scaler.w == pytest.approx(3.0, abs=1e-4)
    assert scaler.transform(z[:1]).sum() == pytest.approx(1.0)


def test_fit_compare_to_none_platt_on_calibration_traces():
    # build calibration traces whose human proportions follow sigmoid(0.5 d + 0.2)
    rng = np.random.default_rng(0)
    traces, human = [], []
    for k in range(30):
        logits = rng.normal(size=4) * 2
        traces.append(make_trace(f"c{k}", [logits.tolist()], [(0, "a")], ["a"]))
        human.append(expit(0.5 * (logits[:3] - logits[3]) + 0.2))
    ids = [t.id for t in traces]
    scaler = fit_compare_to_none_platt(
        META, traces, ids, np.array(human), LABELS, True, PlattSettings(optimizer="lbfgs")
    )
    assert (scaler.w, scaler.b) == pytest.approx((0.5, 0.2), abs=1e-3)


UNARY = pd.DataFrame(
    {
        "id": ["u1"] * 4 + ["u2"] * 4,
        "label": ["a", "b", "c", "none"] * 2,
        "p_reasonable": [0.3, 0.1, 0.1, 0.9, 0.8, 0.6, 0.2, 0.1],
    }
)


def test_unary_breakdown():
    multi = unary_breakdown(UNARY, ["u1", "u2"], LABELS, True)
    assert values(multi).tolist() == [[0.3, 0.1, 0.1], [0.8, 0.6, 0.2]]
    single = unary_breakdown(UNARY, ["u1"], LABELS, False)
    assert values(single)[0] == pytest.approx([0.6, 0.2, 0.2])
    soft = unary_breakdown(UNARY, ["u1"], LABELS, False, single_label_norm="softmax")
    assert values(soft)[0] == pytest.approx(softmax([0.3, 0.1, 0.1]))
    with pytest.raises(ValueError, match="no unary score"):
        unary_breakdown(UNARY.drop(index=6), ["u2"], LABELS, True)


def binary_frame(scores, items, tid="b1", flip=()):
    rows = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            p = float(expit(scores[i] - scores[j]))
            if (items[i], items[j]) in flip:  # stored in the other order
                rows.append((tid, items[j], items[i], 1 - p))
            else:
                rows.append((tid, items[i], items[j], p))
    return pd.DataFrame(rows, columns=["id", "label_a", "label_b", "p_a"])


def test_binary_breakdown_recovers_scores_and_compares_to_none():
    items = ["a", "b", "c", "none"]
    scores = [1.0, 0.0, -2.0, -1.0]
    frame = binary_frame(scores, items, flip={("a", "none")})
    settings = BTSettings(l2=0.0, optimizer="lbfgs")
    dist = binary_breakdown(frame, ["b1"], LABELS, True, settings).frame
    # P(l) = sigmoid(s_l - s_none): sigmoid(2), sigmoid(1), sigmoid(-1)
    assert values(dist)[0] == pytest.approx([0.8807971, 0.7310586, 0.2689414], abs=1e-4)
    # single-label: softmax over the label scores, none ignored
    single = binary_breakdown(frame, ["b1"], LABELS, False, settings).frame
    assert values(single)[0] == pytest.approx(softmax([1.0, 0.0, -2.0]), abs=1e-4)


def test_binary_outcomes_variant_is_sharper_for_a_dominant_label():
    items = ["a", "b", "c", "none"]
    frame = binary_frame([1.0, 0.0, -2.0, -1.0], items)
    soft = binary_breakdown(frame, ["b1"], LABELS, True, BTSettings()).frame
    hard = binary_breakdown(frame, ["b1"], LABELS, True, BTSettings(), outcomes=True).frame
    assert values(hard)[0][0] > values(soft)[0][0]
    assert list(np.argsort(-values(hard)[0])) == [0, 1, 2]


def test_binary_missing_pair_raises():
    frame = binary_frame([1.0, 0.0, -2.0, -1.0], ["a", "b", "c", "none"]).iloc[1:]
    with pytest.raises(ValueError, match="no comparison of 'a' and 'b'"):
        binary_breakdown(frame, ["b1"], LABELS, True)


ITEMS = ["a", "b", "c", "none"]  # the order the prompt lists them in


def biased_asks(scores, home, reverse=False, tid="b1"):
    """Pairs asked in label order (or reversed) by a model that adds ``home`` to the logit of
    answering "a": P("a" | x shown first, y second) = sigmoid(s_x - s_y + home)."""
    rows = []
    for i in range(len(ITEMS)):
        for j in range(i + 1, len(ITEMS)):
            first, second = (j, i) if reverse else (i, j)
            p = float(expit(scores[first] - scores[second] + home))
            rows.append((tid, ITEMS[first], ITEMS[second], p))
    return pd.DataFrame(rows, columns=["id", "label_a", "label_b", "p_a"])


def both_asks(scores, home):
    return pd.concat([biased_asks(scores, home), biased_asks(scores, home, reverse=True)])


EXACT = BTSettings(l2=0.0, optimizer="lbfgs")


def test_one_order_measures_the_prompt_order_both_orders_cancel_it():
    # equally strong labels, a model that prefers answer "b" (home = -1.5)
    flat = [0.0, 0.0, 0.0, 0.0]
    one = binary_breakdown(biased_asks(flat, -1.5), ["b1"], LABELS, True, EXACT)
    # one order: a label wins more the later it is listed (the demo's symptom)
    v = values(one.frame)[0]
    assert v[0] < v[1] < v[2]
    assert one.bias["score_position_corr"] == pytest.approx(1.0)
    assert one.bias["mean_p_a"] == pytest.approx(expit(-1.5))
    assert one.bias["share_a"] == 0.0 and math.isnan(one.bias["position_term"])
    assert one.bias["orders"] == "one" and one.bias["combine"] == "none"
    for combine in ("average", "position_term"):
        fit = binary_breakdown(
            both_asks(flat, -1.5), ["b1"], LABELS, True, EXACT, orders="both", combine=combine
        )
        assert values(fit.frame)[0] == pytest.approx([0.5, 0.5, 0.5], abs=1e-5)
        assert math.isnan(fit.bias["score_position_corr"])  # every label scores the same
        assert fit.bias["mean_p_a"] == pytest.approx(expit(-1.5))
        assert fit.bias["n_prompts"] == 12 and fit.bias["combine"] == combine
    assert fit.bias["position_term"] == pytest.approx(-1.5, abs=1e-4)
    assert fit.position_term == pytest.approx([-1.5], abs=1e-4)


def test_both_orders_recover_known_label_strengths_under_a_position_bias():
    truth = np.array([1.0, 0.2, -0.3, -0.6])  # a > b > c > none
    want = expit(truth[:3] - truth[3])
    one = values(binary_breakdown(biased_asks(truth, -2.0), ["b1"], LABELS, True, EXACT).frame)[0]
    # one order: the last-listed label c beats a, and none (listed last) beats every label
    assert one[2] > one[0] and (one < 0.5).all()
    avg = binary_breakdown(
        both_asks(truth, -2.0), ["b1"], LABELS, True, EXACT, orders="both", combine="average"
    )
    got = values(avg.frame)[0]
    assert list(np.argsort(-got)) == [0, 1, 2] and (got > 0.5).all()
    # averaging sigmoid(d + h) and sigmoid(d - h) is odd in d: the order is exact, the
    # differences are shrunk (0.68 for 0.83), still far closer to the truth than one order
    assert np.abs(got - want).max() < 0.2 and np.abs(one - want).max() > 0.6
    pos = binary_breakdown(
        both_asks(truth, -2.0), ["b1"], LABELS, True, EXACT, orders="both", combine="position_term"
    )
    assert values(pos.frame)[0] == pytest.approx(want, abs=1e-4)
    assert pos.bias["position_term"] == pytest.approx(-2.0, abs=1e-4)
    # single-label: softmax over the label scores; none's rows are skipped
    single = binary_breakdown(
        both_asks(truth, -2.0), ["b1"], LABELS, False, EXACT, orders="both", combine="position_term"
    )
    assert values(single.frame)[0] == pytest.approx(softmax(truth[:3]), abs=1e-4)
    assert single.bias["n_prompts"] == 6


def test_estimate_binary_params_pick_the_variant_and_reject_bad_ones():
    data = both_asks([1.0, 0.2, -0.3, -0.6], -2.0)
    params = {"orders": "both", "combine": "position_term", "l2": 0.0, "optimizer": "lbfgs"}
    fit = estimate_binary(params, ["b1"], LABELS, True, data)
    assert fit.bias["position_term"] == pytest.approx(-2.0, abs=1e-4)
    frame = estimate("binary", params, ["b1"], LABELS, True, binary=data)
    assert values(frame)[0] == pytest.approx(values(fit.frame)[0])
    # the paper's default: one order, which refuses data holding both
    with pytest.raises(ValueError, match="in both orders.*params.orders: both"):
        estimate_binary({}, ["b1"], LABELS, True, data)
    with pytest.raises(ValueError, match="params.orders must be one of"):
        estimate_binary({"orders": "twice"}, ["b1"], LABELS, True, data)
    with pytest.raises(ValueError, match="params.combine must be one of"):
        estimate_binary({"orders": "both", "combine": "mean"}, ["b1"], LABELS, True, data)
    with pytest.raises(ValueError, match="combine: position_term needs params.orders: both"):
        estimate_binary({"combine": "position_term"}, ["b1"], LABELS, True, data)
    # both orders asked for, only the label-order file given
    with pytest.raises(ValueError, match="never asked with a = 'b', b = 'a'.*binary_reversed"):
        estimate_binary({"orders": "both"}, ["b1"], LABELS, True, biased_asks([0] * 4, 0.0))
    with pytest.raises(ValueError, match="asks \\('a', 'b'\\) more than once"):
        estimate_binary({}, ["b1"], LABELS, True, pd.concat([data.iloc[:1], data]))


def test_constant_distribution():
    assert values(constant_distribution(["x"], LABELS, True, 0.1)).tolist() == [[0.1] * 3]
    assert values(constant_distribution(["x"], LABELS, False))[0] == pytest.approx([1 / 3] * 3)


def test_estimate_dispatch_and_validation():
    frame = estimate(
        "hard_predictions", {"epsilon": 1e-6}, IDS, LABELS, True, traces=(META, TRACES)
    )
    assert values(frame)[0][0] == pytest.approx(1 - 1e-6)
    with pytest.raises(ValueError, match="unknown method kind"):
        estimate("bogus", {}, IDS, LABELS, True)
    with pytest.raises(ValueError, match="needs traces"):
        estimate("max_over_generations", {}, IDS, LABELS, True)
    with pytest.raises(ValueError, match="scaler"):
        estimate("compare_to_none_platt", {}, IDS, LABELS, True, traces=(META, TRACES))
    bad = pd.DataFrame({"id": ["x"], "a": [0.5], "b": [0.6], "c": [0.1]})
    with pytest.raises(ValueError, match="sums to"):
        validate_distribution(bad, LABELS, False, "bad.parquet")
    bad.loc[0, "a"] = math.nan
    with pytest.raises(ValueError, match="bad.parquet"):
        validate_distribution(bad, LABELS, True, "bad.parquet")


def test_trace_methods_read_counted_steps_only():
    """A repeated label and an unparsed output's stray token match add no step (the paper's
    code took each label's first occurrence; docs/analyses.md, counted label steps)."""
    # '["a", "b", "a"]': the repeat of a at step 2 has the largest a of all, and must not count
    rep = make_trace(
        "rep",
        [[2.0, 1.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0]],
        [(0, "a"), (1, "b"), (2, "a")],
        ["a", "b", "a"],
    )
    # unparsed 'oh, so b', traced before the engine's fallback used whole words: steps for a
    # and c at token fragments the text does not name as labels, then b
    unparsed = Trace(
        id="un",
        text_out="oh, so b",
        pred_labels=None,
        label_steps=[LabelStep(0, "a"), LabelStep(1, "c"), LabelStep(2, "b")],
        step_logits=[[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 6.0, 0.0], [0.0, 2.0, 1.0, 0.0]],
        step_probs=softmax(
            np.array([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 6.0, 0.0], [0.0, 2.0, 1.0, 0.0]]), axis=1
        ).tolist(),
    )
    frame = max_over_generations(META, [rep, unparsed], ["rep", "un"], LABELS, True)
    p0, p1 = softmax([2.0, 1.0, 0.0, 0.0]), softmax([0.0, 3.0, 0.0, 0.0])
    assert values(frame)[0] == pytest.approx(np.maximum(p0, p1)[:3])
    assert values(frame)[0][0] == pytest.approx(p0[0])  # not softmax([5, 0, 0, 0])[0] ≈ 0.98
    # only b is named ('oh, so b'): its step alone, not a's step 0 nor c's fragment at step 1
    assert values(frame)[1] == pytest.approx(softmax([0.0, 2.0, 1.0, 0.0])[:3])
    # compare-to-none reads the first counted step: step 2 for the unparsed output
    ctn = compare_to_none(META, [unparsed], ["un"], LABELS, True)
    assert values(ctn)[0] == pytest.approx(expit(np.array([0.0, 2.0, 1.0])))


def test_trace_without_counted_step_falls_back_to_step_zero():
    # unparsed text naming no label: the engine's fragment steps do not count
    t = Trace(
        id="z",
        text_out="hmm",
        pred_labels=None,
        label_steps=[LabelStep(1, "b")],
        step_logits=[[1.0, 0.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0]],
        step_probs=softmax(np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0]]), axis=1).tolist(),
    )
    assert values(max_over_generations(META, [t], ["z"], LABELS, True))[0] == pytest.approx(
        softmax([1.0, 0.0, 0.0, 0.0])[:3]
    )
    assert values(compare_to_none(META, [t], ["z"], LABELS, True))[0] == pytest.approx(
        expit(np.array([1.0, 0.0, 0.0]))
    )
