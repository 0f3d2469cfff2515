"""Label efficiency on scikit-learn's digits with the bundled backbone, against random and a peer library.

Runs the app's simulation loop (`app.engine.simulate.run_curve`: `rounds.run` with the head learner, the path of
every labeling round) for each strategy and seed on shared embeddings, and, on the same embeddings, budgets and
initial labels, scikit-activeml's `UncertaintySampling` (margin) with its own `SklearnClassifier(LogisticRegression)`.
Reports the mean test accuracy per budget, the labels each strategy needs to reach random's accuracy at the full
budget (linear interpolation of the mean curve), and its worst gap below random at any budget >= 40.

    python -m benchmarks.label_efficiency --work-dir /tmp/sim/work            # 5 seeds, the default strategies
    python -m benchmarks.label_efficiency --strategies random,margin --seeds 2 --no-peer

`--candidates badge,cluster_margin,power_margin` adds published batch strategies the app does not ship, on the app's
head (PowerMargin, Kirsch et al. 2023: the batch drawn with probability proportional to margin score ** 8);
`--duplicates 3` puts every pool image in three times with a little noise (bursts of near-identical photos), where
a batch of plain top-k uncertainty wastes labels on copies.

`--work-dir` keeps the imported digits and their embeddings (the first run embeds 1,797 images at 224 px: minutes
on two cores); later runs reuse them, one cache per `--image-size`. `--first-seed 5` runs seeds 5, 6, ... (a check on
seeds that were not looked at while choosing); `--batch 5` is the near-sequential limit of a batch strategy;
`--weight-decay` changes the head's L2 penalty for every strategy. A strategy name followed by "+cold" starts from
the app's cold start (TypiClust on the embeddings) instead of the shared random initial labels, as a real project's
first batch does.
Targets (docs/benchmarks.md): the default strategy reaches random's 200-label accuracy with <= 0.6x the labels
(stretch 0.5x) and is never more than 1 point below random at a budget >= 40.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

import lit_models  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
from app.core.strategies import DEFAULT_STRATEGY
from app.engine.simulate import SimulationConfig, initial_rows, load_embeddings, run_curve

PEER = "skactiveml_margin"
DEFAULT_WORK_DIR = Path.home() / ".cache" / "alabel-benchmarks" / "digits"


def digits_folder(work_dir: Path) -> Path:
    """scikit-learn's digits as class folders (64-pixel PNGs, as the demo), written once."""
    folder = work_dir / "digits"
    if not folder.is_dir():
        from app.engine.demo import write_digits

        write_digits(folder, size=64, class_folders=True)
    return folder


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


