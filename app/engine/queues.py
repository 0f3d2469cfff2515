"""Sources of images for the review grid, each a list of image ids with the model's guess and why they are shown.

- *Confident guesses for a label*: unlabeled images the model assigns to that label, most confident first
  (calibrated probabilities: the round folds its temperature into the head);
- *More like this*: the unlabeled images nearest to one image in the cached embeddings;
- *Labeled as ...*: labeled images by label and annotator, newest first, to find and fix mistakes.

Images the current batch holds as random checks (audit) are never offered: their labels must come from the
labeling panel, so the accuracy measured on them stays honest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors

from app.engine.session import ActiveLearningSession


@dataclass(frozen=True)
class Tile:
    """One image of a grid page.

    Attributes:
        image_id: the image.
        guess: the model's label for it (None before a model).
        confidence: the model's probability of `guess`.
        label: its current label, if it has one.
    """

    image_id: int
    guess: str | None
    confidence: float | None
    label: str | None = None


def _held_out(session: ActiveLearningSession) -> set[int]:
    """Images the grid never offers: random checks still open in the batch."""
    return {b.image_id for b in session.batch() if b.strategy == "audit" and b.status == "pending"}


def confident(session: ActiveLearningSession, label: str, limit: int, skip: int = 0) -> list[Tile]:
    """Unlabeled images the model assigns to `label`, most confident first (page `skip // limit`)."""
    scored = session.model.scored()
    names = session.model.label_names
    if scored is None or label not in names:
        return []
    ids, probs = scored
    column = names.index(label)
    labeled = set(session.store.current_labels())
    held = _held_out(session) | labeled
    mine = np.flatnonzero(probs.argmax(axis=1) == column)
    order = mine[np.argsort(-probs[mine, column], kind="stable")]
    tiles = [Tile(int(ids[r]), label, float(probs[r, column])) for r in order if int(ids[r]) not in held]
    return tiles[skip : skip + limit]


def similar(session: ActiveLearningSession, image_id: int, limit: int) -> list[Tile]:
    """The unlabeled images nearest to `image_id` in the cached embeddings (cosine), nearest first."""
    cache = session.model.current_cache()
    pool = [int(i) for i in cache.ids().tolist()]
    if int(image_id) not in set(pool):
        return []
    labeled = set(session.store.current_labels()) | _held_out(session)
    candidates = [i for i in pool if i not in labeled and i != int(image_id)]
    if not candidates:
        return []
    vectors = cache.get(candidates)
    finder = NearestNeighbors(n_neighbors=min(limit, len(candidates)), metric="cosine").fit(vectors)
    _, rows = finder.kneighbors(cache.get([int(image_id)]))
    found = [candidates[r] for r in rows[0]]
    return _with_guesses(session, found)


def labeled_as(
    session: ActiveLearningSession, label: str | None, annotator: str | None, limit: int, skip: int = 0
) -> list[Tile]:
    """Labeled images (of `label`, by `annotator`, when given), most recently labeled first."""
    current = session.store.current_labels()
    newest: dict[int, tuple[int, str]] = {}
    for a in session.store.history():
        if not a.undone and current.get(a.image_id) == a.label:
            newest[a.image_id] = (a.id, a.annotator)
    found = [
        i
        for i, (_, who) in sorted(newest.items(), key=lambda kv: -kv[1][0])
        if (label is None or current[i] == label) and (annotator is None or who == annotator)
    ]
    tiles = _with_guesses(session, found[skip : skip + limit])
    return [Tile(t.image_id, t.guess, t.confidence, current.get(t.image_id)) for t in tiles]


def _with_guesses(session: ActiveLearningSession, image_ids: list[int]) -> list[Tile]:
    """Tiles for `image_ids` with the current model's guess (one lookup of the scored pool for the whole page)."""
    probs = session.model.probs_for(image_ids) if image_ids else None
    if probs is None:
        return [Tile(i, None, None) for i in image_ids]
    names = session.model.label_names
    best = probs.argmax(axis=1)
    return [Tile(i, names[int(b)], float(p[b])) for i, b, p in zip(image_ids, best, probs, strict=True)]
