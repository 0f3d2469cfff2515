"""Classification metrics for a round, as plain JSON-ready values (they are stored with each round)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score

MATRIX_MAX_CLASSES = 12  # the dashboard draws a full confusion matrix up to this many classes
TOP_CONFUSIONS = 15  # the most frequent mistakes stored with each round


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[str]) -> dict:
    """Accuracy, macro F1, per-class accuracy and the most frequent mistakes of class-index predictions.

    The full confusion matrix is kept only for up to `MATRIX_MAX_CLASSES` classes, so a round with many classes
    stays a few kilobytes however many labels the project has.

    Args:
        y_true: true class index of each evaluated image, in `range(len(label_names))`.
        y_pred: predicted class index of each image, same length.
        label_names: class names; position = class index.

    Returns:
        A dict with Python scalars only:
        "accuracy": share of correct predictions (None when nothing was evaluated);
        "macro_f1": F1 averaged over the classes that occur in `y_true` or `y_pred` (a class that is neither
        present nor predicted has no defined F1 and would otherwise count as 0; None when nothing was evaluated);
        "per_class_accuracy": {name: recall of that class, or None when it has no true samples}; with more than
        `MATRIX_MAX_CLASSES` classes only the classes with true samples are listed;
        "top_confusions": up to `TOP_CONFUSIONS` [true name, predicted name, count] of the most frequent mistakes,
        largest count first;
        "n": number of evaluated images;
        and, with at most `MATRIX_MAX_CLASSES` classes, "confusion": C x C counts (rows = true class, columns =
        predicted class) and "labels": the class names.

    Raises:
        ValueError: lengths differ or a class index is outside `range(len(label_names))`.
    """
    names = [str(n) for n in label_names]
    t, p = _checked(y_true, y_pred, len(names))
    support = np.bincount(t, minlength=len(names))
    correct = np.bincount(t[t == p], minlength=len(names))
    small = len(names) <= MATRIX_MAX_CLASSES
    metrics: dict = {
        "accuracy": float(correct.sum() / t.size) if t.size else None,
        "macro_f1": _macro_f1(t, p),
        "per_class_accuracy": {
            name: (float(correct[i] / support[i]) if support[i] else None)
            for i, name in enumerate(names)
            if small or support[i]
        },
        "top_confusions": _top_confusions(t, p, names),
        "n": int(t.size),
    }
    if small:
        metrics["confusion"] = _matrix(t, p, len(names)).tolist()
        metrics["labels"] = names
    return metrics


def top_confusions(matrix: Sequence[Sequence[int]], label_names: Sequence[str]) -> list[list]:
    """The most frequent mistakes of a full confusion matrix (rows = true class), as stored with a round.

    Args:
        matrix: C x C counts, rows = true class, columns = predicted class.
        label_names: class names; position = class index.

    Returns:
        Up to `TOP_CONFUSIONS` [true name, predicted name, count], largest count first.
    """
    if not len(matrix):
        return []
    cm = np.asarray(matrix, dtype=np.int64).reshape(len(matrix), -1)
    t, p = np.nonzero(cm)
    counts = cm[t, p]
    return _top_confusions(np.repeat(t, counts), np.repeat(p, counts), [str(n) for n in label_names])


def _checked(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} entries but y_pred has {p.size}; they must match.")
    for arr, what in ((t, "y_true"), (p, "y_pred")):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{what} holds a class index outside 0..{n_classes - 1} ({n_classes} label names).")
    return t, p


def _macro_f1(t: np.ndarray, p: np.ndarray) -> float | None:
    if not t.size:
        return None
    present = sorted(set(t.tolist()) | set(p.tolist()))
    return float(f1_score(t, p, labels=present, average="macro", zero_division=0))


def _matrix(t: np.ndarray, p: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _top_confusions(t: np.ndarray, p: np.ndarray, names: list[str]) -> list[list]:
    wrong = t != p
    codes, counts = np.unique(t[wrong] * len(names) + p[wrong], return_counts=True)
    order = np.argsort(-counts, kind="stable")[:TOP_CONFUSIONS]
    return [[names[codes[i] // len(names)], names[codes[i] % len(names)], int(counts[i])] for i in order]
