"""Linear probes on the LLM's last-layer hidden state at its first generated label token.

Paper §5.2.3 / §A.5 / Fig. 7 and 15: the state is scaled (``StandardScaler(with_mean=False)``),
reduced by ``TruncatedSVD`` to ``d // 4`` components and fed to one logistic regression per
label. Probes are trained on the gold labels (*Gold*) and on the model's own predictions
(*Pred*); *Pred 2+* evaluates the prediction-trained probes only on what the model generated
after its first label; *Perf* is the model's own micro-F1 against gold.

Definitions used here (the paper gives no formula; see docs in :func:`probe_scores`):

* *first label* of an example = the label whose first token the model generated earliest
  among the counted label steps (``analyses.counted_steps``: labels the output names, first
  occurrence only; ``none`` skipped), or the first of ``pred_labels`` in text order when the
  trace has no counted label step.
* *Pred 2+*: rows = eval examples whose output parsed and has at least one predicted label;
  cells = every (example, label) pair except the example's first label; targets = the model's
  predictions, scores = the Pred probes' decisions; micro-F1 over those cells.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import TruncatedSVD
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from multilabel_llm import NONE_LABEL
from multilabel_llm.core.traces import read_traces
from multilabel_llm.data.canonical import CanonicalDataset
from multilabel_llm.data.label_steps import counted_steps

log = logging.getLogger(__name__)

VARIANTS = ("Gold", "Pred", "Pred 2+", "Perf")


@dataclass
class ProbeData:
    """Features and targets of one test set, rows aligned by ``ids``."""

    ids: list[str]
    X: np.ndarray  # n x d hidden states
    gold: np.ndarray  # n x L 0/1 aggregate gold labels
    pred: np.ndarray  # n x L 0/1 model predictions (zeros where unparseable)
    parsed: np.ndarray  # n bool: the model's output parsed
    first: np.ndarray  # n int: index of the first predicted label, -1 when none


def load_hidden(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read ``hidden.npz`` (``ids`` str array, ``states`` n x d) and check its shape."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        for key in ("ids", "states"):
            if key not in data:
                raise ValueError(f"{path}: missing array {key!r} (expected 'ids' and 'states')")
        ids = [str(i) for i in data["ids"].tolist()]
        states = np.asarray(data["states"], dtype=np.float32)
    if states.ndim != 2 or states.shape[0] != len(ids):
        raise ValueError(
            f"{path}: 'states' has shape {states.shape}; expected ({len(ids)}, d) to match 'ids'"
        )
    return ids, states


def first_label(trace, labels: list[str]) -> str | None:
    """The first label the model generated (``none`` ignored), or None."""
    for step in counted_steps(trace, labels).steps:
        if step.label != NONE_LABEL and step.label in labels:
            return step.label
    for lab in trace.pred_labels or []:
        if lab in labels:
            return lab
    return None


def load_probe_data(
    hidden_path: str | Path, traces_path: str | Path, dataset: CanonicalDataset
) -> ProbeData:
    """Join hidden states, traces and gold labels on example id.

    Rows follow ``hidden.npz``; ids without a trace or not in the dataset raise ValueError.
    """
    ids, states = load_hidden(hidden_path)
    meta, traces = read_traces(traces_path)
    if list(meta.labels) != list(dataset.labels):
        raise ValueError(
            f"{traces_path}: trace labels {meta.labels} differ from dataset labels {dataset.labels}"
        )
    by_id = {t.id: t for t in traces}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"{hidden_path}: ids without a trace in {traces_path}: {missing[:5]}")
    known = set(dataset.examples["id"])
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(f"{hidden_path}: ids not in dataset {dataset.name}: {unknown[:5]}")
    labels = list(dataset.labels)
    index = {lab: k for k, lab in enumerate(labels)}
    gold = dataset.gold_matrix(ids).to_numpy(dtype=np.int64)
    pred = np.zeros_like(gold)
    parsed = np.zeros(len(ids), dtype=bool)
    first = np.full(len(ids), -1, dtype=np.int64)
    for row, ex_id in enumerate(ids):
        trace = by_id[ex_id]
        if trace.pred_labels is None:
            continue
        parsed[row] = True
        for lab in trace.pred_labels:
            if lab in index:
                pred[row, index[lab]] = 1
        lab = first_label(trace, labels)
        if lab is not None:
            first[row] = index[lab]
    return ProbeData(ids=ids, X=states, gold=gold, pred=pred, parsed=parsed, first=first)


def micro_f1(y_true: np.ndarray, y_pred: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Micro-F1 over the 0/1 cells selected by ``mask`` (all cells when None); 0 when empty."""
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    if mask is None:
        mask = np.ones_like(y_true, dtype=bool)
    tp = np.sum(y_true & y_pred & mask)
    fp = np.sum(~y_true & y_pred & mask)
    fn = np.sum(y_true & ~y_pred & mask)
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom else 0.0


