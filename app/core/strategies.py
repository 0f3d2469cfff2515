"""Query strategies: which unlabeled images to show next, as pure functions on numpy arrays.

`select_batch` is the one entry point the engine needs. Indices are always positions in the pool arrays
(`probs` rows and `pool_emb` rows describe the same images in the same order).

Embedding-based strategies measure Euclidean distances. When embeddings have more than `REDUCE_ABOVE`
dimensions and the pool is larger than `REDUCED_DIMS`, they first project onto the top `REDUCED_DIMS` principal
components (PCA fitted on at most `PCA_FIT_ROWS` pool rows, seeded). That keeps most of the geometry of timm
features while making a 100k x 1280 pool fast; distances reported as scores are then measured in that space.
Work arrays are float32 and distance matrices are computed in blocks, so memory stays bounded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from app.core.coreset import k_center
from app.core.errors import EmptyPoolError
from app.core.pool_rows import NUMPY, Dense, blocks, project
from app.core.scoring import as_probs, entropy, least_confidence, margin, top_k

__all__ = [
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "Selection",
    "entropy",
    "k_center_greedy",
    "least_confidence",
    "margin",
    "reduce_dims",
    "select_batch",
    "top_k",
    "typical_clusters",
]

STRATEGIES: tuple[str, ...] = ("random", "least_confidence", "margin", "entropy", "diversity", "margin_diverse")
DEFAULT_STRATEGY = "margin_diverse"
COLD_START = "cold_start"

REDUCE_ABOVE = 256  # embeddings wider than this are PCA-reduced before distance work
REDUCED_DIMS = 128
PCA_FIT_ROWS = 4096
MINIBATCH_ABOVE = 5000  # KMeans on more points than this uses MiniBatchKMeans
TYPICALITY_NEIGHBORS = 20
TYPICALITY_REF_ROWS = 1000  # density of big clusters is estimated against a seeded sample of this many members
TINY_CLUSTER = 5  # smaller clusters rank members by distance to the centroid instead
MAX_COLD_CLUSTERS = 200  # cold start with labeled points: k + L clusters, capped here (unless k is bigger)
_ROW_BLOCK = 8192
_COL_BLOCK = 1024

_SCORERS = {"least_confidence": least_confidence, "margin": margin, "entropy": entropy}


@dataclass(frozen=True)
class Selection:
    """A batch picked by a strategy.

    Attributes:
        indices: distinct positions in the pool arrays, in the order to show them (most useful first).
        scores: float64 score of each picked item, higher = more worth labeling. Uncertainty strategies give
            their score; "diversity" the distance to the nearest labeled or already picked item (for the first
            pick without labeled items: the distance to the pool mean); "cold_start" the typicality (inverse
            mean distance to near neighbours). "random" gives NaN ("not scored"); SQLite stores NaN as NULL.
        strategy: the strategy that actually ran: a name from `STRATEGIES`, or "cold_start".
    """

    indices: np.ndarray
    scores: np.ndarray
    strategy: str


def reduce_dims(
    pool_emb: np.ndarray,
    *others: np.ndarray,
    max_dims: int = REDUCED_DIMS,
    seed: int = 0,
    rows: np.ndarray | None = None,
    dense: Dense = NUMPY,
) -> list[np.ndarray]:
    """Projects embeddings onto the pool's top principal components when they are wide.

    Nothing changes (apart from a float32 cast) unless the width exceeds `REDUCE_ABOVE` and the pool has more
    than `max_dims` rows. `others` (for example labeled embeddings) go through the same projection. The pool is
    read block by block (`app.core.pool_rows.blocks`), so a float16 memory map or a bigger matrix indexed by `rows`
    is never copied whole, and a memory map's pages are given back after each block.

    Args:
        pool_emb: pool embeddings (N, D), or a bigger matrix whose `rows` form the pool.
        others: more embeddings to project the same way.
        max_dims: components to keep.
        seed: seed of the PCA fit's row sample and randomized SVD.
        rows: rows of `pool_emb` that form the pool, in pool order; None = every row.
        dense: the block conversion and matrix product (numpy's; the engine passes torch's, faster).

    Returns:
        The pool followed by `others`, as float32 arrays.
    """
    n = pool_emb.shape[0] if rows is None else len(rows)
    d = pool_emb.shape[1]
    extra = [np.asarray(a, dtype=np.float32) for a in others]
    if d <= REDUCE_ABOVE or n <= max_dims:
        whole = np.empty((n, d), dtype=np.float32)
        for s, block in blocks(pool_emb, rows, widen=dense.widen):
            whole[s : s + len(block)] = block
        return [whole, *extra]
    rng = np.random.default_rng(seed)
    fit = np.sort(rng.choice(n, size=min(n, PCA_FIT_ROWS), replace=False))
    sample = np.asarray(pool_emb[fit if rows is None else rows[fit]], dtype=np.float32)
    pca = PCA(n_components=max_dims, svd_solver="randomized", iterated_power=3, random_state=seed)
    with threadpool_limits(limits=1, user_api="blas"):  # threaded QR/SVD of thin matrices crawls on a busy CPU
        pca.fit(sample)
    comps = pca.components_.astype(np.float32).T
    shift = (pca.mean_.astype(np.float32) @ comps)[None, :]
    proj = project(pool_emb, rows, comps, dense)  # the pool is read once, block by block
    proj -= shift
    out = [proj]
    for a in extra:
        p = np.empty((a.shape[0], max_dims), dtype=np.float32)
        for s in range(0, a.shape[0], _ROW_BLOCK):
            p[s : s + _ROW_BLOCK] = a[s : s + _ROW_BLOCK] @ comps - shift
        out.append(p)
    return out


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _sq_dists_block(a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    d = a @ b.T
    d *= -2.0
    d += a_sq[:, None]
    d += b_sq[None, :]
    return np.maximum(d, 0.0, out=d)


def _nearest(x: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared distance from every row of `x` to its nearest row of `ref`, and that row's index, in blocks."""
    best = np.full(x.shape[0], np.inf, dtype=np.float32)
    arg = np.zeros(x.shape[0], dtype=np.int64)
    x_sq, ref_sq = _sq_norms(x), _sq_norms(ref)
    for c in range(0, ref.shape[0], _COL_BLOCK):
        r, r_sq = ref[c : c + _COL_BLOCK], ref_sq[c : c + _COL_BLOCK]
        for s in range(0, x.shape[0], _ROW_BLOCK):
            block = _sq_dists_block(x[s : s + _ROW_BLOCK], x_sq[s : s + _ROW_BLOCK], r, r_sq)
            j = block.argmin(axis=1)
            d = block[np.arange(len(j)), j]
            better = d < best[s : s + _ROW_BLOCK]
            best[s : s + _ROW_BLOCK][better] = d[better]
            arg[s : s + _ROW_BLOCK][better] = j[better] + c
    return best, arg


