"""When more labels stop paying: stabilizing predictions plus a flat accuracy estimate. Advice only.

Stabilizing predictions (Bloodgood & Vijay-Shanker 2009): a fixed random "stop set" of images is predicted by every
round's model; Cohen's kappa between successive rounds' predictions on the whole stop set says
how much the model still changes. With kappa above T, successive models differ by at most 4(1 - T)/T in F-measure
(Bloodgood & Grothendieck 2013). The rule here is theirs and small-text's `KappaAverage` defaults: a window of 3
rounds whose mean kappa is at least 0.99. Alone it can fire on a model that changes slowly but still improves, so
the advice also asks that the accuracy estimate has flattened: its slope over the last rounds predicts less than
`PLATEAU_GAIN` from the next 100 labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STOP_SET_SIZE = 500
KAPPA = 0.99
WINDOW = 3
PLATEAU_GAIN = 0.01  # expected gain of the next 100 labels below which the estimate counts as flat
SLOPE_POINTS = 4  # rounds whose estimates give the slope
MIN_AUDIT_TO_STOP = 20  # an estimate on fewer random checks is too rough to call flat
_MASK64 = (1 << 64) - 1


def _mix(ids: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of (id, seed): a fixed pseudo-random rank per image, independent of when it was added."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + np.uint64((0x9E3779B97F4A7C15 * (seed + 1)) & _MASK64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def stop_set(ids: Sequence[int], seed: int = 0, size: int = STOP_SET_SIZE) -> np.ndarray:
    """The stop set: the `size` images of `ids` ranked first by a fixed hash of (id, seed), as positions in `ids`.

    An image's rank never changes, so the set stays the same between rounds (new images enter only when they rank
    before the set's last one).
    """
    arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(arr) <= size:
        return np.arange(len(arr), dtype=np.int64)
    return np.sort(np.argpartition(_mix(arr, seed), size - 1)[:size]).astype(np.int64)


def cohen_kappa(a: Sequence[int], b: Sequence[int], num_classes: int) -> float | None:
    """Cohen's kappa between two predictions of the same items (1 = same answers; 0 = as if by chance).

    Returns None without items; 1.0 when both always give the same single class.
    """
    x, y = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if len(x) == 0:
        return None
    observed = float((x == y).mean())
    expected = float((np.bincount(x, minlength=num_classes) * np.bincount(y, minlength=num_classes)).sum())
    expected /= len(x) ** 2
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def agreement(
    previous: dict | None, ids: Sequence[int], pred: Sequence[int], unlabeled: set[int] | None, classes: int
) -> tuple[float | None, int]:
    """Kappa between the previous round's and this round's predictions on the stop set images in both rounds.

    Args:
        previous: the previous round's {"ids": [...], "pred": [...]}, or None.
        ids: this round's stop set image ids; `pred` their predicted classes.
        unlabeled: compare only these ids (the images unlabeled now); None = the whole stop set.
        classes: number of classes.

    Returns:
        (kappa or None, images compared).
    """
    if not previous:
        return None, 0
    before = dict(zip(previous.get("ids", []), previous.get("pred", []), strict=False))
    common = [
        (before[i], p) for i, p in zip(ids, pred, strict=True) if i in before and (unlabeled is None or i in unlabeled)
    ]
    if not common:
        return None, 0
    a, b = zip(*common, strict=True)
    return cohen_kappa(a, b, classes), len(common)


def expected_gain(labels: Sequence[int], estimates: Sequence[float], per: int = 100) -> float | None:
    """The accuracy the next `per` labels should add: the least-squares slope of the estimate over the last
    `SLOPE_POINTS` rounds, times `per`, within [0, 1 - last estimate]; None with fewer than 3 estimates."""
    pts = [(n, e) for n, e in zip(labels, estimates, strict=True) if e is not None][-SLOPE_POINTS:]
    if len(pts) < 3 or pts[-1][0] == pts[0][0]:
        return None
    n, e = np.array(pts, dtype=np.float64).T
    slope = float(np.polyfit(n, e, 1)[0])
    return float(min(max(slope * per, 0.0), 1.0 - e[-1]))


def advise(kappas: Sequence[float | None], labels: Sequence[int], estimates: Sequence[float | None], audit_n: int):
    """Stop or keep going, with the reason in plain words.

    Args:
        kappas: agreement with the previous round, one per round so far (None where it could not be measured).
        labels: labels of each round; `estimates` the accuracy estimate of each (None where none was shown).
        audit_n: random check labels behind the newest estimate.

    Returns:
        {"stop": bool, "text": "You can stop: ..." / "Keep going: ...", "kappa": mean kappa of the window or None,
        "gain_100": expected gain of the next 100 labels or None}.
    """
    recent = [k for k in kappas[-WINDOW:] if k is not None]
    kappa = float(np.mean(recent)) if len(recent) == WINDOW else None
    gain = expected_gain(labels, estimates)
    gain_text = "" if gain is None else f"; the next 100 labels should add about {gain * 100:.0f} points"
    if kappa is None:
        why = f"the model is still new (its guesses are compared over {WINDOW} rounds before advising)"
    elif kappa < KAPPA:
        why = f"its guesses still change from round to round (agreement {kappa:.3f}; {KAPPA} means settled)"
    elif audit_n < MIN_AUDIT_TO_STOP:
        why = f"guesses have settled, but {audit_n} random checks are too few to tell whether accuracy still rises"
    elif gain is None or gain >= PLATEAU_GAIN:
        why = "guesses have settled, but the accuracy estimate is still rising"
    else:
        text = f"You can stop: the model's guesses have settled (agreement {kappa:.3f}) and accuracy has leveled off"
        return {"stop": True, "text": text + gain_text + ".", "kappa": kappa, "gain_100": gain}
    return {"stop": False, "text": f"Keep going: {why}{gain_text}.", "kappa": kappa, "gain_100": gain}
