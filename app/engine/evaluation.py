"""Measuring a round's model honestly: on held-out labels, or cross-validated while there are too few."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from app.core.metrics import classification_metrics
from lit_models.train import predict_proba, train_head

MIN_CV_LABELS = 10
MIN_CV_PER_CLASS = 2  # on average: with fewer, most held-out images have no example of their class left to learn from


def cross_validated_metrics(
    x: np.ndarray,
    y: np.ndarray,
    label_names: Sequence[str],
    *,
    folds: int = 5,
    hidden: int = 0,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Metrics from out-of-fold predictions: every labeled image is scored by a head that never saw it.

    Used while too few labels are held out to validate on, so early rounds still get a learning-curve point
    without scoring the model on its own training data. Returns None with fewer than `MIN_CV_LABELS` labels, or
    fewer than `MIN_CV_PER_CLASS` per label on average (ten labels over ten digits say nothing about accuracy).
    """
    n = len(y)
    if n < max(MIN_CV_LABELS, MIN_CV_PER_CLASS * len(label_names)):
        return None
    k = min(folds, n)
    order = np.random.default_rng(seed).permutation(n)
    pred = np.empty(n, dtype=np.int64)
    for fold in range(k):
        test = order[fold::k]
        train = np.setdiff1d(order, test, assume_unique=True)
        head = train_head(x[train], y[train], len(label_names), hidden=hidden, seed=seed)
        pred[test] = predict_proba(head, x[test]).argmax(axis=1)
    metrics = classification_metrics(y.tolist(), pred.tolist(), list(label_names))
    metrics["validation"] = f"{k}-fold cross-validation"
    return metrics
