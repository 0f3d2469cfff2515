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

Pick = tuple[int, str, float | None]


def pick_extension(store: ProjectStore, model: ModelState, settings: ProjectSettings, pool: list[int]) -> list[Pick]:
    """Up to a batch of (image id, strategy, score) picks from the unlabeled `pool`, in batch order."""
    k = min(settings.batch_size, len(pool))
    probs = model.probs_for(pool)
    if probs is None:
        rng = np.random.default_rng(settings.seed + store.current_round() + len(pool))
        picks = rng.choice(len(pool), size=k, replace=False)
        return [(pool[int(i)], "random", None) for i in picks]
    labeled = list(store.current_labels())
    cache = model.current_cache()  # the features the current model reads (fine-tuned or frozen)
    try:
        pool_emb, labeled_emb = cache.get(pool), cache.get(labeled)
    except KeyError:  # images added since the last round have no embedding yet
        pool_emb = labeled_emb = None
    strategy = settings.strategy if pool_emb is not None else "margin"
    seed = settings.seed
    # random checks are part of the extension too (a repeatable draw: a peek and the extension agree)
    drawn = draw_audit(len(pool), audit_count(k, settings.audit_share, has_model=True), seed + len(pool))
    rest = np.setdiff1d(np.arange(len(pool)), drawn)
    chosen = []
    if k > len(drawn):
        emb = None if pool_emb is None else pool_emb[rest]
        sel = select_batch(
            strategy, k - len(drawn), probs=probs[rest], pool_emb=emb, labeled_emb=labeled_emb, seed=seed
        )
        chosen = [(pool[int(rest[i])], sel.strategy, float(s)) for i, s in zip(sel.indices, sel.scores, strict=True)]
    return place_audit(chosen, [(pool[int(i)], AUDIT, float("nan")) for i in drawn], k)
