"""Simulated labeling with an oracle: compare query strategies on already-labeled images."""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from app.core.atomic import atomic_path, atomic_write_text
from app.core.audit import AUDIT, audit_count, draw_audit
from app.core.calibration import expected_calibration_error
from app.core.errors import AppError
from app.core.settings import ProjectSettings
from app.core.splits import stratified_holdout
from app.core.store import ProjectStore
from app.core.strategies import STRATEGIES, typical_clusters
from app.engine import rounds
from app.engine.evaluation import evaluate
from app.engine.learners import HeadLearner
from app.engine.rounds import RoundData, run
from app.engine.session import ActiveLearningSession


@dataclass
class SimulationConfig:
    """Arguments of `python -m app simulate` (see the README)."""

    data: str
    strategies: list[str]
    test: str | None = None
    initial: int = 20
    batch: int = 20
    budget: int = 200
    seeds: int = 3
    backbone: str = "tf_efficientnet_lite0"
    weights: str | None = None
    image_size: int | None = None
    test_fraction: float = 0.3
    work_dir: str | None = None
    out: str | None = None
    max_epochs: int | None = None
    cold_start: bool = False
    devices: int = 1
    num_nodes: int = 1
    dist_strategy: str = "auto"
    audit_share: float = ProjectSettings.audit_share
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise AppError(f"Unknown strategy '{unknown[0]}'. Choose from: {', '.join(STRATEGIES)}.")
        if not self.strategies:
            raise AppError("Name at least one strategy, e.g. --strategies random,margin.")
        if self.initial < 1 or self.batch < 1 or self.seeds < 1:
            raise AppError("--initial, --batch and --seeds must be at least 1.")
        if self.budget < self.initial:
            raise AppError("--budget must be at least --initial.")
        if not 0.0 <= self.audit_share < 1.0:
            raise AppError("--audit-share must be at least 0 and below 1 (e.g. 0.1: 2 of every 20 labels).")
        if self.devices < 1 or self.num_nodes < 1:
            raise AppError("--devices and --num-nodes must be at least 1.")
        for path in (self.data, self.test):
            if path is not None and not Path(path).exists():
                raise AppError(f"'{path}' does not exist; give a class-folder directory or a CSV of path,label.")


def _settings(cfg: SimulationConfig) -> ProjectSettings:
    source = "file" if cfg.weights else ("bundled" if cfg.backbone == "tf_efficientnet_lite0" else "hub")
    return ProjectSettings(
        backbone=cfg.backbone, backbone_source=source, weights=cfg.weights, image_size=cfg.image_size,
        devices=cfg.devices, num_nodes=cfg.num_nodes, dist_strategy=cfg.dist_strategy,
    )  # fmt: skip


def _load_split(
    work: Path, name: str, path: str, settings: ProjectSettings, log: Callable[[str], None]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Import a labeled dataset into a scratch project and return (embeddings, label names per row, label set)."""
    root = work / name
    if (root / ProjectStore.DB_NAME).exists():
        # this run's settings, not the stored ones: another backbone or image size embeds with the one asked for
        # (its cache lives beside the other, keyed by backbone and size), and `--devices` applies
        session = ActiveLearningSession(ProjectStore(root, create=False), settings)
        session.store.update_settings(settings=settings.to_dict())
    else:
        session = ActiveLearningSession(ProjectStore(root), settings)
        session.store.update_settings(name=name, settings=settings.to_dict())
    src = Path(path)
    report = session.add_data([src], labels_from_folders=src.is_dir())
    log(f"{path}: {report.summary()}")
    for rej in report.rejected[:5]:
        log(f"  skipped {rej.source}: {rej.reason}")
    labels = session.store.current_labels()
    ids = [i for i in session.store.image_ids() if i in labels]
    if not ids:
        raise AppError(f"No labeled images found in '{path}'; use class folders (root/<class>/<image>) or a CSV.")
    x_all = session.ensure_embeddings()  # over `devices` x `num_nodes` processes when the settings ask
    row = {image_id: r for r, image_id in enumerate(session.store.image_ids())}
    x = x_all[[row[i] for i in ids]]
    names = [labels[i] for i in ids]
    label_set = session.store.labels()
    session.store.close()
    return x, np.array(names, dtype=object), label_set


class Curve(NamedTuple):
    """One simulated labeling run (one seed), point by point.

    Attributes:
        labels: labels at each point (audit labels included: they are part of the budget).
        accuracy: test accuracy of the round's model.
        seconds: seconds per train + evaluate + score + select (one fewer than the points).
        estimate, estimate_low, estimate_high: the accuracy and its 95 % interval the app shows at that point (None
            where it shows none); empty without `trust`.
        ece: expected calibration error of the shown probabilities on the test set; empty without `trust`.
        stop_at: labels at which the app first said "you can stop", or None.
        advice: the stop advice's numbers at each point (mean kappa of the window, expected gain of the next 100
            labels; None where not measured); empty without `trust`.
    """

    labels: list[int]
    accuracy: list[float]
    seconds: list[float]
    estimate: list[float | None]
    estimate_low: list[float | None]
    estimate_high: list[float | None]
    ece: list[float | None]
    advice: list[dict[str, Any]]
    stop_at: int | None = None


def initial_picks(
    x: np.ndarray, n: int, seed: int, *, cold_start: bool = False, audit_share: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` labeled pool rows and which are audit labels: as the app's first batch, a share drawn at
    random (audit), the rest random or the cold start (TypiClust)."""
    n_audit = audit_count(n, audit_share, has_model=False)
    if not cold_start:
        rows = initial_rows(x, n, seed)
        return rows, np.arange(n) < n_audit  # random rows: any of them is a uniform draw
    typical = typical_clusters(x, n - n_audit, seed=seed)
    rest = np.setdiff1d(np.arange(len(x)), typical)
    audit = rest[draw_audit(len(rest), n_audit, seed)]
    return np.concatenate([typical, audit]), np.arange(n) >= n - n_audit


