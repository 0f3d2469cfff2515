"""Finding wrong labels on scikit-learn's digits, against cleanlab's confident learning.

Embeds the 1,797 digits once with the bundled EfficientNet-Lite0 (as the other benchmarks: class folders of 64 px
PNGs, read through `app.engine.simulate.load_embeddings`), then for each seed and each size (every image, and a
random subset of 600) flips 5 % of the labels at random to another class and ranks the labeled images:

- ours: `app.engine.label_check.out_of_fold` (the app's head, cross-fitted, two fold splits averaged) judged by
  `app.core.label_issues.label_issues` (with the nearest labeled neighbours' votes), the list `check-labels` writes;
- the anchor: cleanlab's ``find_label_issues(labels, pred_probs, return_indices_ranked_by="self_confidence")`` on
  5-fold out-of-fold probabilities of scikit-learn's ``LogisticRegression(max_iter=1000)`` on the same embeddings.

Reports precision among the top K (K = the flipped labels) and recall among the top 2K, mean ± std over seeds, and
how many images each list holds; variants of ours (one fold split; the model without neighbours) for comparison.

    python -m benchmarks.label_errors --work-dir /tmp/lerr/work --seeds 5 --out /tmp/label_errors.json

Target (docs/benchmarks.md): ours beats the anchor on both measures at both sizes.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

import lit_models  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
from app.core.label_issues import label_issues
from app.engine.label_check import out_of_fold
from app.engine.simulate import SimulationConfig, load_embeddings
from benchmarks.label_efficiency import DEFAULT_WORK_DIR, digits_folder

Ranker = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR), help="keeps images and embeddings for reuse")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=0.05, help="share of labels flipped")
    parser.add_argument("--sizes", default="all,600", help="labeled images per run ('all' = every digit)")
    parser.add_argument("--out", help="write every run as JSON here")
    return parser.parse_args()


def flip_labels(
    y: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`y` with `rate` of its labels (at random) changed to another class at random; and which were flipped."""
    flipped = rng.choice(len(y), size=int(round(rate * len(y))), replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, num_classes, size=len(flipped))) % num_classes
    return noisy, flipped


def measures(ranked: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    """Precision among the first K of `ranked` (K = flips) and recall among the first 2K; its length."""
    k, truth = len(flipped), set(flipped.tolist())
    return {
        "precision_at_k": len(truth & set(ranked[:k].tolist())) / k,
        "recall_at_2k": len(truth & set(ranked[: 2 * k].tolist())) / k,
        "listed": int(len(ranked)),
    }


def anchor(x: np.ndarray, y: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """cleanlab's issues, ranked by self-confidence, on logistic regression's 5-fold out-of-fold probabilities."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    with threadpool_limits(limits=1), warnings.catch_warnings():  # threaded BLAS crawls on a shared CPU
        warnings.simplefilter("ignore")
        probs = cross_val_predict(LogisticRegression(max_iter=1000), x, y, cv=folds, method="predict_proba")
    return find_label_issues(y, probs, return_indices_ranked_by="self_confidence")


def ours(repeats: int = 2, model_weight: float | None = None, full: bool = False) -> Ranker:
    """Our ranking: the suspects list (`full`: every labeled image in order), with these settings."""

    def rank(x: np.ndarray, y: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
        probs = out_of_fold(x, y, num_classes, seed=seed, repeats=repeats)
        weight = {} if model_weight is None else {"model_weight": model_weight}
        issues = label_issues(x, y, probs, **weight)
        return issues.order if full else issues.ranked

    return rank


RANKERS: dict[str, Ranker] = {
    "ours": ours(),
    "ours_full_ranking": ours(full=True),
    "ours_one_split": ours(repeats=1),
    "ours_model_only": ours(model_weight=1.0),
    "cleanlab_lr": anchor,
}


def run(x: np.ndarray, y: np.ndarray, sizes: list[int | None], seeds: int, rate: float) -> list[dict]:
    """Every ranker on every (size, seed): the flips drawn once per (size, seed) and shared by the rankers."""
    num_classes = int(y.max()) + 1
    runs = []
    for size in sizes:
        for seed in range(seeds):
            rng = np.random.default_rng([seed, 0x1AB])
            rows = np.arange(len(y)) if size is None else np.sort(rng.choice(len(y), size=size, replace=False))
            noisy, flipped = flip_labels(y[rows], rate, num_classes, rng)
            for name, ranker in RANKERS.items():
                start = time.perf_counter()
                ranked = np.asarray(ranker(x[rows], noisy, num_classes, seed), dtype=np.int64)
                entry = {"size": len(rows), "seed": seed, "ranker": name, "flips": int(len(flipped))}
                entry.update(measures(ranked, flipped), seconds=round(time.perf_counter() - start, 2))
                runs.append(entry)
                print(
                    f"{len(rows):>5} seed {seed} {name:<18} P@K {entry['precision_at_k']:.3f} "
                    f"R@2K {entry['recall_at_2k']:.3f} listed {entry['listed']:>4} ({entry['seconds']:.1f} s)",
                    flush=True,
                )
    return runs


def table(runs: list[dict]) -> str:
    """Mean ± std over seeds per size and ranker, as a Markdown table."""
    lines = ["| labels | ranking | precision@K | recall@2K | listed | seconds |", "|---:|---|---:|---:|---:|---:|"]
    for size in sorted({r["size"] for r in runs}, reverse=True):
        for name in RANKERS:
            rs = [r for r in runs if r["size"] == size and r["ranker"] == name]
            p, rec = np.array([r["precision_at_k"] for r in rs]), np.array([r["recall_at_2k"] for r in rs])
            listed, secs = np.mean([r["listed"] for r in rs]), np.mean([r["seconds"] for r in rs])
            lines.append(
                f"| {size} | {name} | {p.mean():.3f} ± {p.std():.3f} | {rec.mean():.3f} ± {rec.std():.3f} "
                f"| {listed:.0f} | {secs:.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cfg = SimulationConfig(data=str(digits_folder(work)), strategies=["random"], work_dir=str(work))
    x, y, x_test, y_test, _ = load_embeddings(cfg)
    x, y = np.concatenate([x, x_test]), np.concatenate([y, y_test])  # every digit: the held-out split is not needed
    sizes = [None if s.strip() == "all" else int(s) for s in args.sizes.split(",") if s.strip()]
    runs = run(x.astype(np.float32), y, sizes, args.seeds, args.rate)
    print(table(runs))
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": runs, "args": vars(args)}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
