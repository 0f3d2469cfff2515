"""When more labels stop paying: stabilizing predictions plus a flat accuracy estimate. Advice only.

Stabilizing predictions (Bloodgood & Vijay-Shanker 2009): a fixed random "stop set" of images is predicted by every
round's model; Cohen's kappa between the predictions of models some labels apart on the whole stop set says how much
the model still changes. With kappa above T, the two models differ by at most 4(1 - T)/T in F-measure (Bloodgood &
Grothendieck 2013). The rule is theirs and small-text's `KappaAverage` (mean kappa of a window at least 0.99),
measured in labels rather than rounds, so that the batch size does not change when it fires: each round's model is
compared with the newest one at least `SPAN` labels older (the previous round with batches of 20), and the window
holds the rounds of the last `WINDOW_LABELS` labels (the last `WINDOW` rounds when those are fewer). Alone it can
fire on a model that changes slowly but still improves, so the advice also asks the random checks: a head trained
without `LEAVE_OUT` of the labels scores the same checks as a head on all of them (`paired_gain`), and while that
shows, beyond doubt, more than `PLATEAU_GAIN` per 100 labels, the advice is to keep going. The slope of the
estimates themselves cannot say this: each estimate adds new random checks, so successive estimates differ by
several points of sampling noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STOP_SET_SIZE = 500
KAPPA = 0.99
WINDOW = 3  # fewest agreements in a window
SPAN = 20  # labels between the two models an agreement compares
WINDOW_LABELS = 100  # the window: the agreements of the rounds of the last this many labels
PLATEAU_GAIN = 0.01  # gain per 100 labels that the random checks must show, beyond doubt, to say keep going
LEAVE_OUT = 100  # labels left out of the heads that measure the gain
Z_ONE_SIDED = 1.644854  # one-sided 95 % normal quantile
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


def reference(labels: Sequence[int], now: int) -> int | None:
    """Which earlier round (index into `labels`, the labels of each) a model on `now` labels is compared with: the
    newest one at least `SPAN` labels older; None when there is none."""
    older = [i for i, n in enumerate(labels) if n <= now - SPAN]
    return older[-1] if older else None


def window_kappa(kappas: Sequence[float | None], labels: Sequence[int]) -> float | None:
    """Mean agreement of the rounds of the last `WINDOW_LABELS` labels, or of the last `WINDOW` rounds when those
    labels hold fewer (batches over a third of `WINDOW_LABELS`); one kappa and label count per round, the newest
    last. None until there are `WINDOW` rounds and each in the window has an agreement."""
    if len(labels) < WINDOW:
        return None
    inside = sum(1 for n in labels if n > labels[-1] - WINDOW_LABELS)
    recent = list(kappas[-max(inside, WINDOW) :])  # big batches: the last `WINDOW` rounds, more labels than that
    if any(k is None for k in recent):
        return None
    return float(np.mean(recent))


def paired_gain(now_right: Sequence[bool], before_right: Sequence[bool], left_out: int, per: int = 100) -> dict:
    """What `per` more labels add, from the same random checks scored twice: by a head on the labels and by one
    without `left_out` of them (neither trained on the checks). Pairing cancels how hard the checks are, so only
    the checks on which the two disagree count, and the estimate is far steadier than a slope of estimates on
    growing samples.

    Returns:
        {"gain": per-`per` gain, "low": its one-sided 95 % lower bound, "n": checks}; gain 0 without checks.
    """
    d = np.asarray(now_right, dtype=np.float64) - np.asarray(before_right, dtype=np.float64)
    if len(d) == 0 or left_out <= 0:
        return {"gain": 0.0, "low": 0.0, "n": 0}
    scale = per / left_out
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return {"gain": float(d.mean()) * scale, "low": (float(d.mean()) - Z_ONE_SIDED * se) * scale, "n": len(d)}


def advise(kappas: Sequence[float | None], labels: Sequence[int], gain: dict | None, audit_n: int) -> dict:
    """Stop or keep going, with the reason in plain words.

    Args:
        kappas: each round's agreement with its `reference` round, one per round so far (None where it could not be
            measured); `labels` the labels of each.
        gain: `paired_gain` of the newest model, or None where it was not measured (it is measured from
            `MIN_AUDIT_TO_STOP` random checks on).
        audit_n: random check labels behind the newest estimate.

    Returns:
        {"stop": bool, "text": "You can stop: ..." / "Keep going: ...", "kappa": mean kappa of the window or None,
        "gain_100": expected gain of the next 100 labels or None, "gain_low": its lower bound or None}.
    """
    kappa = window_kappa(kappas, labels)
    g = None if gain is None else max(float(gain["gain"]), 0.0)
    low = None if gain is None else float(gain["low"])
    out = {"kappa": kappa, "gain_100": g, "gain_low": low}
    gain_text = "" if g is None else f"; on the random checks, 100 more labels add about {g * 100:.0f} points"
    if kappa is None:
        why = f"the model is still new (its guesses are compared over {WINDOW_LABELS} labels before advising)"
    elif kappa < KAPPA:
        why = f"its guesses still change from round to round (agreement {kappa:.3f}; {KAPPA} means settled)"
    elif audit_n < MIN_AUDIT_TO_STOP or low is None:
        why = f"guesses have settled, but {audit_n} random checks are too few to tell whether accuracy still rises"
    elif low > PLATEAU_GAIN:
        why = "guesses have settled, but accuracy is still clearly rising"
    else:
        text = f"You can stop: the model's guesses have settled (agreement {kappa:.3f}) and accuracy has leveled off"
        return {"stop": True, "text": text + gain_text + ".", **out}
    return {"stop": False, "text": f"Keep going: {why}{gain_text}.", **out}
