"""Strategies the label-efficiency benchmark compares against that the app does not ship, and the peer library.

- `peer_curve`: scikit-activeml's `UncertaintySampling` (margin) with its own `SklearnClassifier(LogisticRegression)`;
- `candidate_curve`: BADGE, Cluster-Margin, PowerMargin and class-balanced margin on the app's head;
- `near_duplicates`: a pool where every image comes several times with a little noise.
"""

from __future__ import annotations

import time

import numpy as np


def peer_curve(
    x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *, initial: np.ndarray, batch: int,
    budget: int, seed: int, num_classes: int,
) -> tuple[list[int], list[float], list[float], list[float]]:  # fmt: skip
    """scikit-activeml margin sampling with a logistic regression, batch by batch.

    Returns (label counts, peer accuracy, accuracy of the app's head trained on the peer's picks, seconds/round).
    """
    from skactiveml.classifier import SklearnClassifier
    from skactiveml.pool import UncertaintySampling
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from lit_models.train import predict_proba, train_head

    y_query = np.full(len(y), np.nan)
    y_query[initial] = y[initial]
    clf = SklearnClassifier(LogisticRegression(max_iter=1000), classes=np.arange(num_classes), random_state=seed)
    qs = UncertaintySampling(method="margin_sampling", random_state=seed)
    counts, accs, head_accs, seconds = [], [], [], []
    while True:
        lab = np.flatnonzero(~np.isnan(y_query))
        start = time.perf_counter()
        with threadpool_limits(limits=1):  # threaded BLAS on a tiny problem crawls when the CPU is shared
            clf.fit(x, y_query)
        counts.append(len(lab))
        accs.append(float((clf.predict(x_test) == y_test).mean()))
        head = train_head(x[lab], y[lab], num_classes, seed=seed)
        head_accs.append(float((predict_proba(head, x_test).argmax(axis=1) == y_test).mean()))
        k = min(batch, budget - len(lab))
        if k <= 0:
            break
        with threadpool_limits(limits=1):
            picks = qs.query(x, y_query, clf=clf, fit_clf=False, batch_size=k)
        seconds.append(time.perf_counter() - start)
        y_query[picks] = y[picks]
    return counts, accs, head_accs, seconds


def badge(probs: np.ndarray, x_red: np.ndarray, k: int, seed: int) -> np.ndarray:
    """BADGE (Ash et al. 2020): k-means++ seeding over last-layer gradient embeddings (p - onehot(argmax)) x features.

    Distances between gradient embeddings come from the Kronecker identity <r_i (x) x_i, r_j (x) x_j> =
    <r_i, r_j> <x_i, x_j>, so the (N, C x D) matrix is never built; `x_red` are PCA-reduced features.
    """
    r = probs.astype(np.float64).copy()
    r[np.arange(len(r)), r.argmax(axis=1)] -= 1.0
    xr = x_red.astype(np.float64)
    norms = (r * r).sum(axis=1) * (xr * xr).sum(axis=1)
    rng = np.random.default_rng(seed)
    picks = [int(np.argmax(norms))]
    d2 = np.full(len(r), np.inf)
    while len(picks) < k:
        i = picks[-1]
        d2 = np.minimum(d2, np.maximum(norms + norms[i] - 2.0 * (r @ r[i]) * (xr @ xr[i]), 0.0))
        d2[picks] = 0.0
        if d2.sum() <= 0:
            rest = np.setdiff1d(np.arange(len(r)), picks)
            picks.extend(rng.choice(rest, size=k - len(picks), replace=False).tolist())
            break
        picks.append(int(rng.choice(len(r), p=d2 / d2.sum())))
    return np.asarray(picks, dtype=np.int64)


def power_margin(probs: np.ndarray, k: int, seed: int, beta: float = 8.0) -> np.ndarray:
    """PowerMargin (Kirsch et al. 2023, "Stochastic batch acquisition"): k items drawn without replacement with
    probability proportional to score ** beta (Gumbel top-k on beta * log score), score = the app's margin score."""
    from app.core.scoring import margin, top_k

    gumbel = np.random.default_rng(seed).gumbel(size=len(probs))
    return top_k(beta * np.log(np.maximum(margin(probs), 1e-12)) + gumbel, k)


