"""Sources of images for the review grid, each a list of image ids with the model's guess and why they are shown.

- *Confident guesses for a label*: unlabeled images the model assigns to that label, most confident first
  (calibrated probabilities: the round folds its temperature into the head);
- *More like this*: the unlabeled images nearest to one image in the cached embeddings;
- *Labeled as ...*: labeled images by label and annotator, newest first, to find and fix mistakes;
- *Likely wrong labels*: labeled images ranked by the label checker (`app.engine.suspect_cache`), each with the
  label the checker suggests.

Images the current batch holds as random checks (audit) are never offered: their labels must come from the
labeling panel, so the accuracy measured on them stays honest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.pool_rows import NUMPY, Dense, blocks
from app.engine import suspect_cache
from app.engine.pool_scoring import torch_dense
from app.engine.session import ActiveLearningSession


@dataclass(frozen=True)
class Tile:
    """One image of a grid page.

    Attributes:
        image_id: the image.
        guess: the model's label for it (None before a model).
        confidence: the model's probability of `guess`.
        label: its current label, if it has one.
        suggested: the label checker's suggestion for a likely-wrong label.
    """

    image_id: int
    guess: str | None
    confidence: float | None
    label: str | None = None
    suggested: str | None = None


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
    """The unlabeled images nearest to `image_id` in the cached embeddings (cosine), nearest first.

    Exact, by one matrix-vector product over the candidates, read block by block from the cache's float16 memory
    map (no float32 copy of the pool; docs/benchmarks.md, "More like this at scale").
    """
    cache = session.model.current_cache()
    ids = cache.ids()
    where = np.flatnonzero(ids == int(image_id))
    if not len(where):
        return []
    taken = set(session.store.current_labels()) | _held_out(session)
    keep = ~np.isin(ids, np.fromiter(taken, dtype=np.int64, count=len(taken)))
    keep[where] = False
    candidates = np.flatnonzero(keep)  # rows of the cache, in its order
    if not len(candidates) or limit <= 0:
        return []
    x = cache.matrix(ids)  # the memory map itself (every cached image, in the cache's order)
    rows = nearest(x, x[int(where[0])], limit, rows=candidates, dense=torch_dense())
    return _with_guesses(session, [int(ids[candidates[r]]) for r in rows])


def nearest(
    vectors: np.ndarray, query: np.ndarray, k: int, *, rows: np.ndarray | None = None, dense: Dense = NUMPY
) -> np.ndarray:
    """Positions among `rows` of `vectors` (None: every row) by cosine similarity to `query` (D,), the `k`
    nearest first (ties: lower position first).

    `vectors` (N, D) may be float16 (the embedding cache's memory map): it is read `pool_rows.BLOCK_ROWS` rows at a
    time, each block widened to float32 (`dense.widen`) and its mapped pages given back, so nothing pool-sized but
    the similarities (4 bytes a row) is allocated. When `rows` are most of `vectors`, every row is read in order
    (no gather) and the similarities of `rows` kept.
    """
    q = np.asarray(query, dtype=np.float32).reshape(-1, 1)
    every = rows is None or 2 * len(rows) >= len(vectors)  # most rows (a pool): read them all in order, no gather
    sims = np.empty(len(vectors) if every else len(rows), dtype=np.float32)
    for s, block in blocks(vectors, None if every else rows, widen=dense.widen):
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        sims[s : s + len(block)] = dense.matmul(block, q)[:, 0] / np.maximum(norms, 1e-12)
        del block, norms  # one block alive at a time, not two while the next is read
    if every and rows is not None:
        sims = sims[rows]
    k = min(k, len(sims))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
    return top[np.lexsort((top, -sims[top]))]


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


def likely_wrong(
    session: ActiveLearningSession, limit: int, skip: int = 0, passed: set[int] = frozenset()
) -> list[Tile]:
    """Labeled images whose label is likely wrong and not checked yet, most suspicious first, leaving out
    `passed`; each with its label and the suggestion (`confidence` is the checker's score). Starts the checker in
    the background when what it keeps is from an earlier round."""
    suspect_cache.refresh(session)
    found = [s for s in suspect_cache.open_suspects(session) if s.image_id not in passed][skip : skip + limit]
    return [Tile(s.image_id, s.suggested, s.score, s.label, s.suggested) for s in found]


def _with_guesses(session: ActiveLearningSession, image_ids: list[int]) -> list[Tile]:
    """Tiles for `image_ids` with the current model's guess (one lookup of the scored pool for the whole page)."""
    probs = session.model.probs_for(image_ids) if image_ids else None
    if probs is None:
        return [Tile(i, None, None) for i in image_ids]
    names = session.model.label_names
    best = probs.argmax(axis=1)
    return [Tile(i, names[int(b)], float(p[b])) for i, b, p in zip(image_ids, best, probs, strict=True)]