def run_curve(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    num_classes: int,
    strategy: str,
    initial_rows: np.ndarray,
    batch: int,
    budget: int,
    seed: int,
    max_epochs: int | None = None,
    trust: bool = False,
    audit_share: float = 0.0,
    initial_audit: np.ndarray | None = None,
) -> Curve:
    """One simulated labeling run: the app's round (`rounds.run` with the head learner) on oracle labels, every
    label trained on (the test set measures).

    Args:
        trust: evaluate every round as the app does (audit cross-fitting, calibration, stop advice); the curve then
            holds the estimate, the test ECE and the stop point.
        audit_share: share of each batch drawn at random as audit labels (the app's `audit_share`).
        initial_audit: which of `initial_rows` are audit labels (None = none).
    """
    from lit_models.train import predict_proba

    learner = HeadLearner(max_epochs=max_epochs)
    ev = functools.partial(evaluate, max_epochs=max_epochs, seed=seed) if trust else None
    labeled = [int(r) for r in initial_rows]
    audit = {r for r, a in zip(labeled, initial_audit if initial_audit is not None else [], strict=False) if a}
    curve = Curve([], [], [], [], [], [], [], [])
    past: list[tuple[int, dict]] = []
    while True:
        lab = np.array(labeled, dtype=np.int64)
        data = RoundData.from_arrays(
            x,
            lab,
            y[lab],
            num_classes=num_classes,
            seed=seed * 1000 + len(curve.labels),
            audit=np.array([r in audit for r in labeled], dtype=bool),
            history=rounds.history(past, len(lab)),
        )  # a new seed each round, as the app's rounds; fmt: skip
        k = min(batch, budget - len(labeled), len(data.pool_rows))
        result = run(data, learner, strategy=strategy, k=max(k, 1), evaluate=ev, audit_share=audit_share)
        probs = predict_proba(result.fitted.head, x_test)
        curve.labels.append(len(labeled))
        curve.accuracy.append(float((probs.argmax(axis=1) == y_test).mean()))
        if trust:
            curve = _measured(curve, result.metrics, probs, y_test)
            past.append((len(labeled), result.metrics))
        if k <= 0:
            return curve
        curve.seconds.append(result.seconds)
        for image_id, picked_by, _ in result.picks[:k]:
            labeled.append(image_id)
            if picked_by == AUDIT:
                audit.add(image_id)


def _measured(curve: Curve, metrics: dict, probs: np.ndarray, y_test: np.ndarray) -> Curve:
    """`curve` with one more point of what the app shows (estimate, interval), the test ECE and the stop point."""
    shown = metrics.get("accuracy") is not None
    curve.estimate.append(metrics["accuracy"] if shown else None)
    curve.estimate_low.append(metrics.get("accuracy_low") if shown else None)
    curve.estimate_high.append(metrics.get("accuracy_high") if shown else None)
    curve.ece.append(expected_calibration_error(probs, y_test))
    advice = metrics.get("advice", {})
    curve.advice.append(
        {"agreement": metrics.get("agreement"), **{k: advice.get(k) for k in ("kappa", "gain_100", "gain_low")}}
    )
    if curve.stop_at is None and metrics.get("advice", {}).get("stop"):
        return curve._replace(stop_at=curve.labels[-1])
    return curve


