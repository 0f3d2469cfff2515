"""Label efficiency on two data sets with a bundled backbone: the app's strategies and heads against random.

Data sets (`benchmarks.le_data`): scikit-learn's digits, patches of scikit-image's sample photos (class = which
photo), and the same patches with a skewed pool (one photo 10x the others). Each is embedded once per backbone
(and per flip) into the work dir. Every curve runs the app's round (`app.engine.rounds.run`) with a learner and a
strategy (`benchmarks.le_loop`), from the same initial labels for every configuration of a seed.

A configuration is ``STRATEGY[@LEARNER][+COLD]``: a strategy of `app.core.strategies.STRATEGIES`; the learner
``head`` (the app's `HeadLearner`, the default), ``semi`` (`SemiSupervisedLearner`: label spreading and the head
must agree on a pseudo-label) or ``self`` (self-training on the head's confidence alone); the first 20 labels
random, or ``+cold`` / ``+typiclust`` (the app's cold start) or ``+probcover`` (`app.core.coverage`).

Reported per data set: mean test accuracy per budget; labels to reach random's accuracy at the budget (ratio);
the worst gap below random at any budget >= 40; labels (and share of the pool) to reach 95 % and 99 % of the head
trained on every pool label.

    python -m benchmarks.label_efficiency                                   # every headline figure, 10 seeds
    python -m benchmarks.label_efficiency --datasets patches --arch tf_efficientnet_lite2 --flip --seeds 3
    python -m benchmarks.label_efficiency --datasets digits --configs random,margin --peer --candidates badge

Targets (docs/benchmarks.md, issue 16): the default reaches random's accuracy at the budget with <= 0.5x the labels,
95 % of the full-pool model with <= 5 % of the pool and 99 % with <= 15 %, never more than 1 point below random at
a budget >= 40.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

import lit_models  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
from benchmarks.le_data import DATASETS, load
from benchmarks.le_loop import full_pool_accuracy, initial_rows, run_curve
from benchmarks.le_report import figures, fmt

DEFAULT_WORK_DIR = Path("/tmp") / "alabel-benchmarks" / "label-efficiency"
DEFAULT_CONFIGS = "random,margin_diverse+cold,margin_diverse@semi+cold"
COLD = {"": "random", "cold": "typiclust", "typiclust": "typiclust", "probcover": "probcover", "random": "random"}
PEER = "skactiveml_margin"


def learner_of(name: str):
    """The learner a configuration names (None = the app's plain head)."""
    from app.engine.learners import HeadLearner
    from benchmarks.semi_supervised import SemiSupervisedLearner

    if name in ("", "head"):
        return HeadLearner()
    if name in ("semi", "self"):
        return SemiSupervisedLearner(method="spread" if name == "semi" else "self")
    raise ValueError(f"Unknown learner '{name}'; choose head, semi or self.")


def parse_config(config: str) -> tuple[str, str, str]:
    """(strategy, learner, cold start) of ``STRATEGY[@LEARNER][+COLD]``."""
    rest, _, cold = config.partition("+")
    strategy, _, learner = rest.partition("@")
    if cold not in COLD:
        raise ValueError(f"Unknown cold start '+{cold}'; choose +cold (TypiClust), +typiclust or +probcover.")
    return strategy, learner or "head", COLD[cold]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR), help="keeps images and embeddings for reuse")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated: {', '.join(DATASETS)}")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated STRATEGY[@LEARNER][+COLD]")
    parser.add_argument("--arch", default="tf_efficientnet_lite0", help="bundled backbone: tf_efficientnet_lite0/1/2")
    parser.add_argument("--flip", action="store_true", help="mean of each image's and its mirror image's embedding")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--peer", action="store_true", help="also scikit-activeml's margin sampling")
    parser.add_argument("--candidates", default="", help="comma-separated: badge, cluster_margin, power_margin")
    parser.add_argument("--duplicates", type=int, default=1, help="each pool image this many times (near-copies)")
    parser.add_argument("--out", help="write the results as JSON here")
    return parser.parse_args()


