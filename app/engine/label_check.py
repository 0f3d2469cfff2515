"""Likely-wrong labels: out-of-fold predictions of the head on the cached embeddings, judged with each image's
nearest labeled neighbours (`app.core.label_issues`).

The out-of-fold probabilities come from the evaluation's cross-fitting (`app.engine.evaluation.cross_fit`) with
every label in a fold: each labeled image is scored by a head (the project's head settings) trained on the other
folds. :func:`find_suspects` works on plain arrays (the `check-labels` command); :func:`project_suspects` reads a
project's labels; :func:`cached_suspects` reads them with the labeled images' vectors from the embedding cache
(`ActiveLearningSession.suspects`, `app.engine.suspect_cache`): only those rows, never a float32 copy of the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.core.label_issues import label_issues
from app.core.settings import ProjectSettings
from app.core.store import ProjectStore
from app.engine.embedding_cache import EmbeddingCache
from app.engine.evaluation import cross_fit

MIN_LABELS = 10  # fewer labeled images than this: nothing is judged (each fold's head would learn from too few)
REPEATS = 2  # cross-fits with different folds, averaged: steadier out-of-fold probabilities (docs/benchmarks.md)


@dataclass(frozen=True)
class Suspect:
    """A labeled image whose label is likely wrong.

    Attributes:
        image_id: the image.
        label: its current label.
        suggested: the label the model and the image's neighbours find more likely.
        score: in [0, 1]; higher = more likely wrong (1 - the combined probability of `label`).
    """

    image_id: int
    label: str
    suggested: str
    score: float


def out_of_fold(
    x: np.ndarray, y: np.ndarray, num_classes: int, *, hidden: int = 0, max_epochs: int | None = None, seed: int = 0,
    repeats: int = REPEATS,
) -> np.ndarray | None:  # fmt: skip
    """Probabilities (N, C) of every labeled image from heads trained without its fold (None when impossible).

    Args:
        x: embeddings (N, D) of the labeled images; `y` their class indices.
        hidden, max_epochs: the heads' width and epochs (as the project's round); `seed` their seed and the folds'.
        repeats: cross-fits (each with other folds) whose probabilities are averaged.
    """
    rows = np.arange(len(y), dtype=np.int64)
    every = np.ones(len(y), dtype=bool)  # every label is scored out of fold, as the audit labels are
    total = None
    for r in range(max(repeats, 1)):
        probs = cross_fit(x, rows, y, every, num_classes, hidden=hidden, max_epochs=max_epochs, seed=seed + r)
        if probs is None:
            return None
        total = probs.astype(np.float64) if total is None else total + probs
    return total / max(repeats, 1)


def find_suspects(
    ids: Sequence[int],
    x: np.ndarray,
    y: np.ndarray,
    label_names: Sequence[str],
    *,
    hidden: int = 0,
    max_epochs: int | None = None,
    seed: int = 0,
    top: int | None = None,
) -> list[Suspect]:
    """The labeled images whose label is likely wrong, most suspicious first.

    Args:
        ids: the labeled images' ids; `x` their embeddings (N, D); `y` their class indices into `label_names`.
        hidden, max_epochs, seed: the fold heads' settings (see `out_of_fold`).
        top: at most this many (None = every suspected image).

    Returns:
        Empty with fewer than `MIN_LABELS` labeled images or fewer than two labels in use.
    """
    y = np.asarray(y, dtype=np.int64)
    if len(y) < MIN_LABELS or len(np.unique(y)) < 2:
        return []
    probs = out_of_fold(x, y, len(label_names), hidden=hidden, max_epochs=max_epochs, seed=seed)
    if probs is None:
        return []
    issues = label_issues(x, y, probs)
    ranked = issues.ranked if top is None else issues.ranked[: max(top, 0)]
    return [
        Suspect(int(ids[i]), label_names[y[i]], label_names[issues.suggested[i]], round(float(issues.score[i]), 4))
        for i in ranked
    ]


def project_suspects(
    store: ProjectStore, settings: ProjectSettings, ids: Sequence[int], x: np.ndarray, *, top: int | None = None
) -> list[Suspect]:
    """A project's likely-wrong labels from its current labels and the frozen embeddings `x` of the images `ids`.

    Args:
        ids: image ids (as the store lists them); `x` their embeddings in that order (float16 or float32, a memory
            map or an array: only the labeled images' rows are read, as float32).
        top: at most this many (None = every suspected image).
    """
    names = store.labels()
    index = {name: i for i, name in enumerate(names)}
    current = store.current_labels()
    rows = [r for r, image_id in enumerate(ids) if current.get(image_id) in index]
    labeled = [ids[r] for r in rows]
    y = np.array([index[current[i]] for i in labeled], dtype=np.int64)
    x_lab = np.asarray(x[np.asarray(rows, dtype=np.int64)] if rows else x[:0], dtype=np.float32)
    return find_suspects(
        labeled, x_lab, y, names, hidden=settings.head_hidden, max_epochs=settings.max_epochs, seed=settings.seed,
        top=top,
    )  # fmt: skip


def cached_suspects(
    store: ProjectStore,
    settings: ProjectSettings,
    cache: EmbeddingCache,
    ids: Sequence[int] | None = None,
    *,
    top: int | None = None,
) -> list[Suspect]:
    """`project_suspects` of the labeled images among `ids` (None: every image of the store) that `cache` holds.

    Only the labeled images' vectors are read from the cache (a few thousand rows), never the pool's: at 1M x 1280
    a float32 copy of every vector would be 5 GB.
    """
    wanted = np.asarray(store.image_ids() if ids is None else ids, dtype=np.int64).reshape(-1)
    current = store.current_labels()
    labeled = np.fromiter(current, dtype=np.int64, count=len(current))
    keep = wanted[np.isin(wanted, labeled) & np.isin(wanted, cache.ids())].tolist()
    return project_suspects(store, settings, keep, cache.get(keep), top=top) if keep else []