def load_embeddings(
    cfg: SimulationConfig, log: Callable[[str], None] = print
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Embeddings and class indices of the pool and the test set: (x, y, x_test, y_test, class names)."""
    settings = _settings(cfg)
    with tempfile.TemporaryDirectory(prefix="alsim-") as tmp:
        work = Path(cfg.work_dir) if cfg.work_dir else Path(tmp)
        x, names, label_set = _load_split(work, "train", cfg.data, settings, log)
        if cfg.test:
            x_test, test_names, _ = _load_split(work, "test", cfg.test, settings, log)
        else:
            held = stratified_holdout(names, cfg.test_fraction, seed=12345)
            x_test, test_names = x[held], names[held]
            x, names = x[~held], names[~held]
    classes = sorted(set(names.tolist()) | set(test_names.tolist()), key=label_set.index)
    index = {n: i for i, n in enumerate(classes)}
    y = np.array([index[n] for n in names])
    y_test = np.array([index[n] for n in test_names])
    return x, y, x_test, y_test, classes


def initial_rows(x: np.ndarray, n: int, seed: int, *, cold_start: bool = False) -> np.ndarray:
    """The first `n` labeled pool rows of a run: random, or the app's cold start (TypiClust on the embeddings)."""
    if cold_start:
        return typical_clusters(x, n, seed=seed)  # what select_batch picks without a model
    return np.random.default_rng(seed).choice(len(x), size=n, replace=False)


def simulate(cfg: SimulationConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every strategy for every seed on shared embeddings; returns the results dict (see README)."""
    cfg.check()
    x, y, x_test, y_test, classes = load_embeddings(cfg, log)
    if cfg.budget > len(y):
        raise AppError(f"--budget {cfg.budget} is more than the {len(y)} training images available.")
    log(f"{len(y)} pool images, {len(y_test)} test images, {len(classes)} classes, {x.shape[1]}-d embeddings.")
    results: dict[str, Any] = {"strategies": {}, "config": {k: v for k, v in vars(cfg).items() if k != "extra"}}
    for strategy in cfg.strategies:
        runs = []
        for seed in range(cfg.seeds):
            cold = cfg.cold_start and strategy != "random"
            initial, audit = initial_picks(x, cfg.initial, seed, cold_start=cold, audit_share=cfg.audit_share)
            runs.append(
                run_curve(
                    x,
                    y,
                    x_test,
                    y_test,
                    num_classes=len(classes),
                    strategy=strategy,
                    initial_rows=initial,
                    batch=cfg.batch,
                    budget=cfg.budget,
                    seed=seed,
                    max_epochs=cfg.max_epochs,
                    trust=True,
                    audit_share=cfg.audit_share,
                    initial_audit=audit,
                )  # fmt: skip
            )
            log(f"  {strategy} seed {seed}: accuracy {runs[-1].accuracy[-1]:.3f} at {runs[-1].labels[-1]} labels")
        acc = np.array([r.accuracy for r in runs])
        results["strategies"][strategy] = {
            "labels": runs[0].labels,
            "accuracy": acc.mean(axis=0).round(4).tolist(),
            "accuracy_std": acc.std(axis=0).round(4).tolist(),
            "seconds_per_round": round(float(np.mean([s for r in runs for s in r.seconds] or [0.0])), 4),
            "runs": [run_entry(seed, r) for seed, r in enumerate(runs)],
        }
    if cfg.out:
        out = Path(cfg.out)
        atomic_write_text(out, json.dumps(results, indent=2))
        plot_results(results, out.with_suffix(".png"))
    return results


def _rounded(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None else round(float(v), 4) for v in values]


def run_entry(seed: int, curve: Curve) -> dict[str, Any]:
    """One seed's run as `simulate` writes it: labels, test accuracy, the estimate and interval the app showed,
    the test ECE of the probabilities it showed, and the labels at which it first said "you can stop" (or None)."""
    return {
        "seed": seed,
        "labels": list(curve.labels),
        "accuracy": _rounded(curve.accuracy),
        "estimate": _rounded(curve.estimate),
        "estimate_low": _rounded(curve.estimate_low),
        "estimate_high": _rounded(curve.estimate_high),
        "ece": _rounded(curve.ece),
        "stop_at": curve.stop_at,
    }


def format_table(results: dict[str, Any], every: Sequence[int] | None = None) -> str:
    """Labels vs accuracy per strategy, as a plain-text table."""
    strategies = results["strategies"]
    labels = next(iter(strategies.values()))["labels"]
    rows = [i for i, n in enumerate(labels) if every is None or n in every]
    head = f"{'labels':>8} " + " ".join(f"{s:>18}" for s in strategies)
    lines = [head, "-" * len(head)]
    for i in rows:
        cells = " ".join(f"{v['accuracy'][i]:>11.3f} ± {v['accuracy_std'][i]:.3f}" for v in strategies.values())
        lines.append(f"{labels[i]:>8} {cells}")
    lines.append(f"{'s/round':>8} " + " ".join(f"{v['seconds_per_round']:>18.3f}" for v in strategies.values()))
    return "\n".join(lines)


def plot_results(results: dict[str, Any], path: Path) -> None:
    """Accuracy vs labels, one line per strategy with a ±1 std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, v in results["strategies"].items():
        labels, acc, std = np.array(v["labels"]), np.array(v["accuracy"]), np.array(v["accuracy_std"])
        ax.plot(labels, acc, marker="o", ms=3, label=name)
        ax.fill_between(labels, acc - std, acc + std, alpha=0.15)
    ax.set_xlabel("labeled images")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
