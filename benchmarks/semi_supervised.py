"""The semi-supervised head: a head on the user's labels plus confident pseudo-labels of the unlabeled pool.

`SemiSupervisedLearner.fit` trains the head on the labels (as `HeadLearner`), pseudo-labels the pool where the head
and label spreading on a kNN graph of the embeddings agree with confidence (`pseudo_labels`), and trains a
fresh head on labels + pseudo-labels. The user's labels always win: a labeled image never gets a pseudo-label.
The result is a plain linear head (exports to timm and ONNX like any other); `SemiSupervisedFitted.basis` says what
its predictions rest on, for the page to show ("120 labels + 310 pseudo-labels").

Measured, not shipped (docs/benchmarks.md, section 6): on digits it needs fewer labels than the plain head (0.63x
against 0.68x to reach random at 200, 10 seeds), on the photo patches more (0.32x against 0.29x), so the app keeps
the plain head. The learner follows the app's seam (`fit(data, progress, stop) -> Fitted`), so wiring it into
`rounds.choose_learner` is one line if a later measurement says so.

Pseudo-labels come from two sources, combined by `pseudo_labels`:

- **label spreading** (Zhou et al. 2004; scikit-learn's `LabelSpreading`) on a k-nearest-neighbour graph of the
  embeddings (PCA-reduced like the strategies' distance work): each labeled image's class flows to its neighbours;
- **self-training**: the head's own probabilities.

A pool image gets a pseudo-label only when both agree and both are confident (probability >= `threshold`), at most
`per_class` times the labels of its class (so a class the head over-predicts cannot flood the training set). The
user's labels always win: labeled rows never get a pseudo-label, and a pseudo-label never reaches the labeled
rows.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from app.core.progress import ProgressFn
from app.core.strategies import reduce_dims
from app.engine.learners import FitData, Fitted, stopped
from app.engine.pool_scoring import pool_probs
from lit_models.train import train_head

SPREAD_NEIGHBORS = 10
SPREAD_ALPHA = 0.2  # share of a node's label mass that comes from its neighbours each step (0.2: labels stay put)
SPREAD_MAX_ROWS = 20_000  # bigger pools spread over a seeded sample of their unlabeled rows


def spread(
    x: np.ndarray, labeled: np.ndarray, y: np.ndarray, num_classes: int, *, neighbors: int = SPREAD_NEIGHBORS,
    alpha: float = SPREAD_ALPHA,
) -> np.ndarray:  # fmt: skip
    """Label spreading over a kNN graph of `x`: class distribution (N, C) of every row (labeled rows included).

    Args:
        x: embeddings (N, D), already reduced if they are wide.
        labeled: rows with a label; `y` their classes in [0, num_classes).
    """
    from sklearn.semi_supervised import LabelSpreading

    target = np.full(len(x), -1, dtype=np.int64)
    target[labeled] = y
    model = LabelSpreading(kernel="knn", n_neighbors=min(neighbors, len(x) - 1), alpha=alpha, max_iter=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on a few iterations are harmless here
        model.fit(np.asarray(x, dtype=np.float64), target)
    dist = np.zeros((len(x), num_classes), dtype=np.float64)
    dist[:, model.classes_[model.classes_ >= 0]] = model.label_distributions_
    dist = np.nan_to_num(dist)
    total = dist.sum(axis=1, keepdims=True)
    return np.where(total > 0, dist / np.maximum(total, 1e-12), 1.0 / num_classes)


def pseudo_labels(
    head_probs: np.ndarray, spread_probs: np.ndarray | None, labeled: np.ndarray, y: np.ndarray, *,
    threshold: float = 0.9, per_class: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Rows to train on with a pseudo-label, and their classes.

    Args:
        head_probs: the head's probabilities of every row (N, C).
        spread_probs: label spreading's distribution (N, C); None = self-training alone.
        labeled: rows with a user's label (never pseudo-labeled).
        y: their classes (for the per-class cap).
        threshold: minimum probability of the pseudo class in both sources.
        per_class: at most this many pseudo-labels per label of the class (the most confident first).

    Returns:
        (rows, classes), rows ascending.
    """
    n, c = head_probs.shape
    cls = head_probs.argmax(axis=1)
    conf = head_probs.max(axis=1)
    ok = conf >= threshold
    if spread_probs is not None:
        ok &= spread_probs.argmax(axis=1) == cls
        conf = np.minimum(conf, spread_probs[np.arange(n), cls])
        ok &= conf >= threshold
    ok[labeled] = False
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=c)
    keep = []
    for k in range(c):
        rows = np.flatnonzero(ok & (cls == k))
        cap = int(per_class * counts[k])
        if cap and len(rows):
            keep.append(rows[np.argsort(-conf[rows], kind="stable")[:cap]])
    rows = np.sort(np.concatenate(keep)) if keep else np.empty(0, dtype=np.int64)
    return rows, cls[rows]


