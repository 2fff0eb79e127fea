"""Distribution-alignment metrics of paper §5.1.2: NLL, L1, example-F1, plus micro/macro F1.

The paper's code for these was never published; the definitions below are written from the
paper's text and checked against the magnitudes in its Tables 2 and 5 (docs/metrics.md gives
the derivation). Everything works on dense arrays: ``q`` (model distribution) and ``h``
(reference distribution, paper eq. 1) are ``n_examples x n_labels`` floats, ``gold`` is the
0/1 matrix of aggregate labels. Single-label datasets use the single-label variants.

Per-example values are returned wherever a metric is a mean over examples, and F1 counts are
returned per example, so that :func:`bootstrap_ci` can resample examples without
recomputing anything from the distributions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from multilabel_llm.data.canonical import CanonicalDataset

# Library defaults, mirroring config/alignment/default.yaml (the workflow always passes the
# configured values): ``alignment.nll_clip`` and ``alignment.threshold``. The NLL clip is its
# own knob, apart from the probability floor of the hard-prediction methods
# (``methods.registry.PROBABILITY_FLOOR``, method params ``epsilon``), both default to 1e-8.
NLL_CLIP = 1e-8  # q is clipped to [NLL_CLIP, 1 - NLL_CLIP] in the NLL
THRESHOLD = 0.5  # q_l >= THRESHOLD puts label l in the predicted set (multi-label F1)
METRICS = ("nll", "l1", "example_f1", "micro_f1", "macro_f1")
LOWER_IS_BETTER = {
    "nll": True,
    "l1": True,
    "example_f1": False,
    "micro_f1": False,
    "macro_f1": False,
}


@dataclass(frozen=True)
class MetricSettings:
    """How probabilities become NLL terms and label sets (stated in docs/metrics.md)."""

    nll_clip: float = NLL_CLIP
    threshold: float = THRESHOLD

    def __post_init__(self):
        if not 0.0 < self.nll_clip < 0.5:
            raise ValueError(f"metric nll_clip must lie in (0, 0.5), got {self.nll_clip}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"metric threshold must lie in (0, 1), got {self.threshold}")


def _as_matrix(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected an (examples x labels) matrix, got shape {arr.shape}")
    return arr


def _check_pair(q, h) -> tuple[np.ndarray, np.ndarray]:
    q = _as_matrix(q, "q")
    h = _as_matrix(h, "h")
    if q.shape != h.shape:
        raise ValueError(f"q has shape {q.shape} but the reference has shape {h.shape}")
    if np.isnan(q).any():
        raise ValueError("q contains NaN; every method must give a probability for every label")
    if np.isnan(h).any():
        raise ValueError("the reference distribution contains NaN (examples without annotators)")
    if (q < 0).any() or (q > 1).any() or (h < 0).any() or (h > 1).any():
        raise ValueError("probabilities must lie in [0, 1]")
    return q, h


def nll_per_example(q, h, multilabel: bool, nll_clip: float = NLL_CLIP) -> np.ndarray:
    """Negative log-likelihood of the human annotations under ``q``, one value per example.

    Multi-label: every label is a Bernoulli variable, and the annotations of example d are
    samples from H(d); the expected negative log-likelihood of one annotation is
    ``-sum_l [h_l log q_l + (1 - h_l) log(1 - q_l)]`` with ``q`` clipped to
    ``[nll_clip, 1 - nll_clip]``. With hard labels this is ``-log prod_g P_Q(g)`` over the
    gold set G_d and its complement, which is the paper's "likelihood of G_d".
    Single-label: the cross-entropy ``-sum_l h_l log q_l`` with ``q`` clipped below at
    ``nll_clip`` (the expected ``-log P_Q(a)`` of one annotator's label ``a``).
    """
    q, h = _check_pair(q, h)
    if multilabel:
        qc = np.clip(q, nll_clip, 1.0 - nll_clip)
        return -(h * np.log(qc) + (1.0 - h) * np.log1p(-qc)).sum(axis=1)
    qc = np.clip(q, nll_clip, 1.0)
    return -(h * np.log(qc)).sum(axis=1)


def l1_per_example(q, h) -> np.ndarray:
    """``sum_l |q_l - h_l|`` per example (paper §5.1.2); the same formula for single-label."""
    q, h = _check_pair(q, h)
    return np.abs(q - h).sum(axis=1)


def predicted_sets(
    q, multilabel: bool, threshold: float = THRESHOLD, tie_tolerance: float = NLL_CLIP
):
    """0/1 matrix of predicted labels.

    Multi-label: ``q_l >= threshold``. Single-label: the argmax when it is unique; a row whose
    maximum is shared (a uniform distribution, or every label at the floor for an
    unparseable hard prediction) carries no prediction and predicts nothing.
    ``tie_tolerance`` is the tolerance of "shared" (:func:`score_examples` passes the NLL clip).
    """
    q = _as_matrix(q, "q")
    if multilabel:
        return (q >= threshold).astype(np.int64)
    pred = np.zeros_like(q, dtype=np.int64)
    if q.shape[1] == 0:
        return pred
    top = q.max(axis=1, keepdims=True)
    unique = (q >= top - tie_tolerance).sum(axis=1) == 1
    rows = np.flatnonzero(unique)
    pred[rows, q[unique].argmax(axis=1)] = 1
    return pred


def example_f1_per_example(pred, gold) -> np.ndarray:
    """Example-F1 (Du et al. 2019): ``2|P ∩ G| / (|P| + |G|)``, and 1 when both are empty."""
    pred = _as_matrix(pred, "pred").astype(bool)
    gold = _as_matrix(gold, "gold").astype(bool)
    if pred.shape != gold.shape:
        raise ValueError(f"predicted sets {pred.shape} and gold sets {gold.shape} differ in shape")
    inter = (pred & gold).sum(axis=1)
    denom = pred.sum(axis=1) + gold.sum(axis=1)
    out = np.ones(pred.shape[0])
    nonempty = denom > 0
    out[nonempty] = 2.0 * inter[nonempty] / denom[nonempty]
    return out


def f1_counts(pred, gold) -> np.ndarray:
    """Per-example, per-label true positives, false positives and false negatives.

    Shape ``(3, n_examples, n_labels)``; summing over examples gives the corpus counts that
    micro and macro F1 use, so a bootstrap resample is a weighted sum.
    """
    pred = _as_matrix(pred, "pred").astype(bool)
    gold = _as_matrix(gold, "gold").astype(bool)
    tp = pred & gold
    fp = pred & ~gold
    fn = ~pred & gold
    return np.stack([tp, fp, fn]).astype(np.int64)


def _f1_from_totals(tp, fp, fn) -> np.ndarray:
    """F1 = 2tp / (2tp + fp + fn) elementwise, 0 where the denominator is 0 (sklearn's
    ``zero_division=0``, as the reference code used)."""
    tp, fp, fn = (np.asarray(x, dtype=float) for x in (tp, fp, fn))
    denom = 2.0 * tp + fp + fn
    return np.divide(2.0 * tp, denom, out=np.zeros_like(denom), where=denom > 0)


def micro_f1_from_counts(counts) -> np.ndarray | float:
    """Micro F1 from counts summed over examples: ``(..., 3, n_labels)`` → ``(...)``."""
    counts = np.asarray(counts)
    totals = counts.sum(axis=-1)
    return _f1_from_totals(totals[..., 0], totals[..., 1], totals[..., 2])


def macro_f1_from_counts(counts) -> np.ndarray | float:
    """Macro F1 (unweighted mean of per-label F1, every label counted) from summed counts."""
    counts = np.asarray(counts)
    per_label = _f1_from_totals(counts[..., 0, :], counts[..., 1, :], counts[..., 2, :])
    return per_label.mean(axis=-1)


def reference_distribution(dataset: CanonicalDataset, ids: Sequence[str]):
    """``(h, gold, n_gold_fallback)`` for ``ids``: the human distribution of eq. 1, with the
    aggregate 0/1 labels standing in for examples without annotators (NaN rows)."""
    h = np.array(dataset.human_distribution(ids).to_numpy(dtype=float))  # writable copy
    gold = dataset.gold_matrix(ids).to_numpy(dtype=float)
    nan_rows = np.isnan(h).any(axis=1)
    h[nan_rows] = gold[nan_rows]
    return h, gold, int(nan_rows.sum())


@dataclass
class ExampleScores:
    """Everything the tables need about one method on one test set, per example."""

    ids: list[str]
    nll: np.ndarray
    l1: np.ndarray
    example_f1: np.ndarray
    counts: np.ndarray  # (n_examples, 3, n_labels)

    def summary(self) -> dict[str, float]:
        summed = self.counts.sum(axis=0)
        return {
            "nll": float(self.nll.mean()),
            "l1": float(self.l1.mean()),
            "example_f1": float(self.example_f1.mean()),
            "micro_f1": float(micro_f1_from_counts(summed)),
            "macro_f1": float(macro_f1_from_counts(summed)),
        }


def score_examples(
    q, h, gold, multilabel: bool, settings: MetricSettings | None = None, ids=None
) -> ExampleScores:
    """Per-example NLL, L1, example-F1 and F1 counts of distribution ``q``."""
    settings = settings or MetricSettings()
    q, h = _check_pair(q, h)
    gold = _as_matrix(gold, "gold")
    if gold.shape != q.shape:
        raise ValueError(f"gold has shape {gold.shape} but q has shape {q.shape}")
    pred = predicted_sets(q, multilabel, settings.threshold, settings.nll_clip)
    return ExampleScores(
        ids=list(ids) if ids is not None else [str(i) for i in range(q.shape[0])],
        nll=nll_per_example(q, h, multilabel, settings.nll_clip),
        l1=l1_per_example(q, h),
        example_f1=example_f1_per_example(pred, gold),
        counts=np.moveaxis(f1_counts(pred, gold), 0, 1),
    )


def alignment_scores(q, h, gold, multilabel: bool, settings: MetricSettings | None = None):
    """Corpus-level ``{"nll", "l1", "example_f1", "micro_f1", "macro_f1"}``."""
    return score_examples(q, h, gold, multilabel, settings).summary()


def bootstrap_ci(
    scores: ExampleScores, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, tuple[float, float, float]]:
    """``metric -> (mean, ci_low, ci_high)``: percentile CI over example resamples.

    Resamples are multinomial counts over examples (the same as drawing indices with
    replacement); with the same seed and the same example order every method sees the same
    resamples, so the intervals of two methods on one test set are paired.
    """
    if n_boot < 1:
        raise ValueError(f"bootstrap n must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"bootstrap alpha must lie in (0, 1), got {alpha}")
    n = len(scores.nll)
    point = scores.summary()
    if n == 0:
        raise ValueError("cannot score an empty test set")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)  # (B, n)
    samples = {
        "nll": weights @ scores.nll / n,
        "l1": weights @ scores.l1 / n,
        "example_f1": weights @ scores.example_f1 / n,
    }
    counts = np.tensordot(weights, scores.counts.astype(float), axes=(1, 0))  # (B, 3, L)
    samples["micro_f1"] = micro_f1_from_counts(counts)
    samples["macro_f1"] = macro_f1_from_counts(counts)
    lo_q, hi_q = 100 * alpha / 2, 100 * (1 - alpha / 2)
    return {
        m: (
            point[m],
            float(np.percentile(samples[m], lo_q)),
            float(np.percentile(samples[m], hi_q)),
        )
        for m in METRICS
    }


# ---------------------------------------------------------------------------- paper 2 metrics
# *Token-Level Marginalization for Multi-Label LLM Classifiers* (Praharaj & Kasundra 2025)
# scores class probabilities against the aggregate labels only: micro-F1 at a low threshold
# (0.2; 0.3 for Llama-3.1-8B), Hamming loss and micro ROC-AUC (docs/metrics.md).
TOKEN_LEVEL_METRICS = ("micro_f1_at_threshold", "hamming_loss", "micro_roc_auc")
TOKEN_LEVEL_THRESHOLD = 0.2


def token_level_metrics(q, gold, threshold: float = TOKEN_LEVEL_THRESHOLD) -> dict[str, float]:
    """The second paper's metrics of probabilities ``q`` against 0/1 ``gold`` (n x L).

    ``micro_f1_at_threshold``: micro-F1 of the sets ``{l: q_l >= threshold}`` (0 when
    nothing is predicted or gold); ``hamming_loss``: the share of (example, label) cells
    those sets get wrong; ``micro_roc_auc``: ROC-AUC of every cell's ``q`` against its gold
    bit, pooled (NaN when the gold cells are all 0 or all 1, where AUC is undefined).
    """
    from sklearn.metrics import f1_score, hamming_loss, roc_auc_score

    q = _as_matrix(q, "q")
    gold = _as_matrix(gold, "gold")
    if q.shape != gold.shape:
        raise ValueError(f"probabilities {q.shape} and gold labels {gold.shape} differ in shape")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"token-level metrics threshold must lie in (0, 1), got {threshold}")
    gold = (gold >= 0.5).astype(int)
    pred = (q >= float(threshold)).astype(int)
    pooled = gold.ravel()
    auc = float("nan")
    if 0 < pooled.sum() < pooled.size:
        auc = float(roc_auc_score(pooled, q.ravel()))
    return {
        "micro_f1_at_threshold": float(f1_score(gold, pred, average="micro", zero_division=0)),
        "hamming_loss": float(hamming_loss(gold, pred)),
        "micro_roc_auc": auc,
    }