_k_center = k_center  # greedy k-center on prepared float32 arrays (exact, lazy: one pass over the pool, not k)


def k_center_greedy(pool_emb: np.ndarray, labeled_emb: np.ndarray | None, k: int, *, seed: int = 0) -> np.ndarray:
    """Core-set selection (Sener & Savarese 2018): pool points far from the labeled set and from each other.

    Each step picks the pool point farthest from the labeled points and the points already picked. Without labeled
    points the first pick is the point nearest the pool mean. Wide embeddings are PCA-reduced
    first (see the module docstring); `seed` only drives that reduction.

    Args:
        pool_emb: unlabeled embeddings, shape (N, D).
        labeled_emb: labeled embeddings, shape (L, D); None or L = 0 means none.
        k: how many to pick; more than N picks all N, 0 picks none.
        seed: seed of the PCA reduction.

    Returns:
        Distinct pool positions in pick order.
    """
    if _nothing_to_pick(k, len(pool_emb)):
        return np.empty(0, dtype=np.int64)
    return _k_center(*_prepare(pool_emb, labeled_emb, seed), min(k, len(pool_emb)))[0]


def _nothing_to_pick(k: int, n: int) -> bool:
    if k < 0:
        raise ValueError(f"The number of items to pick must not be negative; got {k}.")
    return k == 0 or n == 0


