"""The label-efficiency benchmark's figures from mean curves: labels to reach a target, ratios, worst gaps."""

from __future__ import annotations

import numpy as np


def labels_to_reach(labels: list[int], acc: np.ndarray, target: float) -> float | None:
    """Labels at which the mean curve first reaches `target` (linear interpolation); None if it never does."""
    for i, a in enumerate(acc):
        if a >= target:
            if i == 0:
                return float(labels[0])
            a0, l0 = acc[i - 1], labels[i - 1]
            return float(l0 + (labels[i] - l0) * (target - a0) / (a - a0))
    return None


def figures(
    labels: list[int], curve: np.ndarray, random_curve: np.ndarray | None, full: float, pool: int, at: int
) -> dict[str, float | None]:
    """A curve's figures (`curve`: accuracy per seed x point).

    Returns:
        ratio: labels to reach random's mean accuracy at `at` labels, over `at`; worst: the mean curve's worst gap
        below random at a budget >= 40 (accuracy points, negative = below); to95 / to99: labels to reach 95 % / 99 %
        of `full` (the head on every pool label), and the same as a share of the `pool`.
    """
    mean = curve.mean(axis=0)
    out: dict[str, float | None] = {"ratio": None, "worst": None}
    if random_curve is not None:
        r = random_curve.mean(axis=0)
        reach = labels_to_reach(labels, mean, float(r[labels.index(at)]))
        out["ratio"] = None if reach is None else reach / at
        later = [i for i, n in enumerate(labels) if n >= 40]
        out["worst"] = float(min(mean[i] - r[i] for i in later))
    for share in (95, 99):
        reach = labels_to_reach(labels, mean, share / 100 * full)
        out[f"to{share}"] = reach
        out[f"to{share}_pool"] = None if reach is None else reach / pool
    return out


def fmt(v: float | None, spec: str) -> str:
    """A number for the table, '-' for None."""
    return "-" if v is None else format(v, spec)
