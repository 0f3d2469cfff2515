"""Calibrated confidence: temperature scaling (Guo et al. 2017), its error measure, and when a guess is a guess.

A linear head trained on few labels is over-confident: it says 99 % where it is right 80 % of the time. One
temperature T, fit on out-of-fold predictions of audit labels (images drawn at random, each scored by a model
that did not train on it), divides the logits: ``softmax(logits / T)``. Since ``log(p)`` are the logits up to a
constant per row, tempering works on probabilities directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar

ECE_BINS = 15
T_BOUNDS = (0.05, 20.0)  # log-temperature search range
PRIOR_WEIGHT = 20.0  # weight of the log-temperature prior N(0, 1): T stays near 1 until many random checks say
# otherwise (the linear head on standardized features is close to calibrated from about 200 labels, and the
# out-of-fold predictions of the random checks run harder than the pool: docs/benchmarks.md, section 7)
NOT_SURE_MARGIN = 0.2  # a guess is "not sure yet" unless its probability beats chance (1 / C) by this much
_TINY = 1e-12


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _TINY, None))


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities (N, C) with the temperature applied: ``softmax(log(probs) / temperature)``, float32."""
    if temperature == 1.0:
        return np.asarray(probs, dtype=np.float32)
    z = _log(probs) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _nll(log_t: float, logp: np.ndarray, y: np.ndarray) -> float:
    z = logp / np.exp(log_t)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float((log_norm - z[np.arange(len(y)), y]).sum() + PRIOR_WEIGHT * 0.5 * log_t**2)


def fit_temperature(probs: np.ndarray, y: Sequence[int]) -> float:
    """The temperature that best fits held-out predictions: minimum negative log-likelihood of `y` under
    ``tempered(probs, T)``, with a weak prior that keeps T near 1 when there are few labels (all of them right
    would otherwise push T to 0, infinitely sure).

    Args:
        probs: out-of-fold probabilities (N, C) of labeled images no model that scored them trained on.
        y: their true class indices.

    Returns:
        T within `T_BOUNDS`; 1.0 without labels.
    """
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    if len(y) == 0:
        return 1.0
    logp = _log(probs)
    lo, hi = np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])
    res = minimize_scalar(_nll, bounds=(lo, hi), args=(logp, y), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def expected_calibration_error(probs: np.ndarray, y: Sequence[int], bins: int = ECE_BINS) -> float | None:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins weighted by size.

    Args:
        probs: probabilities (N, C); the confidence of a row is its largest probability.
        y: true class indices.
        bins: equal-width bins over [0, 1].

    Returns:
        A share in [0, 1] (0 = perfectly calibrated), or None without rows.
    """
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    if len(y) == 0:
        return None
    p = np.asarray(probs, dtype=np.float64)
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in np.unique(which):
        members = which == b
        total += members.sum() * abs(conf[members].mean() - correct[members].mean())
    return float(total / len(y))


def not_sure(probs: Sequence[float]) -> bool:
    """Whether a guess is no better than chance: its top probability does not beat 1 / C by `NOT_SURE_MARGIN`."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if len(p) == 0:
        return True
    return bool(p.max() < 1.0 / len(p) + NOT_SURE_MARGIN)
