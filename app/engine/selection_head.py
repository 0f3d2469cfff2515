"""The model a round selects with: the head trained without the audit labels.

Audit labels are drawn at random from the pool so that the accuracy measured on them (cross-fitted,
`app.engine.evaluation`) is an honest sample. If the strategy saw them, it would stop picking images near them (the
model is sure there, because the audit label taught it), so each audit label would be left alone in its region and,
out of fold, be harder than a fresh random image: the estimate would run low and the temperature fit on it high. So
each round picks its batch with a head trained on the strategy's labels only, while the model the user sees and
exports (predictions, exports, checkpoints) still trains on every label.

Only the head on cached embeddings gets this second fit (one more head fit and pool scoring per round); fine-tune mode
and an imported classifier select with the round's own model.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np

from app.engine.learners import Fitted, HeadLearner, Learner

RoundData = TypeVar("RoundData", bound=Any)  # app.engine.rounds.RoundData, which imports this module


def without_audit(data: RoundData) -> RoundData | None:
    """The round's data without its audit labels (pool and seed unchanged); None when it has no audit labels or
    nothing else would be left to train on."""
    if data.audit is None:
        return None
    keep = ~np.asarray(data.audit, dtype=bool)
    if keep.all() or not (keep & ~data.val).any():
        return None
    return replace(
        data,
        labeled_rows=data.labeled_rows[keep],
        y=data.y[keep],
        val=data.val[keep],
        audit=np.zeros(int(keep.sum()), dtype=bool),
    )


def selection_inputs(
    data: RoundData, learner: Learner | None, fitted: Fitted | None, stop: threading.Event | None
) -> tuple[RoundData, Fitted | None]:
    """The data and model a round's strategy picks with: without the audit labels when the learner is the head on
    cached embeddings and the round has audit labels, otherwise the round's own data and model.

    The head without the audit labels is not calibrated: the temperature is fit on the audit labels, and its
    ranking would let them back in. The caller checks `stop` afterwards (the fit may have been cancelled).
    """
    if fitted is None or not isinstance(learner, HeadLearner):
        return data, fitted
    blind = without_audit(data)
    if blind is None:
        return data, fitted
    chooser = learner.fit(blind, None, stop)
    return (data, fitted) if chooser is None else (blind, chooser)