@dataclass
class ProbeSet:
    """Scaler + SVD shared by the labels, then one logistic regression per label.

    ``multilabel=False`` fits a single multinomial regression over the labels instead, so
    ``predict_proba`` rows sum to 1. A label with one class in training gets a constant
    probability (Laplace-smoothed training frequency), recorded in ``constant``.
    """

    labels: list[str]
    multilabel: bool = True
    C: float | None = None
    seed: int = 0
    svd_factor: int = 4
    svd_min_components: int | None = None
    max_iter: int = 1000
    solver: str = "saga"
    scaler: StandardScaler | None = None
    svd: TruncatedSVD | None = None
    models: dict = field(default_factory=dict)
    constant: dict = field(default_factory=dict)
    note: str = ""  # set by probe_scores: why the probe's eval score is not a result

    def n_components(self, n_samples: int, d: int) -> int:
        k = d // self.svd_factor
        if self.svd_min_components:
            k = max(k, int(self.svd_min_components))
        # TruncatedSVD needs k < n_features and k < n_samples for a proper decomposition.
        return max(1, min(k, d - 1, n_samples - 1))

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return self.svd.transform(self.scaler.transform(X))

    def _regression(self) -> LogisticRegression:
        C = np.inf if self.C is None else float(self.C)  # C=inf = no penalty (reference)
        return LogisticRegression(
            C=C, solver=self.solver, max_iter=self.max_iter, random_state=self.seed
        )

    def fit(self, X: np.ndarray, Y: np.ndarray) -> ProbeSet:
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y)
        if X.shape[0] < 2:
            raise ValueError(f"probe training needs at least 2 examples, got {X.shape[0]}")
        self.scaler = StandardScaler(with_mean=False).fit(X)
        k = self.n_components(X.shape[0], X.shape[1])
        self.svd = TruncatedSVD(n_components=k, random_state=self.seed).fit(
            self.scaler.transform(X)
        )
        Z = self._transform(X)
        self.models, self.constant = {}, {}
        with warnings.catch_warnings():
            # saga without a penalty rarely meets tol on tiny sets; the fit is still usable.
            warnings.simplefilter("ignore", ConvergenceWarning)
            if self.multilabel:
                for k_lab, lab in enumerate(self.labels):
                    y = Y[:, k_lab].astype(int)
                    if y.min() == y.max():
                        self.constant[lab] = (y.sum() + 1.0) / (len(y) + 2.0)
                        log.info(
                            "probe %s: one class in training; constant %.3f",
                            lab,
                            self.constant[lab],
                        )
                        continue
                    self.models[lab] = self._regression().fit(Z, y)
            else:
                y = np.asarray(Y).reshape(-1).astype(int)
                if np.unique(y).size < 2:
                    self.constant["__all__"] = int(y[0])
                    log.info("single-label probe: one class in training")
                else:
                    self.models["__all__"] = self._regression().fit(Z, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """n x L probabilities (per-label Bernoulli, or a distribution when single-label)."""
        Z = self._transform(np.asarray(X, dtype=np.float64))
        out = np.zeros((Z.shape[0], len(self.labels)))
        if self.multilabel:
            for k_lab, lab in enumerate(self.labels):
                if lab in self.models:
                    out[:, k_lab] = self.models[lab].predict_proba(Z)[:, 1]
                else:
                    out[:, k_lab] = self.constant[lab]
            return out
        if "__all__" in self.constant:
            out[:, self.constant["__all__"]] = 1.0
            return out
        model = self.models["__all__"]
        out[:, model.classes_] = model.predict_proba(Z)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        proba = self.predict_proba(X)
        if self.multilabel:
            return (proba > 0.5).astype(int)
        hard = np.zeros_like(proba, dtype=int)
        hard[np.arange(len(proba)), proba.argmax(1)] = 1
        return hard


def _targets(Y: np.ndarray, multilabel: bool) -> np.ndarray:
    """Multi-label: the 0/1 matrix; single-label: the class index (rows must have one label)."""
    return Y if multilabel else Y.argmax(1)


def held_out_log_loss(probes: ProbeSet, X: np.ndarray, Y: np.ndarray, eps: float = 1e-7) -> float:
    """Mean negative log-likelihood of the held-out targets: per-label Bernoulli averaged over
    cells (multi-label) or the cross-entropy of the class (single-label, ``Y`` one-hot)."""
    proba = np.clip(probes.predict_proba(X), eps, 1 - eps)
    Y = np.asarray(Y, dtype=float)
    if probes.multilabel:
        return float(-np.mean(Y * np.log(proba) + (1 - Y) * np.log(1 - proba)))
    return float(-np.mean(np.log(proba[np.arange(len(Y)), Y.argmax(1)])))


def fit_probes(
    X: np.ndarray,
    Y: np.ndarray,
    labels: list[str],
    multilabel: bool,
    cfg: dict,
    seed: int = 0,
) -> tuple[ProbeSet, pd.DataFrame]:
    """Fit a :class:`ProbeSet`, choosing C on held-out data when the grid has >1 value.

    With d // 4 SVD components capped at n - 1, an unpenalised regression can interpolate the
    training points, so C is chosen on a held-out ``val_fraction`` of the probe-train set by
    held-out log-loss (a proper score: micro-F1 on a few held-out rows is too coarse to rank
    C; ties go to the earlier grid value), then the probes are refitted on all of ``X`` with
    that C. Returns the probes and the selection (C, val_log_loss, val_micro_f1, chosen),
    empty when the grid has one value.
    """
    grid = list(cfg.get("C_grid") or [None])
    for C in grid:
        if C is not None and not (isinstance(C, int | float) and C > 0):
            raise ValueError(
                f"training.probes.C_grid: {C!r} is not a positive number or null (no penalty)"
            )
    common = dict(
        labels=list(labels),
        multilabel=multilabel,
        seed=seed,
        svd_factor=int(cfg.get("svd_factor", 4)),
        svd_min_components=cfg.get("svd_min_components"),
        max_iter=int(cfg.get("max_iter", 1000)),
        solver=str(cfg.get("solver", "saga")),
    )
    if len(grid) == 1:
        return ProbeSet(C=grid[0], **common).fit(X, _targets(Y, multilabel)), pd.DataFrame()
    fraction = float(cfg.get("val_fraction", 0.2))
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"training.probes.val_fraction must lie in (0, 1), got {fraction}")
    n_val = max(1, int(round(fraction * len(X))))
    if len(X) - n_val < 2:
        raise ValueError(
            f"probe C selection: {len(X)} training examples leave fewer than 2 after holding "
            f"out {n_val} (training.probes.val_fraction {fraction}); give one C_grid value"
        )
    order = np.random.default_rng(seed).permutation(len(X))
    val, fit = order[:n_val], order[n_val:]
    rows = []
    for C in tqdm(grid, desc="probe C grid", leave=False):
        probes = ProbeSet(C=C, **common).fit(X[fit], _targets(Y[fit], multilabel))
        rows.append(
            {
                "C": C,
                "val_log_loss": held_out_log_loss(probes, X[val], Y[val]),
                "val_micro_f1": micro_f1(Y[val], probes.predict(X[val])),
            }
        )
    selection = pd.DataFrame(rows)
    best = int(selection["val_log_loss"].to_numpy().argmin())  # first of ties
    selection["chosen"] = np.arange(len(grid)) == best
    final = ProbeSet(C=grid[best], **common).fit(X, _targets(Y, multilabel))
    return final, selection


