"""Platt scaling for compare-to-none, fitted on a held-out split.

Multi-label: ``P(l) = sigmoid(w * d_l + b)`` with ``d_l = logit_l - logit_none``, one ``(w, b)``
shared by all labels, fitted by binary cross-entropy to the human proportions ``h_l`` (as the
reference code does). Single-label: temperature scaling ``softmax(w * z)`` over the label
logits, fitted by cross-entropy to ``h`` (a bias is meaningless under softmax).

Both fits are full-batch from a fixed start (w=1, b=0), so they are deterministic; there is
nothing random to seed. ``optimizer="adam"`` reproduces the reference (Adam, lr 0.01, 1000
epochs); ``optimizer="lbfgs"`` goes to the optimum of the same convex loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit, log_softmax, softmax


@dataclass(frozen=True)
class PlattSettings:
    optimizer: str = "adam"
    lr: float = 0.01
    epochs: int = 1000

    def __post_init__(self):
        if self.optimizer not in ("adam", "lbfgs"):
            raise ValueError(f"platt optimizer must be 'adam' or 'lbfgs', got {self.optimizer!r}")
        if self.lr <= 0 or self.epochs < 1:
            raise ValueError(f"platt settings need lr > 0 and epochs >= 1, got {self}")


@dataclass
class PlattScaler:
    w: float = 1.0
    b: float = 0.0
    kind: str = "sigmoid"  # "sigmoid" (multi-label) or "softmax" (single-label temperature)

    def transform(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.kind == "softmax":
            return softmax(self.w * x, axis=-1)
        return expit(self.w * x + self.b)

    def to_dict(self) -> dict:
        return {"w": self.w, "b": self.b, "kind": self.kind}


def _sigmoid_loss(params, x, y):
    w, b = params
    z = w * x + b
    loss = -(y * log_expit(z) + (1 - y) * log_expit(-z)).mean()
    resid = expit(z) - y
    return loss, np.array([(resid * x).mean(), resid.mean()])


def _softmax_loss(params, x, y):
    w = params[0]
    logp = log_softmax(w * x, axis=1)
    loss = -(y * logp).sum(axis=1).mean()
    p = np.exp(logp)
    # d/dw of -sum_l h_l log softmax(w z)_l = sum_l (p_l - h_l) z_l   (sum_l h_l = 1)
    grad = ((p - y) * x).sum(axis=1).mean()
    return loss, np.array([grad, 0.0])


def _optimise(loss_fn, x, y, settings: PlattSettings) -> np.ndarray:
    params = np.array([1.0, 0.0])
    if settings.optimizer == "lbfgs":
        res = minimize(lambda p: loss_fn(p, x, y), params, jac=True, method="L-BFGS-B")
        return res.x
    m = np.zeros(2)
    v = np.zeros(2)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, settings.epochs + 1):
        _, grad = loss_fn(params, x, y)
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        params = params - settings.lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
    return params


def fit_platt(x, y, settings: PlattSettings | None = None) -> PlattScaler:
    """Fit ``sigmoid(w x + b)`` to targets ``y`` in [0, 1] (any shape; flattened)."""
    settings = settings or PlattSettings()
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    keep = np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        raise ValueError("platt scaling: no finite (score, target) pairs to fit on")
    if ((y[keep] < 0) | (y[keep] > 1)).any():
        raise ValueError("platt scaling: targets must lie in [0, 1]")
    w, b = _optimise(_sigmoid_loss, x[keep], y[keep], settings)
    return PlattScaler(float(w), float(b), "sigmoid")


def fit_temperature(logits, targets, settings: PlattSettings | None = None) -> PlattScaler:
    """Fit ``softmax(w z)`` to target distributions (rows of ``targets`` sum to 1)."""
    settings = settings or PlattSettings()
    x = np.asarray(logits, dtype=float)
    y = np.asarray(targets, dtype=float)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"temperature scaling: logits {x.shape} and targets {y.shape} must match")
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    if not keep.any():
        raise ValueError("temperature scaling: no finite rows to fit on")
    w, _ = _optimise(_softmax_loss, x[keep], y[keep], settings)
    return PlattScaler(float(w), 0.0, "softmax")
