"""Greedy k-center (core-set, Sener & Savarese 2018) on prepared float32 arrays: exact, and lazy after the first pass.

Greedy k-center picks, k times, the point farthest from the labeled points and the points already picked. The
plain way updates every point's distance after every pick (k passes over the pool). Distances only shrink, so after
one pass (to the labeled points) each point's value is an upper bound of what it will be: each step brings only the
points with the highest bounds up to date (against the picks so far, exactly), and stops as soon as the best of them
is strictly above every other point's bound. The picks are the plain greedy's (ties: the lower index), at the cost
of one pass over the pool instead of k.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["k_center", "nearest_sq", "sq_norms"]

ROW_BLOCK = 8192
COL_BLOCK = 1024
WINDOW = 64  # points brought up to date per step, doubled while that is not enough to be sure
Matmul = Callable[[np.ndarray, np.ndarray], np.ndarray]
SORTED_TOP = 4096  # the highest bounds are sorted first; the whole pool only if a step needs more


def sq_norms(x: np.ndarray) -> np.ndarray:
    """Squared Euclidean norm of each row."""
    return np.einsum("ij,ij->i", x, x)


def nearest_sq(
    x: np.ndarray, ref: np.ndarray, x_sq: np.ndarray | None = None, matmul: Matmul = np.matmul
) -> np.ndarray:
    """Squared distance (float32, >= 0) from every row of `x` to its nearest row of `ref`, computed in blocks."""
    x_sq = sq_norms(x) if x_sq is None else x_sq
    best = np.full(x.shape[0], np.inf, dtype=np.float32)
    ref_sq = sq_norms(ref)
    for c in range(0, ref.shape[0], COL_BLOCK):
        r2 = -2.0 * ref[c : c + COL_BLOCK]  # exact scaling: |x|^2 - 2 x.r + |r|^2 with one add per entry
        r_sq = ref_sq[c : c + COL_BLOCK]
        for s in range(0, x.shape[0], ROW_BLOCK):
            d = matmul(x[s : s + ROW_BLOCK], np.ascontiguousarray(r2.T))
            d += r_sq[None, :]
            near = d.min(axis=1) + x_sq[s : s + ROW_BLOCK]
            np.minimum(best[s : s + ROW_BLOCK], near, out=best[s : s + ROW_BLOCK])
    return np.maximum(best, 0.0, out=best)


def _to_picks(x: np.ndarray, x_sq: np.ndarray, rows: np.ndarray, picks: list[int]) -> np.ndarray:
    """Squared distance of each of `rows` to its nearest pick."""
    p = x[picks]
    d = x_sq[rows][:, None] - 2.0 * (x[rows] @ p.T) + x_sq[picks][None, :]
    return np.maximum(d, 0.0).min(axis=1)


class _Order:
    """The pool's positions by first-pass bound, highest first (ties: lower index), sorted only as far as needed."""

    def __init__(self, bound: np.ndarray) -> None:
        self.bound = bound.copy()  # the first-pass values: every later value is at most this
        n = len(bound)
        top = min(n, SORTED_TOP)
        if top < n:
            part = np.argpartition(-self.bound, top - 1)[:top]
            self.order = part[np.lexsort((part, -self.bound[part]))]
        else:
            self.order = np.argsort(-self.bound, kind="stable")
        self.complete = top == n

    def prefix(self, w: int) -> tuple[np.ndarray, float]:
        """The first `w` positions, and the highest first-pass bound of every position after them."""
        n = len(self.bound)
        if w >= len(self.order) and not self.complete:
            self.order, self.complete = np.argsort(-self.bound, kind="stable"), True
        rest = float(self.bound[self.order[w]]) if w < n else -np.inf
        return self.order[:w], rest


def k_center(
    x: np.ndarray, labeled: np.ndarray | None, k: int, *, matmul: Matmul = np.matmul
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center; returns (pool positions in pick order, distance of each at pick time).

    Without labeled points the first pick is the point nearest the pool mean. `k` must be at most len(x).
    `matmul` does the one pass's matrix products (the engine passes torch's).
    """
    x_sq = sq_norms(x)
    picks: list[int] = []
    dists: list[float] = []
    if labeled is not None and labeled.shape[0] > 0:
        value = nearest_sq(x, labeled, x_sq, matmul)
    else:  # no labeled set: start from the point nearest the pool mean
        to_mean = nearest_sq(x, x.mean(axis=0, keepdims=True), x_sq)
        first = int(np.argmin(to_mean))
        picks.append(first)
        dists.append(float(np.sqrt(to_mean[first])))
        value = nearest_sq(x, x[first : first + 1], x_sq)
        value[first] = -np.inf
    order = _Order(value)
    while len(picks) < k:
        w = WINDOW
        while True:
            cand, rest = order.prefix(w)
            if picks:  # bring the candidates up to date with every pick (exact; min is idempotent, -inf stays)
                value[cand] = np.minimum(value[cand], _to_picks(x, x_sq, cand, picks))
            best = float(value[cand].max())
            if best > rest or w >= len(x):
                break
            w *= 2
        i = int(cand[value[cand] == best].min())
        picks.append(i)
        dists.append(float(np.sqrt(max(best, 0.0))))
        value[i] = -np.inf  # picked items never come back, even among exact duplicates
    return np.asarray(picks, dtype=np.int64), np.asarray(dists, dtype=np.float64)