def _prepare(
    pool_emb: np.ndarray,
    labeled_emb: np.ndarray | None,
    seed: int,
    rows: np.ndarray | None = None,
    dense: Dense = NUMPY,
) -> tuple[np.ndarray, np.ndarray | None]:
    if labeled_emb is None or len(labeled_emb) == 0:
        return reduce_dims(pool_emb, seed=seed, rows=rows, dense=dense)[0], None
    x, lab = reduce_dims(pool_emb, labeled_emb, seed=seed, rows=rows, dense=dense)
    return x, lab


def _cluster(
    x: np.ndarray, n_clusters: int, seed: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded KMeans (MiniBatchKMeans for big inputs); returns (label of each row, float32 centres).

    Runs in float64: scikit-learn's float32 distance path upcasts block by block and is several times slower.
    Empty or duplicate clusters are possible with repeated points; callers fill up from the other members.
    """
    x = np.asarray(x, dtype=np.float64)
    # one thread: each mini-batch step is small, and threads waiting on each other crawl when the CPU is busy
    # (training runs at the same time); results are identical either way
    with threadpool_limits(limits=1), warnings.catch_warnings():  # fewer distinct points than clusters is fine
        warnings.simplefilter("ignore", ConvergenceWarning)
        if x.shape[0] > MINIBATCH_ABOVE:
            model = MiniBatchKMeans(n_clusters, n_init=1, batch_size=max(2048, 4 * n_clusters), random_state=seed)
        else:
            model = KMeans(n_clusters, n_init=3, random_state=seed)
        model.fit(x, sample_weight=weights)
    return model.labels_, model.cluster_centers_.astype(np.float32)


def _typicality(x: np.ndarray, members: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Typicality of each member: 1 / mean distance to its nearest fellow members (TypiClust).

    Big clusters measure neighbours within a seeded sample of `TYPICALITY_REF_ROWS` members; tiny clusters use
    the distance to their centroid.
    """
    xs = x[members]
    m = len(members)
    if m < TINY_CLUSTER:
        return 1.0 / (np.sqrt(_nearest(xs, xs.mean(axis=0, keepdims=True))[0]).astype(np.float64) + 1e-8)
    ref_pos = np.arange(m) if m <= TYPICALITY_REF_ROWS else np.sort(rng.choice(m, TYPICALITY_REF_ROWS, replace=False))
    ref = xs[ref_pos]
    ref_sq = _sq_norms(ref)
    col_of = np.full(m, -1, dtype=np.int64)
    col_of[ref_pos] = np.arange(len(ref_pos))
    n_nb = min(TYPICALITY_NEIGHBORS, len(ref_pos) - 1)
    xs_sq = _sq_norms(xs)
    mean_d = np.empty(m, dtype=np.float64)
    for s in range(0, m, _ROW_BLOCK):
        block = _sq_dists_block(xs[s : s + _ROW_BLOCK], xs_sq[s : s + _ROW_BLOCK], ref, ref_sq)
        rows = np.nonzero(col_of[s : s + _ROW_BLOCK] >= 0)[0]
        block[rows, col_of[s + rows]] = np.inf  # a member is not its own neighbour
        nearest = np.partition(block, n_nb - 1, axis=1)[:, :n_nb]
        mean_d[s : s + _ROW_BLOCK] = np.sqrt(nearest).mean(axis=1)
    return 1.0 / (mean_d + 1e-8)


def _typical(x: np.ndarray, labeled: np.ndarray | None, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """TypiClust on prepared arrays; returns (indices, typicality)."""
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    if k >= n:
        return np.arange(n, dtype=np.int64), _typicality(x, np.arange(n), rng)
    n_lab = 0 if labeled is None else labeled.shape[0]
    n_clusters = min(n, max(k, min(k + n_lab, MAX_COLD_CLUSTERS)))
    labels, centers = _cluster(x, n_clusters, seed)
    sizes = np.bincount(labels, minlength=n_clusters)
    covered = np.zeros(n_clusters, dtype=np.int64)
    if n_lab:  # a labeled point covers the cluster with the nearest centre
        covered = np.bincount(_nearest(labeled, centers)[1], minlength=n_clusters)
    # least covered first, then biggest, then lowest cluster id
    order = [c for c in np.lexsort((np.arange(n_clusters), -sizes, covered)) if sizes[c] > 0]
    ranked = []
    for c in order:
        members = np.nonzero(labels == c)[0]
        typ = _typicality(x, members, rng)
        rank = np.argsort(-typ, kind="stable")
        ranked.append((members[rank], typ[rank]))
    picks: list[int] = []
    scores: list[float] = []
    depth = 0
    while len(picks) < k:  # one per cluster; a second round only if clusters came out empty
        for members, typ in ranked:
            if depth < len(members) and len(picks) < k:
                picks.append(int(members[depth]))
                scores.append(float(typ[depth]))
        depth += 1
    return np.asarray(picks, dtype=np.int64), np.asarray(scores, dtype=np.float64)


def typical_clusters(
    pool_emb: np.ndarray, k: int, seed: int = 0, *, labeled_emb: np.ndarray | None = None
) -> np.ndarray:
    """Cold-start selection in the spirit of TypiClust (Hacohen et al. 2022).

    Clusters the pool into k clusters (more when labeled points exist: k + L, at most `MAX_COLD_CLUSTERS`) and
    picks from each cluster its most typical point, the one with the smallest mean distance to its
    `TYPICALITY_NEIGHBORS` nearest fellow members. Clusters holding no labeled point come first, bigger first.

    Args:
        pool_emb: unlabeled embeddings, shape (N, D).
        k: how many to pick; k >= N returns every index, 0 picks none.
        seed: seed of the clustering, the PCA reduction and the neighbour sampling.
        labeled_emb: labeled embeddings (L, D), if any, so already covered clusters come last.

    Returns:
        k distinct pool positions.
    """
    if _nothing_to_pick(k, len(pool_emb)):
        return np.empty(0, dtype=np.int64)
    return _typical(*_prepare(pool_emb, labeled_emb, seed), k, seed)[0]


def _margin_diverse(
    scores: np.ndarray, pool_emb: np.ndarray | None, k: int, seed: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, str]:
    """Margin pre-filter, then one highest-margin item per KMeans cluster (Zhdanov 2019; Citovsky et al. 2021).

    `scores` are the pool's margins; only the candidates' embeddings are read (a few hundred rows of the pool).
    """
    n_cand = min(len(scores), max(10 * k, 100))
    if pool_emb is None or n_cand <= k:
        return top_k(scores, k), "margin" if pool_emb is None else "margin_diverse"
    cand = top_k(scores, n_cand)  # highest margin first, ties by lower index
    xc = reduce_dims(np.asarray(pool_emb[cand if rows is None else rows[cand]], dtype=np.float32), seed=seed)[0]
    labels, _ = _cluster(xc, k, seed, weights=scores[cand] + 1e-6)
    _, first = np.unique(labels, return_index=True)  # first position in `cand` order = highest margin in cluster
    picked = set(first.tolist())
    for pos in range(n_cand):  # duplicates can leave clusters empty: fill with the next highest margins
        if len(picked) >= k:
            break
        picked.add(pos)
    return cand[np.sort(np.fromiter(picked, dtype=np.int64))], "margin_diverse"


def _as_matrix(arr: np.ndarray | None, name: str) -> np.ndarray | None:
    if arr is None:
        return None
    a = arr if isinstance(arr, np.ndarray) else np.asarray(arr)  # a memory map stays one (its pages are released)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (one row per image); got shape {a.shape}.")
    return a


def select_batch(
    strategy: str,
    k: int,
    *,
    probs: np.ndarray | None,
    pool_emb: np.ndarray | None,
    labeled_emb: np.ndarray | None,
    seed: int = 0,
    pool_rows: np.ndarray | None = None,
    dense: Dense = NUMPY,
) -> Selection:
    """Picks the next `min(k, N)` pool items to label.

    Without a model (`probs` None) the uncertainty strategies cannot run, so the batch is a cold start
    (`typical_clusters` on the embeddings, strategy "cold_start"). "random" needs no model and no embeddings;
    "diversity" needs embeddings but no model; "margin_diverse" falls back to plain margin without embeddings.

    Args:
        strategy: a name from `STRATEGIES`.
        k: batch size, at least 1.
        probs: class probabilities of the pool, (N, C), or None when no model is trained yet.
        pool_emb: pool embeddings, (N, D), or None.
        labeled_emb: embeddings of labeled images, (L, D), or None.
        seed: makes every random choice repeatable.
        pool_rows: when given, `pool_emb` is a bigger matrix (say every image of a project, float16 memory map
            or float32) and these of its rows form the pool, in the order of `probs`; N = len(pool_rows). The
            rows are read as needed, so a 100k x 1280 pool is never copied. Returned indices stay positions in
            the pool (in `pool_rows`), not rows of `pool_emb`.
        dense: the float16 -> float32 conversion and matrix product of big passes (numpy's; the engine passes
            torch's).

    Raises:
        ValueError: unknown strategy, k < 1, mismatched shapes, or no array to know the pool from.
        EmptyPoolError: the pool is empty.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown query strategy '{strategy}'. Valid strategies: {', '.join(STRATEGIES)}.")
    if k < 1:
        raise ValueError(f"The batch size must be at least 1; got {k}.")
    p = None if probs is None else as_probs(probs)
    emb, lab = _as_matrix(pool_emb, "pool_emb"), _as_matrix(labeled_emb, "labeled_emb")
    rows = None
    if pool_rows is not None:
        rows = np.asarray(pool_rows, dtype=np.int64).reshape(-1)
        if emb is None:
            raise ValueError("pool_rows needs pool_emb: they name rows of it.")
        if len(rows) and (rows.min() < 0 or rows.max() >= len(emb)):
            raise ValueError(f"pool_rows must be rows of pool_emb (0..{len(emb) - 1}).")
    if p is None and emb is None:
        raise ValueError("select_batch needs probs or pool_emb to know how many images are in the pool.")
    n_emb = None if emb is None else (len(emb) if rows is None else len(rows))
    if p is not None and n_emb is not None and len(p) != n_emb:
        raise ValueError(f"probs has {len(p)} rows but pool_emb has {n_emb}; they must describe the same pool.")
    if emb is not None and lab is not None and len(lab) and lab.shape[1] != emb.shape[1]:
        raise ValueError(f"labeled_emb has width {lab.shape[1]} but pool_emb has {emb.shape[1]}; use one backbone.")
    n = len(p) if p is not None else n_emb
    if n == 0:
        raise EmptyPoolError(
            "There are no unlabeled images left to pick from. Add more images, or train and export with the labels "
            "you have."
        )
    k = min(k, n)
    if strategy == "diversity" and emb is None:
        raise ValueError("The diversity strategy needs image embeddings; compute them first or pick another one.")
    if strategy == "random":
        idx = np.random.default_rng(seed).choice(n, size=k, replace=False).astype(np.int64)
        return Selection(idx, np.full(k, np.nan), "random")
    if strategy == "diversity":
        idx, dists = k_center(*_prepare(emb, lab, seed, rows, dense), k, matmul=dense.matmul)
        return Selection(idx, dists, strategy)
    if p is None:
        idx, typ = _typical(*_prepare(emb, lab, seed, rows, dense), k, seed)
        return Selection(idx, typ, COLD_START)
    if strategy == "margin_diverse":
        scores = margin(p)
        idx, ran = _margin_diverse(scores, emb, k, seed, rows)
        return Selection(idx, scores[idx], ran)
    scores = _SCORERS[strategy](p)
    idx = top_k(scores, k)
    return Selection(idx, scores[idx], strategy)
