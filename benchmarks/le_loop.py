"""The labeling loop of the label-efficiency benchmark: the app's round (`app.engine.rounds.run`) with any learner.

Like `app.engine.simulate.run_curve` (oracle labels, every label trained on, the test set measures), but the
learner is a parameter, so the semi-supervised head runs the same rounds as the plain one, and the initial labels
can come from any cold start.
"""

from __future__ import annotations

import numpy as np

from app.engine.learners import HeadLearner, Learner
from app.engine.rounds import RoundData, run
from lit_models.train import predict_proba, train_head

COLD_STARTS = ("random", "typiclust", "probcover")


def initial_rows(x: np.ndarray, n: int, seed: int, how: str = "random") -> np.ndarray:
    """The first `n` labeled pool rows: random, TypiClust (the app's cold start) or ProbCover."""
    if how == "typiclust":
        from app.core.strategies import typical_clusters

        return typical_clusters(x, n, seed=seed)
    if how == "probcover":
        from benchmarks.probcover import prob_cover

        return prob_cover(x, n, seed=seed)
    return np.random.default_rng(seed).choice(len(x), size=n, replace=False)


def run_curve(
    x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *, num_classes: int, strategy: str,
    initial: np.ndarray, batch: int, budget: int, seed: int, learner: Learner | None = None,
) -> tuple[list[int], list[float], list[float]]:  # fmt: skip
    """One labeling run: (labels at each point, test accuracy, seconds per round)."""
    learner = learner or HeadLearner()
    labeled = [int(r) for r in initial]
    counts: list[int] = []
    accs: list[float] = []
    secs: list[float] = []
    while True:
        lab = np.array(labeled, dtype=np.int64)
        data = RoundData.from_arrays(x, lab, y[lab], num_classes=num_classes, seed=seed * 1000 + len(counts))
        k = min(batch, budget - len(labeled), len(data.pool_rows))
        result = run(data, learner, strategy=strategy, k=max(k, 1))
        counts.append(len(labeled))
        accs.append(float((predict_proba(result.fitted.head, x_test).argmax(axis=1) == y_test).mean()))
        if k <= 0:
            return counts, accs, secs
        secs.append(result.seconds)
        labeled.extend(image_id for image_id, _, _ in result.picks[:k])


def full_pool_accuracy(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, num_classes: int) -> float:
    """Test accuracy of the app's head trained on every pool label (the ceiling the 95 % / 99 % targets refer to)."""
    head = train_head(x, y, num_classes, seed=0)
    return float((predict_proba(head, x_test).argmax(axis=1) == y_test).mean())
