"""Numbers a user can trust, on scikit-learn's digits: the accuracy estimate's coverage, calibration, the stop signal.

Runs the app's simulation loop (`app.engine.simulate.run_curve` with `trust=True`: `rounds.run` with the app's
evaluation, so every point is what the app would show) for the default strategy and several seeds, with audit
labels (the app's `audit_share`) drawn from the oracle and counted in the budget. Reports:

- coverage: the share of points from 60 labels on where the 95 % interval shown holds the test accuracy (a point
  with no estimate counts as a miss);
- the test-set ECE of the probabilities shown, from 200 labels on;
- each seed's stop point (labels, share of the pool) and its test accuracy against a head trained on every pool
  label;
- the cost of the audit labels: labels the default strategy needs to reach random's accuracy at 200, with audit
  labels counted, against the same strategy without them (and random without them).

    python -m benchmarks.trust --work-dir /tmp/sim/work --seeds 5 --out /tmp/trust.json

Targets (docs/benchmarks.md): coverage >= 90 %; ECE <= 0.05 from 200 labels; every seed stops before 40 % of the
pool within 2 points of the all-labels head; the audit labels cost at most 0.03x.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import lit_models  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
from app.core.settings import ProjectSettings
from app.core.strategies import DEFAULT_STRATEGY
from app.engine.simulate import SimulationConfig, initial_picks, load_embeddings, run_curve, run_entry
from benchmarks.le_data import folder_of
from benchmarks.le_report import labels_to_reach

DEFAULT_WORK_DIR = Path("/tmp") / "alabel-benchmarks" / "trust"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR), help="keeps images and embeddings for reuse")
    parser.add_argument("--strategy", default=DEFAULT_STRATEGY)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--budget", type=int, default=500, help="labels per run (500 = 40 %% of the digits pool)")
    parser.add_argument("--audit-share", type=float, default=ProjectSettings.audit_share)
    parser.add_argument("--out", help="write every run as JSON here")
    return parser.parse_args()


def full_pool_accuracy(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of the app's head trained on every pool label."""
    from lit_models.train import predict_proba, train_head

    head = train_head(x, y, int(max(y.max(), y_test.max())) + 1)
    return float((predict_proba(head, x_test).argmax(axis=1) == y_test).mean())


def summarise(runs: list[dict], full: float, pool: int) -> dict:
    """The targets' numbers over the seeds' runs (see the module docstring)."""
    hits = total = 0
    ece_late: list[float] = []
    for r in runs:
        for n, acc, lo, hi, ece in zip(
            r["labels"], r["accuracy"], r["estimate_low"], r["estimate_high"], r["ece"], strict=True
        ):
            if n >= 60:
                total += 1
                hits += lo is not None and lo <= acc <= hi
            if n >= 200:
                ece_late.append(ece)
    stops = []
    for r in runs:
        at = r["stop_at"]
        acc = None if at is None else r["accuracy"][r["labels"].index(at)]
        stops.append({"seed": r["seed"], "stop_at": at, "share": None if at is None else at / pool, "accuracy": acc})
    return {
        "coverage_from_60": hits / max(total, 1),
        "points_from_60": total,
        "ece_from_200_mean": float(np.mean(ece_late)) if ece_late else None,  # None: a budget below 200
        "ece_from_200_max": float(np.max(ece_late)) if ece_late else None,
        "ece_from_200_share_ok": float(np.mean(np.array(ece_late) <= 0.05)) if ece_late else None,
        "full_pool_accuracy": full,
        "stops": stops,
    }


def audit_cost(cfg: argparse.Namespace, data: tuple, classes: int, trusted: list[dict]) -> dict:
    """Labels to reach random's 200-label accuracy: the strategy with audit labels, without them, and random."""
    x, y, x_test, y_test = data
    plain: dict[str, list] = {"random": [], cfg.strategy: []}
    for name, curves in plain.items():
        for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
            rows, _ = initial_picks(x, cfg.initial, seed)
            curve = run_curve(
                x, y, x_test, y_test, num_classes=classes, strategy=name, initial_rows=rows, batch=cfg.batch,
                budget=200, seed=seed,
            )  # fmt: skip
            curves.append(curve.accuracy)
    labels = list(range(cfg.initial, 201, cfg.batch))
    target = float(np.mean(plain["random"], axis=0)[-1])
    with_audit = np.mean([r["accuracy"][: len(labels)] for r in trusted], axis=0)
    without = labels_to_reach(labels, np.mean(plain[cfg.strategy], axis=0), target)
    audited = labels_to_reach(labels, with_audit, target)
    return {
        "random_at_200": target,
        "labels_without_audit": without,
        "labels_with_audit": audited,
        "ratio_without_audit": None if without is None else without / 200,
        "ratio_with_audit": None if audited is None else audited / 200,
        "accuracy_with_audit": with_audit.round(4).tolist(),
        "accuracy_without_audit": np.mean(plain[cfg.strategy], axis=0).round(4).tolist(),
    }


def main() -> None:
    args = parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cfg = SimulationConfig(data=str(folder_of("digits", work)), strategies=[args.strategy], work_dir=str(work))
    x, y, x_test, y_test, classes = load_embeddings(cfg, log=lambda m: None)
    print(f"{len(y)} pool, {len(y_test)} test images, {len(classes)} classes", flush=True)
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rows, audit = initial_picks(x, args.initial, seed, audit_share=args.audit_share)
        curve = run_curve(
            x, y, x_test, y_test, num_classes=len(classes), strategy=args.strategy, initial_rows=rows,
            batch=args.batch, budget=args.budget, seed=seed, trust=True, audit_share=args.audit_share,
            initial_audit=audit,
        )  # fmt: skip
        runs.append({**run_entry(seed, curve), "advice": curve.advice})  # the stop rule's numbers, point by point
        print(f"  seed {seed}: stop at {curve.stop_at}, accuracy {curve.accuracy[-1]:.3f}", flush=True)
        if args.out:  # every finished seed kept, in case the run is stopped
            Path(args.out).with_suffix(".partial.json").write_text(json.dumps({"runs": runs, "args": vars(args)}))
    summary = summarise(runs, full_pool_accuracy(x, y, x_test, y_test), len(y))
    summary["audit_cost"] = audit_cost(args, (x, y, x_test, y_test), len(classes), runs)
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "runs": runs, "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
