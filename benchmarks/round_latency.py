"""Round latency on cached embeddings: train the head, score the pool, select the batch (the product's path).

Synthetic 1280-d embeddings (Gaussian clusters, one per class, float16 like the cache) for pools of 1k, 10k and
100k images and a labeled set of a few hundred; every strategy runs `app.engine.rounds.run` with the head learner,
the round behind each labeling round, a few times, and the median is reported with its train / score+select split.

    python -m benchmarks.round_latency                      # pools 1000,10000,100000, 3 repeats
    python -m benchmarks.round_latency --pools 1000 --repeats 1 --strategies margin,margin_diverse
    python -m benchmarks.round_latency --pools 1000000 --cache /tmp/pool1m   # the pool read from an on-disk cache

With ``--cache DIR`` the pool is an `EmbeddingCache` in DIR (written there first, in chunks, when DIR holds none of
that size) and each round reads its memory map, as the app does; otherwise the float16 pool is generated in memory.
Each row also gives the round's CPU seconds (all threads): a busy machine disturbs it far less than wall time.

The row "cold_start" is a project's first batch: no labels and no model, so TypiClust on the embeddings.

Targets (docs/benchmarks.md): uncertainty strategies <= 0.5 / 1 / 2 s and diversity or hybrid strategies
<= 1 / 2 / 10 s for 1k / 10k / 100k pools; at 1M, margin <= 0.5 s, margin_diverse <= 0.75 s, diversity <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

import lit_models  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
from app.core.strategies import COLD_START, DEFAULT_STRATEGY, STRATEGIES
from app.engine.embedding_cache import EmbeddingCache
from app.engine.learners import HeadLearner
from app.engine.rounds import RoundData, run

UNCERTAINTY = ("random", "least_confidence", "margin", "entropy")
NOISE = 2.5
TARGETS = {  # pool size -> (uncertainty, diversity/hybrid) seconds
    1_000: (0.5, 1.0),
    10_000: (1.0, 2.0),
    100_000: (2.0, 10.0),
}
TARGETS_1M = {"margin": 0.5, "margin_diverse": 0.75, "diversity": 3.0}  # issue 16
FILL_CHUNK = 8192


def target(n: int, strategy: str) -> float | None:
    """The target seconds of a round of `strategy` on a pool of `n` images (None: none set)."""
    if n == 1_000_000:
        return TARGETS_1M.get(strategy, TARGETS_1M["margin"] if strategy in UNCERTAINTY else None)
    return TARGETS.get(n, (None, None))[0 if strategy in UNCERTAINTY else 1]


def synthetic_embeddings(n: int, *, dim: int = 1280, classes: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` float16 rows from `classes` Gaussian clusters (ReLU-like: non-negative, sparse), and their classes.

    The clusters overlap (a linear head on 300 labels reaches about 80 % accuracy), so training takes as many
    L-BFGS steps as on real embeddings rather than stopping after a few.

    Generated in chunks and kept float16, as the embedding cache holds them (`EmbeddingCache.matrix`).
    """
    rng = np.random.default_rng(seed)
    centers = rng.gamma(0.5, 0.6, size=(classes, dim)).astype(np.float32)
    y = rng.integers(0, classes, size=n)
    x = np.empty((n, dim), dtype=np.float16)
    for s in range(0, n, 8192):
        e = min(n, s + 8192)
        noise = rng.standard_normal((e - s, dim), dtype=np.float32) * NOISE
        x[s:e] = np.maximum(centers[y[s:e]] + noise, 0.0).astype(np.float16)
    return x, y


