"""Linear probes: metric definitions by hand, real training on a separable synthetic set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multilabel_llm.core.traces import LabelStep, Trace, TraceMeta, write_traces
from multilabel_llm.data.canonical import CanonicalDataset
from multilabel_llm.supervised.probes import (
    ProbeData,
    ProbeSet,
    first_label,
    fit_probes,
    held_out_log_loss,
    load_probe_data,
    majority_baseline,
    micro_f1,
    probe_distribution,
    probe_scores,
)

LABELS = ["anger", "joy", "sadness"]
CFG = {"seed": 0, "svd_factor": 4, "C_grid": [None], "max_iter": 500, "solver": "saga"}


def synthetic(n: int, d: int = 32, seed: int = 0, noise: float = 0.3):
    """Label k is on when latent factor k > 0; every feature mixes the factors (like real
    hidden states, whose informative directions span many coordinates) plus noise."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(123).normal(size=(len(LABELS), d))
    Z = rng.normal(size=(n, len(LABELS)))
    X = (Z @ mixing + noise * rng.normal(size=(n, d))).astype(np.float32)
    return X, (Z > 0).astype(int)


def test_micro_f1_by_hand():
    y = np.array([[1, 0, 1], [0, 1, 0]])
    p = np.array([[1, 1, 0], [0, 1, 0]])
    # tp=2 (0,0),(1,1); fp=1 (0,1); fn=1 (0,2) -> 2*2/(4+1+1)
    assert micro_f1(y, p) == pytest.approx(4 / 6)
    mask = np.array([[False, True, True], [True, True, True]])
    # drop cell (0,0): tp=1, fp=1, fn=1 -> 2/4
    assert micro_f1(y, p, mask) == pytest.approx(0.5)
    assert micro_f1(np.zeros((2, 2)), np.zeros((2, 2))) == 0.0


def test_probe_beats_majority_on_separable_set():
    X, Y = synthetic(300)
    X_ev, Y_ev = synthetic(150, seed=1)
    probes, _ = fit_probes(X, Y, LABELS, True, CFG)
    f1 = micro_f1(Y_ev, probes.predict(X_ev))
    base = micro_f1(Y_ev, majority_baseline(Y, len(Y_ev), True))
    assert f1 > 0.9
    assert f1 > base + 0.2
    # SVD keeps d // 4 components.
    assert probes.svd.n_components == 32 // 4


def test_svd_components_capped_by_samples():
    probes = ProbeSet(labels=LABELS)
    assert probes.n_components(n_samples=5, d=64) == 4
    assert probes.n_components(n_samples=500, d=64) == 16
    assert ProbeSet(labels=LABELS, svd_min_components=20).n_components(500, 64) == 20


def test_single_class_label_gets_constant_probability():
    X, Y = synthetic(60)
    Y[:, 2] = 0  # sadness never present in training
    probes = ProbeSet(labels=LABELS).fit(X, Y)
    proba = probes.predict_proba(X[:4])
    # Laplace-smoothed training frequency: (0 + 1) / (60 + 2)
    assert proba[:, 2] == pytest.approx(np.full(4, 1 / 62))
    assert "sadness" in probes.constant and "sadness" not in probes.models


def test_c_grid_selection_on_held_out_part():
    X, Y = synthetic(120)
    probes, selection = fit_probes(X, Y, LABELS, True, {**CFG, "C_grid": [1e-4, None]})
    assert selection["C"].isna().tolist() == [False, True]  # None (no penalty) is NaN here
    # a tiny C shrinks every weight to ~0: probabilities ~0.5, held-out log-loss ~log 2
    assert selection["val_log_loss"].iloc[0] == pytest.approx(np.log(2), abs=0.02)
    assert probes.C is None and selection["chosen"].tolist() == [False, True]


def test_held_out_c_stops_interpolation_and_refits_on_all_examples():
    # fewer examples than dimensions, noisy labels: no penalty interpolates the training
    # points, and a penalised probe does better on held-out rows
    X, Y = synthetic(40, d=256, noise=3.0, seed=1)
    cfg = {**CFG, "C_grid": [None, 0.01, 0.1]}
    probes, selection = fit_probes(X, Y, LABELS, True, cfg)
    losses = dict(zip(selection["C"].fillna(np.inf), selection["val_log_loss"], strict=True))
    assert min(losses[0.01], losses[0.1]) < losses[np.inf]
    assert probes.C == min((0.01, 0.1), key=losses.get)
    assert probes.svd.components_.shape[0] == 39  # refitted on all 40 rows: n - 1 components
    with pytest.raises(ValueError, match="training.probes.C_grid"):
        fit_probes(X, Y, LABELS, True, {**CFG, "C_grid": [None, -1.0]})