def cluster_margin(probs: np.ndarray, clusters: np.ndarray, k: int, seed: int, factor: int = 10) -> np.ndarray:
    """Cluster-Margin (Citovsky et al. 2021): the `factor` x k lowest-margin items, round-robin over their clusters
    (smallest cluster first, a random member each time); `clusters` is a clustering of the pool made once."""
    from app.core.scoring import margin, top_k

    cand = top_k(margin(probs), min(len(probs), factor * k))
    rng = np.random.default_rng(seed)
    groups = [list(rng.permutation(cand[clusters[cand] == c])) for c in np.unique(clusters[cand])]
    groups.sort(key=len)
    picks: list[int] = []
    while len(picks) < k:
        for g in groups:
            if g and len(picks) < k:
                picks.append(int(g.pop()))
    return np.asarray(picks, dtype=np.int64)


def class_balanced(probs: np.ndarray, k: int, *, scores: np.ndarray | None = None) -> np.ndarray:
    """Class-balanced margin (small-text's `ClassBalancer` in spirit): the batch round-robin over the classes the
    model predicts for the pool, the most uncertain image predicted as each class in turn (for skewed pools).

    Measured and not shipped: on the skewed patches it is below margin_diverse (docs/benchmarks.md, section 6).
    """
    from app.core.scoring import margin

    s = margin(probs) if scores is None else np.asarray(scores, dtype=np.float64)
    k = min(k, len(s))
    predicted = np.asarray(probs).argmax(axis=1)
    order = np.lexsort((np.arange(len(s)), -s, predicted))  # by predicted class, most uncertain first, then index
    starts = np.flatnonzero(np.r_[True, predicted[order][1:] != predicted[order][:-1]])
    ends = np.r_[starts[1:], len(order)]
    queues = [order[a : min(b, a + k)] for a, b in zip(starts, ends, strict=True)]  # no class gives more than k
    queues.sort(key=lambda q: -s[q[0]])  # the class of the most uncertain image starts
    picks: list[int] = []
    depth = 0
    while len(picks) < k:
        for q in queues:
            if depth < len(q) and len(picks) < k:
                picks.append(int(q[depth]))
        depth += 1
    return np.asarray(picks, dtype=np.int64)


def candidate_curve(
    name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *, initial: np.ndarray,
    batch: int, budget: int, seed: int, num_classes: int,
) -> tuple[list[int], list[float], list[float]]:  # fmt: skip
    """A labeling run with a strategy the app does not ship (badge, cluster_margin, power_margin), on the app's head."""
    from app.core.strategies import _cluster, reduce_dims
    from lit_models.train import predict_proba, train_head

    x_red = reduce_dims(x, seed=0)[0]
    clusters = _cluster(x_red, max(batch, len(x) // 20), 0)[0] if name == "cluster_margin" else None
    labeled = list(initial)
    counts, accs, seconds = [], [], []
    while True:
        lab = np.asarray(labeled)
        start = time.perf_counter()
        head = train_head(x[lab], y[lab], num_classes, seed=seed * 1000 + len(counts))
        counts.append(len(lab))
        accs.append(float((predict_proba(head, x_test).argmax(axis=1) == y_test).mean()))
        k = min(batch, budget - len(lab))
        if k <= 0:
            break
        pool = np.setdiff1d(np.arange(len(x)), lab)
        probs = predict_proba(head, x[pool])
        if name == "badge":
            pos = badge(probs, x_red[pool], k, seed * 1000 + len(counts))
        elif name == "class_balanced":
            pos = class_balanced(probs, k)
        elif name == "power_margin":
            pos = power_margin(probs, k, seed * 1000 + len(counts))
        else:
            pos = cluster_margin(probs, clusters[pool], k, seed * 1000 + len(counts))
        seconds.append(time.perf_counter() - start)
        labeled.extend(int(pool[i]) for i in pos)
    return counts, accs, seconds


def near_duplicates(x: np.ndarray, y: np.ndarray, copies: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every pool image `copies` times, each copy with a little noise (bursts of near-identical photos)."""
    if copies <= 1:
        return x, y
    rng = np.random.default_rng(seed)
    noise = 0.02 * float(x.std())
    xs = np.concatenate([x + rng.normal(0.0, noise, x.shape).astype(np.float32) for _ in range(copies)])
    return xs, np.concatenate([y] * copies)