def constant_prediction(hard: np.ndarray, labels: list[str]) -> str | None:
    """When every row of the 0/1 predictions is the same, a note naming that row; else None.

    Such a probe says nothing about the hidden states: its micro-F1 is the score of one fixed
    label set, so it is reported as degenerate rather than as a result.
    """
    hard = np.asarray(hard)
    if len(hard) < 2 or not (hard == hard[0]).all():
        return None
    predicted = [lab for lab, on in zip(labels, hard[0], strict=True) if on]
    shown = ", ".join(predicted) if predicted else "no label"
    return f"degenerate: predicts {shown} for all {len(hard)} evaluated examples"


def majority_baseline(Y_train: np.ndarray, n_eval: int, multilabel: bool) -> np.ndarray:
    """Per-label majority class (multi-label) or the most frequent class (single-label)."""
    if multilabel:
        row = (Y_train.mean(0) > 0.5).astype(int)
    else:
        row = np.zeros(Y_train.shape[1], dtype=int)
        row[Y_train.sum(0).argmax()] = 1
    return np.tile(row, (n_eval, 1))


def probe_scores(
    train: ProbeData,
    evaluation: ProbeData,
    labels: list[str],
    multilabel: bool,
    cfg: dict,
) -> tuple[pd.DataFrame, dict]:
    """Train Gold and Pred probes on ``train`` and score the four Fig. 7 variants.

    Returns ``(scores, probes)``: ``scores`` has columns variant, micro_f1, n, n_train,
    degenerate, note, with ``n`` the number of evaluated examples; ``probes`` maps
    "gold"/"pred" to ProbeSets. A probe that predicts the same label set for every evaluated
    example is ``degenerate``: NaN micro-F1 and the reason in ``note`` (and ``ProbeSet.note``).
    Pred probes use only examples whose output parsed. Single-label datasets have no
    *Pred 2+* row (one label per output) and skip examples without exactly one label.
    When fewer than two of the model's outputs parse, no Pred probe can be trained: its rows
    say so in ``note`` with an empty micro-F1 instead of a number that looks like a result.
    """
    seed = int(cfg.get("seed", 0))
    rows, probes = [], {}

    def usable(data: ProbeData, Y: np.ndarray, need_parse: bool) -> np.ndarray:
        ok = data.parsed.copy() if need_parse else np.ones(len(data.ids), dtype=bool)
        if not multilabel:
            ok &= Y.sum(1) == 1
        return ok

    for variant, attr, need_parse in (("Gold", "gold", False), ("Pred", "pred", True)):
        Y_tr, Y_ev = getattr(train, attr), getattr(evaluation, attr)
        tr, ev = usable(train, Y_tr, need_parse), usable(evaluation, Y_ev, need_parse)
        if tr.sum() < 2 and variant == "Pred":
            note = f"untrained: {int(tr.sum())} of {len(train.ids)} outputs parsed"
            log.warning("Pred probes %s", note)
            for name in ("Pred", "Pred 2+") if multilabel else ("Pred",):
                rows.append(
                    {"variant": name, "micro_f1": np.nan, "n": 0, "n_train": 0, "note": note}
                )
            continue
        if tr.sum() < 2:
            raise ValueError(
                f"{variant} probes: only {int(tr.sum())} usable training examples "
                f"(of {len(train.ids)}); need at least 2"
            )
        fitted, selection = fit_probes(train.X[tr], Y_tr[tr], labels, multilabel, cfg, seed)
        if not selection.empty:
            log.info("%s probe C selection:\n%s", variant, selection.to_string(index=False))
        probes[attr] = fitted
        if not ev.any():  # trained, but none of the evaluated outputs parsed
            note = f"not evaluated: 0 of {len(evaluation.ids)} evaluated outputs parsed"
            for name in (variant, "Pred 2+") if variant == "Pred" and multilabel else (variant,):
                rows.append(
                    {"variant": name, "micro_f1": np.nan, "n": 0, "n_train": int(tr.sum()),
                     "note": note}
                )  # fmt: skip
            continue
        hard = fitted.predict(evaluation.X[ev])
        rows.append(_scored(variant, Y_ev[ev], hard, None, labels, int(ev.sum()), int(tr.sum())))
        fitted.note = rows[-1]["note"]
        if fitted.note:
            log.warning("%s probes %s", variant, fitted.note)
        if variant == "Pred" and multilabel:
            rows.append(_pred_2plus(evaluation, fitted, int(tr.sum())))
    # Perf: the model's own answers against gold (unparseable answers count as no labels).
    rows.append(
        {
            "variant": "Perf",
            "micro_f1": micro_f1(evaluation.gold, evaluation.pred),
            "n": len(evaluation.ids),
            "n_train": 0,
        }
    )
    columns = ["variant", "micro_f1", "n", "n_train", "degenerate", "note"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["degenerate"] = frame["degenerate"].eq(True)  # rows without a probe: False
    return frame.fillna({"note": ""}), probes


def _scored(variant, Y, hard, mask, labels, n: int, n_train: int) -> dict:
    """A probe row; a probe whose predictions are the same for every row is degenerate: NaN
    micro-F1, with the prediction and the number it would have printed in ``note``."""
    score = micro_f1(Y, hard, mask)
    note = constant_prediction(hard, list(labels))
    if note is None:
        return {"variant": variant, "micro_f1": score, "n": n, "n_train": n_train,
                "degenerate": False, "note": ""}  # fmt: skip
    return {"variant": variant, "micro_f1": np.nan, "n": n, "n_train": n_train,
            "degenerate": True, "note": f"{note} (micro-F1 of that fixed set: {score:.2f})"}  # fmt: skip


def _pred_2plus(evaluation: ProbeData, probes: ProbeSet, n_train: int) -> dict:
    rows = evaluation.parsed & (evaluation.first >= 0)
    if not rows.any():
        return {"variant": "Pred 2+", "micro_f1": np.nan, "n": 0, "n_train": n_train,
                "note": "not evaluated: no parsed output with a first label"}  # fmt: skip
    Y = evaluation.pred[rows]
    hard = probes.predict(evaluation.X[rows])
    mask = np.ones_like(Y, dtype=bool)
    mask[np.arange(len(Y)), evaluation.first[rows]] = False  # drop each first label
    return _scored("Pred 2+", Y, hard, mask, probes.labels, int(rows.sum()), n_train)


def probe_distribution(probes: ProbeSet, ids: list[str], X: np.ndarray) -> pd.DataFrame:
    """The distribution contract: ``id`` + one probability column per label, plus a ``note``
    column when training found the probe degenerate (the alignment tables then mark the
    row instead of printing its numbers as a result)."""
    proba = np.clip(probes.predict_proba(X), 0.0, 1.0)
    frame = pd.DataFrame(proba, columns=list(probes.labels))
    frame.insert(0, "id", [str(i) for i in ids])
    note = getattr(probes, "note", "")  # probes pickled before the field existed have none
    if note:
        frame["note"] = f"Gold probe on the probe eval set: {note}"
    return frame
