"""The batch's extension: the images a batch grows by when a tab has used it up while the model still trains.

Picked by the current model with the project's strategy (at random before any model), with random checks
(audit picks) among them like any batch, so the accuracy estimate keeps its random sample.
"""

from __future__ import annotations

import numpy as np

from app.core.audit import AUDIT, audit_count, draw_audit, place_audit
from app.core.settings import ProjectSettings
from app.core.store import ProjectStore
from app.core.strategies import select_batch
from app.engine.model_state import ModelState
from app.engine.pool_scoring import torch_dense

Pick = tuple[int, str, float | None]


def pick_extension(store: ProjectStore, model: ModelState, settings: ProjectSettings, pool: list[int]) -> list[Pick]:
    """Up to a batch of (image id, strategy, score) picks from the unlabeled `pool`, in batch order."""
    k = min(settings.batch_size, len(pool))
    probs = model.probs_for(pool)
    if probs is None:
        rng = np.random.default_rng(settings.seed + store.current_round() + len(pool))
        picks = rng.choice(len(pool), size=k, replace=False)
        return [(pool[int(i)], "random", None) for i in picks]
    cache = model.current_cache()  # the features the current model reads (fine-tuned or frozen)
    cached = cache.ids()
    pool_rows, labeled_rows = rows_of(cached, pool), rows_of(cached, list(store.current_labels()))
    x = None  # images added since the last round have no embedding yet: no embeddings at all
    if pool_rows is not None and labeled_rows is not None:
        x = cache.matrix(cached)  # the memory map itself: the pool's rows are read block by block, never copied
    strategy = settings.strategy if x is not None else "margin"
    seed = settings.seed
    # random checks are part of the extension too (a repeatable draw: a peek and the extension agree)
    drawn = draw_audit(len(pool), audit_count(k, settings.audit_share, has_model=True), seed + len(pool))
    rest = np.setdiff1d(np.arange(len(pool)), drawn)
    chosen = []
    if k > len(drawn):
        sel = select_batch(
            strategy, k - len(drawn), probs=probs[rest], pool_emb=x,
            pool_rows=None if x is None or pool_rows is None else pool_rows[rest],
            labeled_emb=None if x is None or labeled_rows is None else x[labeled_rows], seed=seed, dense=torch_dense(),
        )  # fmt: skip
        chosen = [(pool[int(rest[i])], sel.strategy, float(s)) for i, s in zip(sel.indices, sel.scores, strict=True)]
    return place_audit(chosen, [(pool[int(i)], AUDIT, float("nan")) for i in drawn], k)


def rows_of(cached: np.ndarray, image_ids: list[int]) -> np.ndarray | None:
    """The row of each of `image_ids` among the `cached` ids (`EmbeddingCache.ids`), or None when one has none."""
    wanted = np.asarray(image_ids, dtype=np.int64).reshape(-1)
    if len(wanted) == len(cached) and np.array_equal(wanted, cached):
        return np.arange(len(wanted), dtype=np.int64)
    if not len(wanted):
        return np.empty(0, dtype=np.int64)
    if not len(cached):
        return None
    order = np.argsort(cached, kind="stable")
    rows = order[np.clip(np.searchsorted(cached, wanted, sorter=order), 0, len(order) - 1)]
    return rows if bool(np.all(cached[rows] == wanted)) else None