def curves_for(args: argparse.Namespace, data: tuple, num_classes: int) -> tuple[list[int], dict, dict]:
    """Every configuration's accuracy per seed and point, and its mean seconds per round."""
    from benchmarks.le_candidates import candidate_curve, peer_curve

    x, y, x_test, y_test = data
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    common = {"batch": args.batch, "budget": args.budget, "num_classes": num_classes}
    curves: dict[str, np.ndarray] = {}
    secs: dict[str, float] = {}
    labels: list[int] = []
    for config in (c.strip() for c in args.configs.split(",") if c.strip()):
        strategy, learner, cold = parse_config(config)
        runs = [
            run_curve(
                x,
                y,
                x_test,
                y_test,
                strategy=strategy,
                initial=initial_rows(x, args.initial, seed, cold),
                seed=seed,
                learner=learner_of(learner),
                **common,
            )  # fmt: skip
            for seed in seeds
        ]
        labels = runs[0][0]
        curves[config] = np.array([r[1] for r in runs])
        secs[config] = float(np.mean([s for r in runs for s in r[2]]))
        print(f"  {config}: " + " ".join(f"{a:.3f}" for a in curves[config].mean(axis=0)), flush=True)
    extra = [c.strip() for c in args.candidates.split(",") if c.strip()] + ([PEER] if args.peer else [])
    for name in extra:
        curve_fn = peer_curve if name == PEER else functools.partial(candidate_curve, name)
        runs = [
            curve_fn(x, y, x_test, y_test, initial=initial_rows(x, args.initial, seed), seed=seed, **common)
            for seed in seeds
        ]
        curves[name] = np.array([r[1] for r in runs])
        secs[name] = float(np.mean([s for r in runs for s in r[-1]]))
        print(f"  {name}: " + " ".join(f"{a:.3f}" for a in curves[name].mean(axis=0)), flush=True)
    return labels, curves, secs


def table(labels: list[int], curves: dict, secs: dict, full: float, pool: int, budget: int) -> dict[str, dict]:
    """Print one data set's table; returns its figures per configuration."""
    rnd = curves.get("random")
    print(f"{'labels':>26} " + " ".join(f"{n:>5}" for n in labels), end="")
    print(f" {'s/round':>7} {'ratio':>6} {'worst>=40':>9} {'to 95 %':>13} {'to 99 %':>13}")
    out = {}
    for name, c in curves.items():
        f = figures(labels, c, rnd, full, pool, budget)
        out[name] = {"accuracy": c.mean(axis=0).round(4).tolist(), "accuracy_std": c.std(axis=0).round(4).tolist(),
                     "seconds_per_round": round(secs[name], 3), **f}  # fmt: skip
        worst = None if f["worst"] is None else 100 * f["worst"]
        to95 = f"{fmt(f['to95'], '.0f')} ({fmt(None if f['to95'] is None else 100 * f['to95_pool'], '.1f')}%)"
        to99 = f"{fmt(f['to99'], '.0f')} ({fmt(None if f['to99'] is None else 100 * f['to99_pool'], '.1f')}%)"
        print(f"{name:>26} " + " ".join(f"{a:>5.3f}" for a in c.mean(axis=0)), end="")
        print(f" {secs[name]:>7.2f} {fmt(f['ratio'], '.2f'):>6} {fmt(worst, '+.1f'):>9} {to95:>13} {to99:>13}")
    return out


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore")
    work = Path(args.work_dir)
    results: dict = {"seeds": list(range(args.first_seed, args.first_seed + args.seeds)), "arch": args.arch,
                     "flip": args.flip, "datasets": {}}  # fmt: skip
    for name in (d.strip() for d in args.datasets.split(",") if d.strip()):
        start = time.perf_counter()
        x, y, x_test, y_test, classes = load(name, work, arch=args.arch, flip=args.flip)
        if args.duplicates > 1:
            from benchmarks.le_candidates import near_duplicates

            x, y = near_duplicates(x, y, args.duplicates)
        full = full_pool_accuracy(x, y, x_test, y_test, len(classes))
        counts = np.bincount(y, minlength=len(classes))
        print(f"\n{name}: {len(y)} pool ({counts.min()}-{counts.max()} per class), {len(y_test)} test, "
              f"{len(classes)} classes, {args.arch}{' +flip' if args.flip else ''}; head on every pool label "
              f"{full:.3f}; load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        labels, curves, secs = curves_for(args, (x, y, x_test, y_test), len(classes))
        print(f"mean test accuracy over {args.seeds} seeds ({time.perf_counter() - start:.0f} s)")
        figs = table(labels, curves, secs, full, len(y), args.budget)
        results["datasets"][name] = {"labels": labels, "pool": len(y), "full_pool_accuracy": full, "curves": figs}
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
