"""How much a round loses by picking from a random sample of a big pool (`app.core.candidates`) instead of all of it.

On the synthetic 1M pool of `benchmarks.round_latency` (read from its on-disk cache), a head trained on 300 random
labels scores every pool image; the top-k picks by margin and by entropy from the whole pool are compared with the
top-k from uniform samples of several sizes (each drawn as a round draws its candidates, several seeds): the picks'
mean score, their worst score, and their rank among the whole pool's scores.

    python -m benchmarks.candidates --cache /tmp/pool1m                 # 1M pool, samples of 25k..200k, k = 40
    python -m benchmarks.candidates --cache /tmp/pool1m --sizes 100000 --seeds 20
    python -m benchmarks.candidates --cache /tmp/pool1m --sizes 100000 --rounds 10 --seeds 3   # learning, too

k = 40 is what a round with batch 20 picks (twice the batch: spares for images labeled meanwhile). With
``--rounds R``, R margin rounds of batch 20 (`app.engine.rounds.run`, oracle labels) run from the same 300 labels
with the whole pool and with each sample size, and the head's accuracy on 50,000 pool images is compared.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import lit_models  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
from app.core.candidates import candidate_positions
from app.core.scoring import entropy, margin, top_k
from app.engine.learners import HeadLearner
from app.engine.pool_scoring import pool_probs
from app.engine.rounds import RoundData, run
from benchmarks.round_latency import cached_pool
from lit_models.train import train_head


def compare(scores: np.ndarray, k: int, sizes: list[int], seeds: int) -> list[dict]:
    """The full pool's top-`k` against each sample size's (mean over `seeds` samples) on one score vector."""
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(scores), dtype=np.int64)
    rank[order] = np.arange(len(scores))
    full = order[:k]
    rows = [
        {"sample": len(scores), "mean": float(scores[full].mean()), "worst": float(scores[full].min()),
         "median_rank": float(np.median(rank[full])), "worst_rank": int(rank[full].max()), "sd_mean": 0.0}
    ]  # fmt: skip
    for size in sizes:
        means, worsts, med, worst_rank = [], [], [], []
        for seed in range(seeds):
            cand = candidate_positions(len(scores), seed, size)
            picks = cand[top_k(scores[cand], k)]
            means.append(scores[picks].mean())
            worsts.append(scores[picks].min())
            med.append(np.median(rank[picks]))
            worst_rank.append(rank[picks].max())
        rows.append(
            {"sample": size, "mean": float(np.mean(means)), "worst": float(np.mean(worsts)),
             "median_rank": float(np.mean(med)), "worst_rank": int(np.mean(worst_rank)),
             "sd_mean": float(np.std(means))}
        )  # fmt: skip
    return rows


def learning(x: np.ndarray, y: np.ndarray, start: np.ndarray, rounds: int, sizes: list[int], seeds: int) -> dict:
    """Accuracy on 50,000 pool images after `rounds` margin rounds of batch 20, per candidate size (None: whole)."""
    test = np.sort(np.random.default_rng(99).choice(len(x), size=50_000, replace=False))
    out: dict = {}
    for size in [None, *sizes]:
        accs = []
        for seed in range(seeds):
            labeled = list(start.tolist())
            for r in range(rounds):
                lab = np.asarray(labeled, dtype=np.int64)
                data = RoundData.from_arrays(x, lab, y[lab], num_classes=int(y.max()) + 1, seed=seed * 1000 + r)
                result = run(data, HeadLearner(), strategy="margin", k=20, candidates=size or len(x))
                labeled.extend(i for i, _, _ in result.picks)
            guess = pool_probs(result.fitted.head, x, rows=test).argmax(axis=1)
            accs.append(float((guess == y[test]).mean()))
        out["whole" if size is None else str(size)] = accs
        print(f"learning {'whole' if size is None else size:>9}: accuracy {np.mean(accs):.4f} ({accs})", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="the folder of `benchmarks.round_latency --cache`")
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--labeled", type=int, default=300)
    parser.add_argument("--sizes", default="25000,50000,100000,200000", help="comma-separated sample sizes")
    parser.add_argument("--k", type=int, default=40, help="picks per round")
    parser.add_argument("--seeds", type=int, default=10, help="samples per size")
    parser.add_argument("--rounds", type=int, default=0, help="also compare learning over this many margin rounds")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    n = args.pool + args.labeled
    x, y = cached_pool(Path(args.cache) / str(n), n, 1280, args.pool)
    rng = np.random.default_rng(0)
    lab = np.sort(rng.choice(n, size=args.labeled, replace=False))
    head = train_head(np.asarray(x[lab], dtype=np.float32), y[lab], int(y.max()) + 1, seed=0)
    is_lab = np.zeros(n, dtype=bool)
    is_lab[lab] = True
    pool = np.flatnonzero(~is_lab)
    probs = pool_probs(head, x, rows=pool)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    print(f"{'score':>8} {'sample':>9} {'mean':>9} {'sd':>8} {'worst':>9} {'median rank':>12} {'worst rank':>11}")
    for name, fn in (("margin", margin), ("entropy", entropy)):
        results[name] = compare(fn(probs), args.k, sizes, args.seeds)
        for r in results[name]:
            print(
                f"{name:>8} {r['sample']:>9} {r['mean']:>9.6f} {r['sd_mean']:>8.6f} {r['worst']:>9.6f} "
                f"{r['median_rank']:>12.0f} {r['worst_rank']:>11}"
            )
    if args.rounds:
        results["learning"] = learning(x, y, lab, args.rounds, sizes, args.seeds)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
