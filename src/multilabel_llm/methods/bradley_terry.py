"""Bradley–Terry scores from pairwise preference probabilities (paper §5.2.2, eq. 2).

For items ``0..K-1`` and pairwise probabilities ``p_{i>j}``, find scores ``s`` with
``P(i beats j) = sigmoid(s_i - s_j)`` by minimising eq. 2 plus a small L2 penalty::

    L(s) = sum over observed pairs (i, j) of BCE(p_{i>j}, sigmoid(s_i - s_j)) + l2 * ||s||^2

Eq. 2 sums over ordered pairs with a factor 1/2; since ``p_{j>i} = 1 - p_{i>j}`` the two
orders of a pair contribute the same term, so summing once over the observed (unordered)
pairs is the same loss. The L2 term makes the minimum unique (scores are otherwise only
defined up to a shift) and keeps hard outcomes (p in {0, 1}) finite.

The reference code fits each example with Adam (lr 1e-2, at most 5000 iterations, early stop
after 10 stalled iterations) from an *unseeded* random start; here the start is seeded and
all examples are fitted together in one vectorised Adam (each example's loss and Adam state
are independent, so batching changes nothing but speed). ``optimizer="lbfgs"`` solves the
same convex problem to high precision with scipy, as a cross-check.

**Position (home-advantage) term.** When each pair is asked in both orders the model's
preference for the first- or second-shown answer can be fitted instead of absorbed into the
scores: ``pairs[k] = (first shown, second shown)`` and
``P(first shown is chosen) = sigmoid(s_i - s_j + h)`` with one ``h`` per example
(:func:`fit_bradley_terry_position`). ``h > 0`` favours answer "a", ``h < 0`` answer "b";
``h`` is included in the L2 penalty, which keeps it finite when every answer is the same
letter (hard outcomes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit


@dataclass(frozen=True)
class BTSettings:
    seed: int = 0
    lr: float = 0.01
    max_iter: int = 5000
    l2: float = 0.01
    patience: int = 10
    tol: float = 1e-7  # an iteration "stalls" when the loss improves by less than this
    optimizer: str = "adam"  # "adam" (reference) or "lbfgs" (exact cross-check)

    def __post_init__(self):
        if self.optimizer not in ("adam", "lbfgs"):
            raise ValueError(
                f"bradley-terry optimizer must be 'adam' or 'lbfgs', got {self.optimizer!r}"
            )
        if self.lr <= 0 or self.max_iter < 1 or self.patience < 1 or self.l2 < 0:
            raise ValueError(
                f"bradley-terry settings need lr > 0, max_iter >= 1, patience >= 1, l2 >= 0; got {self}"
            )


def _check_inputs(probs, pairs, n_items):
    probs = np.asarray(probs, dtype=float)
    if probs.ndim == 1:
        probs = probs[None, :]
    pairs = np.asarray(pairs, dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must be an (n_pairs x 2) index array, got shape {pairs.shape}")
    if probs.shape[1] != pairs.shape[0]:
        raise ValueError(f"{probs.shape[1]} probabilities per example but {pairs.shape[0]} pairs")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n_items):
        raise ValueError(f"pair indices must lie in [0, {n_items})")
    if (pairs[:, 0] == pairs[:, 1]).any():
        raise ValueError("a pair compares an item with itself")
    if np.isnan(probs).any() or (probs < 0).any() or (probs > 1).any():
        raise ValueError("pairwise probabilities must lie in [0, 1] (NaN found or out of range)")
    return probs, pairs


def bt_loss_and_grad(scores, probs, pairs, l2, position_term: bool = False):
    """Loss per example (n,) and gradient (n, K) of the objective above.

    With ``position_term`` the last column of ``scores`` is the per-example position term
    ``h`` (added to every pair's score difference), so the shapes are (n, K + 1).
    """
    diff = scores[:, pairs[:, 0]] - scores[:, pairs[:, 1]]  # (n, P)
    if position_term:
        diff = diff + scores[:, -1:]
    # BCE(p, sigmoid(d)) = -(p log sigmoid(d) + (1-p) log sigmoid(-d)), stable via log_expit
    loss = -(probs * log_expit(diff) + (1.0 - probs) * log_expit(-diff)).sum(axis=1)
    loss = loss + l2 * (scores**2).sum(axis=1)
    resid = expit(diff) - probs  # dBCE/dd
    grad = np.zeros_like(scores)
    np.add.at(grad.T, pairs[:, 0], resid.T)
    np.subtract.at(grad.T, pairs[:, 1], resid.T)
    if position_term:
        grad[:, -1] = resid.sum(axis=1)
    grad += 2.0 * l2 * scores
    return loss, grad


def fit_bradley_terry(probs, pairs, n_items: int, settings: BTSettings | None = None) -> np.ndarray:
    """Scores ``(n_examples, n_items)`` from ``probs`` ``(n_examples, n_pairs)``.

    ``pairs[k] = (i, j)`` means ``probs[:, k]`` is the probability that item i beats item j.
    A 1-D ``probs`` is one example and returns a 1-D score vector.
    """
    settings = settings or BTSettings()
    one = np.asarray(probs).ndim == 1
    probs, pairs = _check_inputs(probs, pairs, n_items)
    scores = _fit(probs, pairs, n_items, settings, position_term=False)
    return scores[0] if one else scores


def fit_bradley_terry_position(
    probs, pairs, n_items: int, settings: BTSettings | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(n_examples, n_items)`` and position terms ``(n_examples,)``.

    ``pairs[k] = (i, j)`` means ``probs[:, k]`` is the probability that item i, shown first
    (answer "a"), is chosen over item j: ``sigmoid(s_i - s_j + h)``. The position term is only
    identified when pairs are asked in both orders, so every unordered pair must appear both
    ways. A 1-D ``probs`` is one example and returns a score vector and a float.
    """
    settings = settings or BTSettings()
    one = np.asarray(probs).ndim == 1
    probs, pairs = _check_inputs(probs, pairs, n_items)
    forward = {(int(i), int(j)) for i, j in pairs}
    unpaired = sorted((i, j) for i, j in forward if (j, i) not in forward)
    if unpaired:
        raise ValueError(
            f"a position term needs every pair in both orders; {len(unpaired)} pairs are asked "
            f"in one order only, e.g. {unpaired[0]}"
        )
    params = _fit(probs, pairs, n_items, settings, position_term=True)
    scores, home = params[:, :-1], params[:, -1]
    return (scores[0], float(home[0])) if one else (scores, home)


def _fit(probs, pairs, n_items, settings: BTSettings, position_term: bool) -> np.ndarray:
    rng = np.random.default_rng(settings.seed)
    start = rng.standard_normal((probs.shape[0], n_items))
    if position_term:  # h starts at "no position preference"
        start = np.concatenate([start, np.zeros((probs.shape[0], 1))], axis=1)
    if settings.optimizer == "lbfgs":
        return _fit_lbfgs(probs, pairs, start, settings, position_term)
    return _fit_adam(probs, pairs, start, settings, position_term)


def _fit_adam(probs, pairs, start, settings: BTSettings, position_term: bool) -> np.ndarray:
    n = probs.shape[0]
    scores = start.copy()
    m = np.zeros_like(scores)
    v = np.zeros_like(scores)
    beta1, beta2, eps = 0.9, 0.999, 1e-8  # torch.optim.Adam defaults, as in the reference
    best = np.full(n, np.inf)
    stalled = np.zeros(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    for t in range(1, settings.max_iter + 1):
        loss, grad = bt_loss_and_grad(scores, probs, pairs, settings.l2, position_term)
        improved = loss < best - settings.tol
        best = np.where(improved, loss, best)
        stalled = np.where(improved, 0, stalled + 1)
        active &= stalled < settings.patience
        if not active.any():
            break
        grad[~active] = 0.0
        m = np.where(active[:, None], beta1 * m + (1 - beta1) * grad, m)
        v = np.where(active[:, None], beta2 * v + (1 - beta2) * grad**2, v)
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        scores = scores - np.where(active[:, None], settings.lr * m_hat / (np.sqrt(v_hat) + eps), 0)
    return scores


def _fit_lbfgs(probs, pairs, start, settings: BTSettings, position_term: bool) -> np.ndarray:
    out = np.zeros_like(start)
    if not len(start):
        return out
    x0 = start[0]  # one start for every example: the problem is convex, only the path differs
    for row in range(probs.shape[0]):
        p = probs[row : row + 1]

        def fun(s, p=p):
            loss, grad = bt_loss_and_grad(s[None, :], p, pairs, settings.l2, position_term)
            return float(loss[0]), grad[0]

        res = minimize(
            fun,
            x0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 10000, "gtol": 1e-10, "ftol": 1e-15},
        )
        out[row] = res.x
    return out


def hard_outcomes(probs) -> np.ndarray:
    """Round pairwise probabilities to outcomes (paper §C): 1 above 0.5, 0 below, 0.5 on ties."""
    probs = np.asarray(probs, dtype=float)
    return np.where(probs > 0.5, 1.0, np.where(probs < 0.5, 0.0, 0.5))
