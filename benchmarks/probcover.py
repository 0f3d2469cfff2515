"""ProbCover (Yehuda et al. 2022): a cold start that covers the embedding space with delta-balls (measured against
the app's TypiClust cold start; not shipped: TypiClust is better on both benchmark sets, docs/benchmarks.md).

Every pool point is a ball of radius `delta` around it; the greedy max-coverage pick is the point whose ball holds
the most points not yet covered (by labeled points or earlier picks). `delta` comes from the data: the largest
radius at which balls stay pure with respect to a k-means clustering (at least `PURITY` of the edges join points of
the same cluster), as the paper sets it. Pure numpy + scikit-learn; wide embeddings are PCA-reduced first like the
strategies' distance work, and pools bigger than `MAX_ROWS` are covered through a seeded sample.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from app.core.strategies import reduce_dims

PURITY = 0.95
MAX_ROWS = 3_000  # the (n, n) distance matrix of the sample: 36 MB
_QUANTILES = np.linspace(0.002, 0.2, 25)  # candidate deltas: these quantiles of the pairwise distances


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)), float32."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    sq = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


def choose_delta(d: np.ndarray, clusters: np.ndarray, purity: float = PURITY) -> float:
    """The largest candidate radius at which at least `purity` of the ball edges stay within one cluster."""
    off = d[~np.eye(len(d), dtype=bool)]
    same = clusters[:, None] == clusters[None, :]
    best = float(np.quantile(off, _QUANTILES[0]))
    for q in _QUANTILES:
        delta = float(np.quantile(off, q))
        edges = (d <= delta) & ~np.eye(len(d), dtype=bool)
        if edges.sum() and (edges & same).sum() / edges.sum() >= purity:
            best = delta
        else:
            break
    return best


def max_coverage(d: np.ndarray, delta: float, k: int, covered: np.ndarray | None = None) -> np.ndarray:
    """Greedy max-coverage: `k` rows whose `delta`-balls cover the most rows not yet `covered`."""
    balls = d <= delta
    cov = np.zeros(len(d), dtype=bool) if covered is None else covered.copy()
    picks: list[int] = []
    for _ in range(min(k, len(d))):
        gain = (balls & ~cov[None, :]).sum(axis=1)
        gain[picks] = -1
        i = int(np.argmax(gain))
        if gain[i] <= 0:  # everything covered: the rest by distance to the picks (farthest first)
            rest = np.setdiff1d(np.arange(len(d)), picks)
            far = d[np.ix_(rest, picks)].min(axis=1) if picks else np.zeros(len(rest))
            picks.extend(rest[np.argsort(-far, kind="stable")][: k - len(picks)].tolist())
            break
        picks.append(i)
        cov |= balls[i]
    return np.asarray(picks, dtype=np.int64)


def prob_cover(
    pool_emb: np.ndarray, k: int, seed: int = 0, *, labeled_emb: np.ndarray | None = None, n_clusters: int = 0
) -> np.ndarray:
    """ProbCover picks: `k` distinct pool positions.

    Args:
        pool_emb: unlabeled embeddings (N, D).
        labeled_emb: labeled embeddings, whose balls count as covered.
        n_clusters: clusters for choosing delta; 0 = max(10, k).
    """
    n = len(pool_emb)
    if k <= 0 or n == 0:
        return np.empty(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    sample = np.arange(n) if n <= MAX_ROWS else np.sort(rng.choice(n, MAX_ROWS, replace=False))
    lab = None if labeled_emb is None or not len(labeled_emb) else np.asarray(labeled_emb, dtype=np.float32)
    parts = reduce_dims(np.asarray(pool_emb[sample], dtype=np.float32), *([lab] if lab is not None else []), seed=seed)
    x = parts[0]
    with threadpool_limits(limits=1):
        model = KMeans(min(len(x), n_clusters or max(10, k)), n_init=3, random_state=seed).fit(x.astype(np.float64))
    d = distances(x, x)
    delta = choose_delta(d, model.labels_)
    covered = None if lab is None else (distances(parts[1], x) <= delta).any(axis=0)
    return sample[max_coverage(d, delta, k, covered)]