def test_held_out_log_loss_by_hand():
    probes = ProbeSet(labels=["a"], multilabel=True)
    probes.predict_proba = lambda X: np.array([[0.8], [0.25]])
    expected = -(np.log(0.8) + np.log(0.75)) / 2  # first present, second absent
    assert held_out_log_loss(probes, None, np.array([[1], [0]])) == pytest.approx(expected)


def test_degenerate_probe_is_reported_not_scored():
    X, Y = synthetic(60)
    pred = np.zeros_like(Y)
    pred[:, 2] = 1  # the model says "sadness" for every example, as in the demo
    data = ProbeData(
        ids=[str(i) for i in range(60)], X=X, gold=Y, pred=pred,
        parsed=np.ones(60, dtype=bool), first=np.full(60, 2),
    )  # fmt: skip
    scores, probes = probe_scores(data, data, LABELS, True, CFG)
    by = scores.set_index("variant")
    assert not by.loc["Gold", "degenerate"] and by.loc["Gold", "micro_f1"] > 0.5
    assert by.loc["Pred", "degenerate"] and np.isnan(by.loc["Pred", "micro_f1"])
    assert by.loc["Pred", "note"] == (
        "degenerate: predicts sadness for all 60 evaluated examples "
        "(micro-F1 of that fixed set: 1.00)"
    )
    assert by.loc["Pred 2+", "degenerate"] and np.isnan(by.loc["Pred 2+", "micro_f1"])
    assert probes["pred"].note.startswith("degenerate") and probes["gold"].note == ""
    # the Gold probe's distribution carries the training note only when it is degenerate
    assert "note" not in probe_distribution(probes["gold"], ["0"], X[:1]).columns
    probes["gold"].note = "degenerate: predicts no label for all 40 evaluated examples"
    frame = probe_distribution(probes["gold"], ["0"], X[:1])
    assert frame["note"].iloc[0].startswith("Gold probe on the probe eval set: degenerate")


def test_single_label_probe_rows_sum_to_one():
    X, Y = synthetic(200)
    cls = Y[:, 0]  # two classes: anger vs joy
    Y1 = np.zeros((200, 3), dtype=int)
    Y1[np.arange(200), np.where(cls == 1, 0, 1)] = 1
    probes, _ = fit_probes(X, Y1, LABELS, False, CFG)
    proba = probes.predict_proba(X)
    assert proba.sum(1) == pytest.approx(np.ones(200))
    assert proba[:, 2] == pytest.approx(np.zeros(200))  # never seen class
    assert micro_f1(Y1, probes.predict(X)) > 0.9


def test_pred_2plus_masks_only_the_first_label():
    # Pred probe learns the model's predictions perfectly except on each example's first label.
    X, Y = synthetic(200)
    first = np.where(Y[:, 1] == 1, 1, np.where(Y[:, 0] == 1, 0, -1))
    data = ProbeData(
        ids=[str(i) for i in range(200)],
        X=X,
        gold=Y,
        pred=Y.copy(),
        parsed=np.ones(200, dtype=bool),
        first=first,
    )
    scores, probes = probe_scores(data, data, LABELS, True, CFG)
    by = scores.set_index("variant")
    assert list(scores["variant"]) == ["Gold", "Pred", "Pred 2+", "Perf"]
    assert by.loc["Perf", "micro_f1"] == 1.0  # predictions equal gold
    assert by.loc["Pred 2+", "n"] == int((first >= 0).sum())
    # recompute Pred 2+ by hand
    rows = first >= 0
    hard = probes["pred"].predict(X[rows])
    mask = np.ones((rows.sum(), 3), dtype=bool)
    mask[np.arange(rows.sum()), first[rows]] = False
    assert by.loc["Pred 2+", "micro_f1"] == pytest.approx(micro_f1(Y[rows], hard, mask))


def _trace(text, pred, steps):
    return Trace("x", text, pred, [LabelStep(k, lab) for k, lab in steps], [], [])


def test_first_label_is_the_first_counted_step():
    # parsed outputs: the first label step that is not none
    assert (
        first_label(
            _trace("", ["joy", "sadness", "joy"], [(2, "joy"), (5, "sadness"), (8, "joy")]), LABELS
        )
        == "joy"
    )
    assert first_label(_trace("", ["sadness"], [(1, "none"), (3, "sadness")]), LABELS) == "sadness"
    # unparsed 'I feel sad, joy': a fallback step at the "sad" fragment of a label the text
    # does not name is not the first label; joy, named as a word, is
    unparsed = _trace("I feel sad, joy", None, [(3, "sadness"), (5, "joy")])
    assert first_label(unparsed, LABELS) == "joy"
    # no counted step: the first parsed label in text order
    assert first_label(_trace("", ["sadness", "anger"], []), LABELS) == "sadness"
    assert first_label(_trace("nothing", None, [(2, "anger")]), LABELS) is None


