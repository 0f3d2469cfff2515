"""How much annotators agree, and how fast they label, from the annotation history (shared labeling).

Each annotator's label of an image is their newest annotation of it that is not undone. Agreement is Cohen's kappa
(chance-corrected: 1 = always the same label, 0 = no better than chance, below 0 = worse) on the images two
annotators both labeled. It is None where it says nothing: on fewer than `MIN_SHARED` shared images, or when it is
undefined (both gave one and the same label to every shared image, so chance already explains all agreement).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import cohen_kappa_score

from app.core.records import Annotation

MIN_SHARED = 2  # fewest shared images a kappa is reported on

Pairs = tuple[list[str], list[str]]


@dataclass(frozen=True)
class AnnotatorStats:
    """One annotator's work and agreement.

    Attributes:
        annotator: the name recorded on their labels.
        labels: their labels that are not undone (relabels of an image count again).
        images: distinct images they labeled.
        median_seconds: median time spent per label, over the labels that recorded it; None if none did.
        labels_per_hour: labels per hour of recorded labeling time (3600 x labels / their seconds); None if no time
            was recorded.
        kappa: Cohen's kappa of their labels against everyone else's on the images they share (each other
            annotator of an image is one comparison); None as the module says.
        shared: images they labeled that somebody else labeled too.
    """

    annotator: str
    labels: int
    images: int
    median_seconds: float | None
    labels_per_hour: float | None
    kappa: float | None
    shared: int


@dataclass(frozen=True)
class PairAgreement:
    """The agreement of two annotators (names in sorted order) on the images both labeled.

    Attributes:
        kappa: Cohen's kappa; None as the module says.
        shared: images both labeled.
        agreed: images they gave the same label.
    """

    first: str
    second: str
    kappa: float | None
    shared: int
    agreed: int


@dataclass(frozen=True)
class Agreement:
    """Speed and agreement of every annotator of a project.

    Attributes:
        annotators: per annotator, by name.
        pairs: per pair of annotators who share at least one image, by names.
        kappa: the overall figure: Cohen's kappa of the earlier label against each later one of the same image by
            another annotator, over every image labeled by more than one; None as the module says.
        shared: images labeled by more than one annotator (what `kappa` rests on).
    """

    annotators: tuple[AnnotatorStats, ...]
    pairs: tuple[PairAgreement, ...]
    kappa: float | None
    shared: int


def kappa(first: Sequence[str], second: Sequence[str], min_shared: int = MIN_SHARED) -> float | None:
    """Cohen's kappa of two equally long label lists; None below `min_shared` items or where it is undefined."""
    if len(first) != len(second):
        raise ValueError("Both label lists must have one label per shared image.")
    if len(first) < max(1, min_shared):
        return None
    with warnings.catch_warnings():  # sklearn warns and returns NaN when kappa is undefined
        warnings.simplefilter("ignore")
        value = float(cohen_kappa_score(list(first), list(second)))
    return value if math.isfinite(value) else None


def standing_labels(history: Sequence[Annotation]) -> dict[int, dict[str, tuple[int, str]]]:
    """Per image, per annotator: (id of their first standing annotation, their newest standing label)."""
    out: dict[int, dict[str, tuple[int, str]]] = {}
    for ann in sorted(history, key=lambda a: a.id):
        if ann.undone:
            continue
        per_image = out.setdefault(ann.image_id, {})
        first = per_image.get(ann.annotator, (ann.id, ann.label))[0]
        per_image[ann.annotator] = (first, ann.label)
    return out


def compute_agreement(history: Sequence[Annotation], min_shared: int = MIN_SHARED) -> Agreement:
    """Every annotator's speed and agreement, each pair's agreement and the overall figure.

    Args:
        history: the annotation history (`ProjectStore.history()`), undone annotations included (they are left out).
        min_shared: fewest shared images a kappa is reported on.
    """
    labels = standing_labels(history)
    shared_images = {i: by for i, by in labels.items() if len(by) > 1}
    names = sorted({ann.annotator for ann in history if not ann.undone})
    pairs = tuple(_pair(a, b, shared_images, min_shared) for a, b in itertools.combinations(names, 2))
    annotators = tuple(_annotator(name, history, labels, shared_images, min_shared) for name in names)
    overall: Pairs = ([], [])
    for by in shared_images.values():
        ordered = sorted(by.values())  # by each annotator's first label of the image
        for (_, earlier), (_, later) in itertools.combinations(ordered, 2):
            overall[0].append(earlier)
            overall[1].append(later)
    return Agreement(
        annotators=annotators,
        pairs=tuple(p for p in pairs if p.shared > 0),
        kappa=kappa(*overall, min_shared=min_shared),
        shared=len(shared_images),
    )


def _pair(a: str, b: str, shared: dict[int, dict[str, tuple[int, str]]], min_shared: int) -> PairAgreement:
    both = [(by[a][1], by[b][1]) for by in shared.values() if a in by and b in by]
    first, second = [x for x, _ in both], [y for _, y in both]
    agreed = sum(x == y for x, y in both)
    return PairAgreement(a, b, kappa(first, second, min_shared), len(both), agreed)


def _annotator(
    name: str,
    history: Sequence[Annotation],
    labels: dict[int, dict[str, tuple[int, str]]],
    shared: dict[int, dict[str, tuple[int, str]]],
    min_shared: int,
) -> AnnotatorStats:
    own = [ann for ann in history if ann.annotator == name and not ann.undone]
    seconds = [float(ann.seconds) for ann in own if ann.seconds is not None and math.isfinite(ann.seconds)]
    total = sum(seconds)
    mine: Pairs = ([], [])
    images = 0
    for by in shared.values():
        if name not in by:
            continue
        images += 1
        for other, (_, label) in by.items():
            if other != name:
                mine[0].append(by[name][1])
                mine[1].append(label)
    return AnnotatorStats(
        annotator=name,
        labels=len(own),
        images=sum(1 for by in labels.values() if name in by),
        median_seconds=float(np.median(seconds)) if seconds else None,
        labels_per_hour=3600.0 * len(seconds) / total if total > 0 else None,
        kappa=kappa(*mine, min_shared=min_shared),
        shared=images,
    )