def labels_to_reach(labels: list[int], acc: np.ndarray, target: float) -> float | None:
    """Labels at which the mean curve first reaches `target` (linear interpolation); None if it never does."""
    for i, a in enumerate(acc):
        if a >= target:
            if i == 0:
                return float(labels[0])
            a0, l0 = acc[i - 1], labels[i - 1]
            return float(l0 + (labels[i] - l0) * (target - a0) / (a - a0))
    return None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR), help="keeps images and embeddings for reuse")
    parser.add_argument("--data", help="class-folder dataset (default: scikit-learn's digits in the work dir)")
    parser.add_argument(
        "--strategies",
        default=f"random,margin,margin_diverse,diversity,{DEFAULT_STRATEGY}+cold",
        help="comma-separated; NAME+cold starts from the cold start",
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--image-size", type=int, help="backbone input size (default: the backbone's, 224)")
    parser.add_argument("--no-peer", action="store_true", help="skip scikit-activeml")
    parser.add_argument(
        "--candidates",
        default="",
        help="comma-separated strategies the app does not ship: badge, cluster_margin, power_margin",
    )
    parser.add_argument("--duplicates", type=int, default=1, help="each pool image this many times (near-copies)")
    parser.add_argument(
        "--raw-head", action="store_true", help="train the head on raw embeddings (before z-scoring was the default)"
    )
    parser.add_argument("--weight-decay", type=float, help="the head's L2 penalty (default: train_head's, 1e-3)")
    parser.add_argument("--out", help="write the results as JSON here")
    return parser.parse_args()


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x, y, x_test, y_test


def run_all(
    args: argparse.Namespace, names: list[str], data: Arrays, num_classes: int
) -> tuple[list[int], dict[str, np.ndarray], dict[str, float]]:
    """Every curve (the app's strategies, the candidates, the peer): (label counts, accuracy per seed, s/round)."""
    x, y, x_test, y_test = data
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    curves: dict[str, np.ndarray] = {}
    secs: dict[str, float] = {}
    labels: list[int] = []
    common = {"batch": args.batch, "budget": args.budget}

    def keep(name: str, runs: list, acc: int = 1, sec: int = 2) -> None:
        curves[name] = np.array([r[acc] for r in runs])
        secs[name] = float(np.mean([s for r in runs for s in r[sec]]))

    for name in names:
        strategy, cold = name.removesuffix("+cold"), name.endswith("+cold")
        runs = [
            run_curve(
                x,
                y,
                x_test,
                y_test,
                num_classes=num_classes,
                strategy=strategy,
                initial_rows=initial_rows(x, args.initial, seed, cold_start=cold),
                seed=seed,
                **common,
            )  # fmt: skip
            for seed in seeds
        ]
        labels = runs[0][0]
        keep(name, runs)
        print(f"  {name}: " + " ".join(f"{a:.3f}" for a in curves[name].mean(axis=0)), flush=True)
    for name in (c.strip() for c in args.candidates.split(",") if c.strip()):
        runs = [
            candidate_curve(
                name,
                x,
                y,
                x_test,
                y_test,
                initial=initial_rows(x, args.initial, seed),
                seed=seed,
                num_classes=num_classes,
                **common,
            )  # fmt: skip
            for seed in seeds
        ]
        keep(name, runs)
        print(f"  {name}: " + " ".join(f"{a:.3f}" for a in curves[name].mean(axis=0)), flush=True)
    if not args.no_peer:
        runs = [
            peer_curve(
                x,
                y,
                x_test,
                y_test,
                initial=initial_rows(x, args.initial, seed),
                seed=seed,
                num_classes=num_classes,
                **common,
            )  # fmt: skip
            for seed in seeds
        ]
        keep(PEER, runs, sec=3)
        keep(PEER + "+app_head", runs, acc=2, sec=3)
        print(f"  {PEER}: " + " ".join(f"{a:.3f}" for a in curves[PEER].mean(axis=0)), flush=True)
    return labels, curves, secs


def summarise(
    labels: list[int], curves: dict[str, np.ndarray], secs: dict[str, float], seeds: int
) -> tuple[float | None, dict[str, dict]]:
    """Print the table; returns random's accuracy at the budget and the summary per curve."""
    random_curve = curves["random"].mean(axis=0) if "random" in curves else None
    target = None if random_curve is None else float(random_curve[-1])
    head = f"{'labels':>26} " + " ".join(f"{n:>6}" for n in labels)
    print("\nmean test accuracy over", seeds, "seeds")
    print(head + f" {'s/round':>8} {'to reach':>9} {'ratio':>6} {'worst vs random >=40':>21}")
    summary = {}
    for name, c in curves.items():
        mean = c.mean(axis=0)
        reach = None if target is None else labels_to_reach(labels, mean, target)
        ratio = None if reach is None else reach / labels[-1]
        worst = None
        if random_curve is not None:
            later = [i for i, n in enumerate(labels) if n >= 40]
            worst = float(min(mean[i] - random_curve[i] for i in later))
        summary[name] = {
            "accuracy": mean.round(4).tolist(), "accuracy_std": c.std(axis=0).round(4).tolist(),
            "seconds_per_round": round(secs[name], 3), "labels_to_reach_random_at_budget": reach,
            "ratio": None if ratio is None else round(ratio, 3), "worst_gap_vs_random": worst,
        }  # fmt: skip
        cells = " ".join(f"{a:>6.3f}" for a in mean)
        reach_s = "-" if reach is None else f"{reach:.0f}"
        ratio_s = "-" if ratio is None else f"{ratio:.2f}x"
        worst_s = "-" if worst is None else f"{100 * worst:+.1f} pt"
        print(f"{name:>26} {cells} {secs[name]:>8.2f} {reach_s:>9} {ratio_s:>6} {worst_s:>21}")
    if target is not None:
        print(f"random at {labels[-1]} labels: {target:.3f}")
    return target, summary


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore")
    import lit_models.train

    if args.raw_head:
        lit_models.train.train_head.__kwdefaults__["standardize"] = False
    if args.weight_decay is not None:
        lit_models.train.train_head.__kwdefaults__["weight_decay"] = args.weight_decay
    work = Path(args.work_dir)
    data = args.data or str(digits_folder(work))
    names = list(dict.fromkeys(s.strip() for s in args.strategies.split(",") if s.strip()))
    base = sorted({n.removesuffix("+cold") for n in names})
    cfg = SimulationConfig(data=data, strategies=base, work_dir=str(work), image_size=args.image_size)
    cfg.check()
    x, y, x_test, y_test, classes = load_embeddings(cfg, log=lambda m: None)
    x, y = near_duplicates(x, y, args.duplicates)
    load = os.getloadavg()[0]
    print(f"{len(y)} pool, {len(y_test)} test images, {x.shape[1]}-d, {len(classes)} classes; load {load:.2f}")

    labels, curves, secs = run_all(args, names, (x, y, x_test, y_test), len(classes))
    target, summary = summarise(labels, curves, secs, args.seeds)
    if args.out:
        seeds = list(range(args.first_seed, args.first_seed + args.seeds))
        out = {"labels": labels, "seeds": seeds, "random_at_budget": target, "strategies": summary}
        Path(args.out).write_text(json.dumps(out, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
