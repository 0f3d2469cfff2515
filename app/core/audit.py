"""Audit labels: images drawn uniformly at random from the unlabeled pool, so the model can be measured on them.

Images a query strategy picks are hard on purpose, so accuracy on them understates the model. A share of every
batch is therefore drawn at random ("audit" in the provenance); the accuracy shown is the model's accuracy on
those, each scored by a model that did not train on it (cross-fitting, see `app.engine.evaluation`), with a 95 %
Wilson interval and the count it rests on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

AUDIT = "audit"  # the strategy name an audit pick carries in the batch and the annotation history
MIN_AUDIT = 5  # fewest audit labels before an accuracy is shown
Z95 = 1.959964  # two-sided 95 % normal quantile


def audit_count(size: int, share: float, *, has_model: bool) -> int:
    """How many of a batch of `size` images are audit picks.

    A share of the batch, rounded; at least one once a model exists (when `share` > 0), never the whole batch
    unless it has a single image.
    """
    if share <= 0 or size <= 0:
        return 0
    count = int(round(share * size))
    if has_model:
        count = max(count, 1)
    return min(count, size if size == 1 else size - 1)


def draw_audit(pool_size: int, count: int, seed: int) -> np.ndarray:
    """`count` distinct positions drawn uniformly at random from a pool of `pool_size` (a repeatable draw)."""
    count = min(count, pool_size)
    rng = np.random.default_rng([seed, 0xA0D17])
    return np.sort(rng.choice(pool_size, size=count, replace=False)).astype(np.int64)


def place_audit(picks: Sequence, audit: Sequence, size: int) -> list:
    """The batch order: the audit picks spread evenly over the first `size` places, the strategy's other picks
    around them, then the strategy's spare picks (a batch keeps only its first `size` picks that are still
    unlabeled, so audit picks are never the spares that get dropped).
    """
    picks, audit = list(picks), list(audit)
    head = max(size - len(audit), 0)
    first, spares = picks[:head], picks[head:]
    out: list = []
    total = len(first) + len(audit)
    slots = {int(i * total / len(audit) + total / (2 * len(audit))) for i in range(len(audit))} if audit else set()
    for position in range(total):
        if position in slots and audit:
            out.append(audit.pop(0))
        elif first:
            out.append(first.pop(0))
        else:
            out.append(audit.pop(0))
    return out + audit + spares


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `correct` / `n` (95 % by default); (0, 1) when `n` is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def audit_estimate(y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[str]) -> dict:
    """The accuracy on audit labels, overall and per class, each with its 95 % Wilson interval and count.

    Args:
        y_true: the audit labels' class indices.
        y_pred: the class each was predicted as by a model that did not train on it.
        label_names: class names; position = class index.

    Returns:
        {"accuracy", "accuracy_low", "accuracy_high", "audit_n", "per_class": {name: {"accuracy", "low", "high",
        "n"}}}; accuracies are None (and the interval 0..1) where there is no label; per class only classes with
        audit labels are listed.
    """
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    correct = t == p
    low, high = wilson_interval(int(correct.sum()), len(t))
    per_class = {}
    for c in np.unique(t):
        members = correct[t == c]
        lo, hi = wilson_interval(int(members.sum()), len(members))
        per_class[str(label_names[int(c)])] = {
            "accuracy": float(members.mean()), "low": lo, "high": hi, "n": len(members),
        }  # fmt: skip
    return {
        "accuracy": float(correct.mean()) if len(t) else None,
        "accuracy_low": low,
        "accuracy_high": high,
        "audit_n": len(t),
        "per_class": per_class,
    }


def audit_folds(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """Split `n` audit labels into up to `folds` random folds (positions 0..n-1), none empty."""
    if n <= 0:
        return []
    order = np.random.default_rng([seed, 0xF01D]).permutation(n)
    k = min(folds, n)
    return [np.sort(order[i::k]) for i in range(k)]
