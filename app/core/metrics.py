"""Classification metrics for a round, as plain JSON-ready values (they are stored with each round)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[str]) -> dict:
    """Accuracy, macro F1, per-class accuracy and the confusion matrix of class-index predictions.

    Args:
        y_true: true class index of each evaluated image, in `range(len(label_names))`.
        y_pred: predicted class index of each image, same length.
        label_names: class names; position = class index.

    Returns:
        A dict with Python scalars only:
        "accuracy": share of correct predictions (None when nothing was evaluated);
        "macro_f1": F1 averaged over the classes that occur in `y_true` or `y_pred` (a class that is neither
        present nor predicted has no defined F1 and would otherwise count as 0; None when nothing was evaluated);
        "per_class_accuracy": {name: recall of that class, or None when it has no true samples};
        "confusion": C x C counts, rows = true class, columns = predicted class;
        "labels": the class names; "n": number of evaluated images.

    Raises:
        ValueError: lengths differ or a class index is outside `range(len(label_names))`.
    """
    names = [str(n) for n in label_names]
    n_classes = len(names)
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} entries but y_pred has {p.size}; they must match.")
    for arr, what in ((t, "y_true"), (p, "y_pred")):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{what} holds a class index outside 0..{n_classes - 1} ({n_classes} label names).")
    n = int(t.size)
    if n == 0:
        return {
            "accuracy": None,
            "macro_f1": None,
            "per_class_accuracy": dict.fromkeys(names),
            "confusion": [[0] * n_classes for _ in range(n_classes)],
            "labels": names,
            "n": 0,
        }
    cm = confusion_matrix(t, p, labels=list(range(n_classes)))
    present = sorted(set(t.tolist()) | set(p.tolist()))
    macro_f1 = f1_score(t, p, labels=present, average="macro", zero_division=0)
    support = cm.sum(axis=1)
    per_class = {name: (float(cm[i, i] / support[i]) if support[i] else None) for i, name in enumerate(names)}
    return {
        "accuracy": float(np.trace(cm) / n),
        "macro_f1": float(macro_f1),
        "per_class_accuracy": per_class,
        "confusion": cm.astype(int).tolist(),
        "labels": names,
        "n": n,
    }