def test_pred_probe_without_parsed_outputs_is_reported_untrained_not_zero():
    X, Y = synthetic(60)
    data = ProbeData(
        ids=[str(i) for i in range(60)],
        X=X,
        gold=Y,
        pred=np.zeros_like(Y),
        parsed=np.zeros(60, dtype=bool),  # the model never answered in the format
        first=np.full(60, -1),
    )
    scores, probes = probe_scores(data, data, LABELS, True, CFG)
    by = scores.set_index("variant")
    assert list(scores["variant"]) == ["Gold", "Pred", "Pred 2+", "Perf"]
    assert np.isnan(by.loc["Pred", "micro_f1"]) and np.isnan(by.loc["Pred 2+", "micro_f1"])
    assert by.loc["Pred", "note"].startswith("untrained: 0 of 60 outputs parsed")
    assert by.loc["Gold", "note"] == "" and by.loc["Gold", "micro_f1"] > 0.5
    assert "pred" not in probes and "gold" in probes


def _dataset(ids, gold):
    rows = []
    for ex_id, labs in zip(ids, gold, strict=True):
        rows.append(
            {
                "id": ex_id,
                "split": "train",
                "text": f"text {ex_id}",
                "labels": labs,
                "annotators": [],
                "annotator_labels": [],
                "n_annotators": 0,
                **{f"h_{lab}": float("nan") for lab in LABELS},
            }
        )
    return CanonicalDataset("toy", LABELS, True, pd.DataFrame(rows), has_annotators=False)


def test_load_probe_data_and_distribution(tmp_path):
    ids = ["a", "b", "c"]
    ds = _dataset(ids, [["joy"], [], ["anger", "sadness"]])
    np.savez(tmp_path / "hidden.npz", ids=np.array(ids), states=np.eye(3, 4, dtype=np.float32))
    traces = [
        Trace("a", "", ["joy"], [LabelStep(2, "joy")], [], []),
        Trace("b", "", None, [], [], []),
        # generated sadness before anger: sadness is the first label
        Trace(
            "c", "", ["anger", "sadness"], [LabelStep(4, "anger"), LabelStep(2, "sadness")], [], []
        ),
    ]
    write_traces(tmp_path / "t.jsonl.gz", TraceMeta(labels=LABELS), traces)
    data = load_probe_data(tmp_path / "hidden.npz", tmp_path / "t.jsonl.gz", ds)
    assert data.gold.tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 1]]
    assert data.pred.tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 1]]
    assert data.parsed.tolist() == [True, False, True]
    assert data.first.tolist() == [1, -1, 2]

    X, Y = synthetic(80, d=4)
    probes = ProbeSet(labels=LABELS).fit(X, Y)
    dist = probe_distribution(probes, data.ids, data.X)
    assert list(dist.columns) == ["id", *LABELS]
    assert dist[LABELS].to_numpy().min() >= 0 and dist[LABELS].to_numpy().max() <= 1


def test_bad_hidden_file_names_the_problem(tmp_path):
    ds = _dataset(["a"], [["joy"]])
    np.savez(tmp_path / "hidden.npz", ids=np.array(["a", "b"]), states=np.zeros((1, 4)))
    write_traces(tmp_path / "t.jsonl.gz", TraceMeta(labels=LABELS), [])
    with pytest.raises(ValueError, match="hidden.npz.*shape"):
        load_probe_data(tmp_path / "hidden.npz", tmp_path / "t.jsonl.gz", ds)


def test_pred_probe_with_no_parsed_evaluation_outputs_is_not_scored():
    X, Y = synthetic(60)
    train = ProbeData(
        ids=[str(i) for i in range(60)], X=X, gold=Y, pred=Y.copy(),
        parsed=np.ones(60, dtype=bool), first=np.zeros(60, dtype=int),
    )  # fmt: skip
    evaluation = ProbeData(
        ids=[str(i) for i in range(60)], X=X, gold=Y, pred=np.zeros_like(Y),
        parsed=np.zeros(60, dtype=bool), first=np.full(60, -1),
    )  # fmt: skip
    scores, probes = probe_scores(train, evaluation, LABELS, True, CFG)
    by = scores.set_index("variant")
    assert np.isnan(by.loc["Pred", "micro_f1"]) and by.loc["Pred", "n"] == 0
    assert by.loc["Pred", "note"].startswith("not evaluated")
    assert np.isnan(by.loc["Pred 2+", "micro_f1"])
    assert "pred" in probes  # trained all the same
