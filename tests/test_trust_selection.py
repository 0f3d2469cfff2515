"""The strategy picks without seeing the audit labels; the model the user sees still trains on them."""

from __future__ import annotations

import functools

import numpy as np

from app.core.audit import AUDIT
from app.engine.evaluation import evaluate
from app.engine.learners import HeadLearner
from app.engine.rounds import RoundData, run
from app.engine.selection_head import without_audit


def blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 8)) * 1.5  # overlapping classes: the margins depend on every label
    y = np.arange(n) % 3
    return (centers[y] + rng.normal(size=(n, 8))).astype(np.float32), y


def a_round(y_labeled: np.ndarray, audit: np.ndarray, x: np.ndarray):
    data = RoundData.from_arrays(x, np.arange(len(y_labeled)), y_labeled, num_classes=3, seed=4, audit=audit)
    ev = functools.partial(evaluate, max_epochs=5, seed=0)
    return run(data, HeadLearner(max_epochs=5), strategy="margin", k=12, evaluate=ev, audit_share=0.1, size=10)


def test_the_batch_does_not_see_the_audit_labels_while_the_shown_model_does():
    x, y = blobs(300)
    labeled = y[:60].copy()
    audit = np.arange(60) % 6 == 0  # 10 audit labels
    before = a_round(labeled, audit, x)
    changed = labeled.copy()
    changed[audit] = (changed[audit] + 1) % 3  # every audit label now names another class
    after = a_round(changed, audit, x)

    assert [p[:2] for p in after.picks] == [p[:2] for p in before.picks]  # the same batch, picked the same way
    assert [p[1] for p in before.picks].count(AUDIT) == 1
    assert not np.allclose(after.fitted.probs, before.fitted.probs, atol=1e-3)  # the shown model trained on them
    assert after.metrics["accuracy"] != before.metrics["accuracy"]

    strategy_label = changed.copy()
    some = np.flatnonzero(~audit)[:10]
    strategy_label[some] = (strategy_label[some] + 1) % 3  # a change the strategy does see
    assert [p[0] for p in a_round(strategy_label, audit, x).picks] != [p[0] for p in before.picks]


def test_without_audit_keeps_the_pool_and_drops_only_audit_rows():
    x, y = blobs(50)
    audit = np.arange(20) % 5 == 0
    data = RoundData.from_arrays(x, np.arange(20), y[:20], num_classes=3, seed=1, audit=audit)
    blind = without_audit(data)
    assert blind is not None and blind.labeled_rows.tolist() == [r for r in range(20) if r % 5]
    assert blind.y.tolist() == y[:20][~audit].tolist() and not blind.audit.any()
    assert np.array_equal(blind.pool_rows, data.pool_rows) and blind.seed == data.seed
    assert without_audit(RoundData.from_arrays(x, np.arange(20), y[:20], num_classes=3, seed=1)) is None
    assert (
        without_audit(RoundData.from_arrays(x, np.arange(3), y[:3], num_classes=3, seed=1, audit=np.ones(3, bool)))
        is None
    )