def cached_pool(directory: Path, n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The pool as the app reads it: an on-disk `EmbeddingCache` of `n` synthetic rows (written in chunks first
    when `directory` holds another size) and its memory map; with the rows' classes."""
    cache, classes = EmbeddingCache(directory), directory / "classes.npy"
    if len(cache.ids()) != n or not classes.exists():
        for f in ("ids.npy", "vectors.npy"):
            (directory / f).unlink(missing_ok=True)
        cache = EmbeddingCache(directory)
        x, y = synthetic_embeddings(n, dim=dim, seed=seed)
        for s in range(0, n, FILL_CHUNK):
            cache.add(list(range(s, min(n, s + FILL_CHUNK))), x[s : s + FILL_CHUNK])
        np.save(classes, y)
        del x
        cache = EmbeddingCache(directory)
    return cache.matrix(cache.ids()), np.load(classes)


def time_round(
    x: np.ndarray, y: np.ndarray, *, labeled: int, strategy: str, k: int, seed: int
) -> tuple[float, float, str, float]:
    """One round (`rounds.run`: train, score, select); returns (total seconds, training seconds, strategy that ran,
    CPU seconds of the process in that time)."""
    rng = np.random.default_rng(seed)
    if strategy == COLD_START:  # the first batch of a project: nothing labeled, no model
        labeled, strategy = 0, DEFAULT_STRATEGY
    lab = np.sort(rng.choice(len(x), size=labeled, replace=False))
    is_lab = np.zeros(len(x), dtype=bool)
    is_lab[lab] = True
    pool = np.flatnonzero(~is_lab)
    data = RoundData.from_arrays(x, lab, y[lab], num_classes=int(y.max()) + 1, seed=seed, pool_rows=pool)
    start, cpu = time.perf_counter(), time.process_time()
    result = run(data, HeadLearner() if labeled else None, strategy=strategy, k=k)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(result.selection.indices) == k
    return total, result.train_seconds, result.selection.strategy, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", default="1000,10000,100000", help="comma-separated pool sizes")
    parser.add_argument(
        "--strategies",
        default=",".join((*STRATEGIES, COLD_START)),
        help="comma-separated strategy names; cold_start = the first batch (no labels, no model)",
    )
    parser.add_argument("--labeled", type=int, default=300, help="labeled images")
    parser.add_argument("--batch", type=int, default=20, help="images selected per round")
    parser.add_argument("--dim", type=int, default=1280, help="embedding width")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per cell (median reported)")
    parser.add_argument("--cache", help="read each pool from an on-disk embedding cache in this folder (see above)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    pools = [int(p) for p in args.pools.split(",")]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]

    # warm-up: imports, Lightning's first Trainer, BLAS thread pools
    xw, yw = synthetic_embeddings(500, dim=args.dim)
    time_round(xw, yw, labeled=100, strategy="margin_diverse", k=10, seed=0)

    results: list[dict] = []
    print(f"{'pool':>8} {'strategy':>18} {'median s':>9} {'train s':>8} {'cpu s':>7} {'target s':>9}  ok  runs")
    for n in pools:
        if args.cache:
            x, y = cached_pool(Path(args.cache) / str(n + args.labeled), n + args.labeled, args.dim, n)
        else:
            x, y = synthetic_embeddings(n + args.labeled, dim=args.dim, seed=n)
        for strategy in strategies:
            runs = [
                time_round(x, y, labeled=args.labeled, strategy=strategy, k=args.batch, seed=r)
                for r in range(args.repeats)
            ]
            total = float(np.median([r[0] for r in runs]))
            train = float(np.median([r[1] for r in runs]))
            cpu = float(np.median([r[3] for r in runs]))
            goal = target(n, strategy)
            ok = "" if goal is None else ("yes" if total <= goal else "NO")
            times = " ".join(f"{r[0]:.2f}" for r in runs)
            print(
                f"{n:>8} {strategy:>18} {total:>9.3f} {train:>8.3f} {cpu:>7.2f} {goal or '-':>9}  {ok:>3}  {times}",
                flush=True,
            )
            results.append(
                {
                    "pool": n,
                    "strategy": strategy,
                    "seconds": round(total, 4),
                    "train_seconds": round(train, 4),
                    "cpu_seconds": round(cpu, 4),
                    "target": goal,
                    "runs": [round(r[0], 4) for r in runs],
                }  # fmt: skip
            )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