def _no_rows() -> np.ndarray:
    return np.empty(0, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class SemiSupervisedFitted(Fitted):
    """A `Fitted` whose head also learned from pseudo-labels.

    Attributes:
        pseudo_ids: image ids trained on with a pseudo-label (none of them labeled by a person).
        n_labels: the user's labels it was trained on.
    """

    pseudo_ids: np.ndarray = field(default_factory=_no_rows)
    n_labels: int = 0

    @property
    def basis(self) -> str:
        """What the predictions rest on, in words a user reads."""
        return f"{self.n_labels} labels + {len(self.pseudo_ids)} pseudo-labels (the model's confident guesses)"


@dataclass(frozen=True)
class SemiSupervisedLearner:
    """Self-training with label spreading: labels, then confident pseudo-labels, then a fresh head on both.

    Attributes:
        method: "spread" (head and label spreading must agree), or "self" (the head's confidence alone).
        threshold: minimum probability of a pseudo-label (in each source).
        per_class: at most this many pseudo-labels per label of their class.
        hidden, max_epochs: as `HeadLearner`.
    """

    method: str = "spread"
    threshold: float = 0.9
    per_class: float = 2.0
    hidden: int = 0
    max_epochs: int | None = None
    trains: ClassVar[bool] = True

    def fit(self, data: FitData, progress: ProgressFn | None, stop: threading.Event | None) -> Fitted | None:
        start = time.perf_counter()
        rows, y = np.asarray(data.train_rows), np.asarray(data.y_train)
        c = len(data.label_names)
        common = {"hidden": self.hidden, "max_epochs": self.max_epochs, "seed": data.seed, "stop_event": stop}
        head = train_head(data.x[rows], y, c, progress=progress, **common)
        if stopped(stop):
            return None
        probs = pool_probs(head, data.x)
        extra, extra_y = self._pseudo(data.x, probs, rows, y, c, data.seed)
        if len(extra):
            head = train_head(
                np.concatenate([data.x[rows], data.x[extra]]), np.concatenate([y, extra_y]), c, **common
            )  # a fresh head: pseudo-labels do not start from the first head's mistakes
            if stopped(stop):
                return None
            probs = pool_probs(head, data.x)
        ids = np.asarray(data.ids)
        return SemiSupervisedFitted(
            head, tuple(data.label_names), ids=ids, probs=probs, train_seconds=time.perf_counter() - start,
            pseudo_ids=ids[extra], n_labels=len(rows),
        )  # fmt: skip

    def _pseudo(
        self, x: np.ndarray, probs: np.ndarray, rows: np.ndarray, y: np.ndarray, c: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pseudo-labeled rows of `x` and their classes (spreading over a sample of the pool when it is big)."""
        if self.method == "self":
            return pseudo_labels(probs, None, rows, y, threshold=self.threshold, per_class=self.per_class)
        others = np.setdiff1d(np.arange(len(x)), rows)
        if len(others) > SPREAD_MAX_ROWS:
            others = np.sort(np.random.default_rng(seed).choice(others, SPREAD_MAX_ROWS, replace=False))
        part = np.concatenate([rows, others])
        reduced = reduce_dims(np.asarray(x[part], dtype=np.float32), seed=seed)[0]
        dist = spread(reduced, np.arange(len(rows)), y, c)
        local, cls = pseudo_labels(
            probs[part], dist, np.arange(len(rows)), y, threshold=self.threshold, per_class=self.per_class
        )
        return part[local], cls
