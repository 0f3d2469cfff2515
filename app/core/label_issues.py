"""Labels that are likely wrong, as pure functions of out-of-fold probabilities and embeddings.

Two witnesses judge each labeled image without having seen its label:

- the model: out-of-fold class probabilities (each image scored by a head trained without it), as confident
  learning reads them (Northcutt, Jiang & Chuang 2021, JAIR; the `cleanlab` package);
- its neighbours: the labels of its nearest labeled images in embedding space, weighted by cosine similarity
  (leave-one-out; as SimiFeat, Zhu et al. 2022, "Detecting corrupted labels without training a model").

Their probabilities are averaged (mostly the model's: on digits with Lite0 features the neighbours alone rank
far worse, docs/benchmarks.md). An image's score is how little the average believes its label (1 - p[label]).
How many are *suspected* is confident learning's estimate of the number of wrong labels (the off-diagonal of the
calibrated confident joint, as cleanlab counts them); the suspects are that many of the highest scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEIGHBOURS = 10  # labeled neighbours that vote on an image's label
MODEL_WEIGHT = 0.9  # share of the model's probabilities in the average (the rest: the neighbours' votes)
MIN_PER_LABEL = 3  # a label with fewer images is not judged: the out-of-fold models barely saw it
VOTE_PRIOR = 0.01  # added to each class's vote, so an image without similar neighbours votes near uniform
_CHUNK = 2048  # rows of the similarity matrix computed at a time


@dataclass(frozen=True)
class LabelIssues:
    """The verdict on every labeled image, by position in the arrays given.

    Attributes:
        order: every position, most suspicious first.
        score: per position, in [0, 1]: 1 - the combined probability of its label (higher = more likely wrong).
        suggested: per position, the most probable class other than its label.
        suspected: per position, whether the label is likely wrong: the first `estimated_wrong` of `order` among
            the images whose label has at least `MIN_PER_LABEL` images.
    """

    order: np.ndarray
    score: np.ndarray
    suggested: np.ndarray
    suspected: np.ndarray

    @property
    def ranked(self) -> np.ndarray:
        """The suspected positions, most suspicious first."""
        return self.order[self.suspected[self.order]]


def neighbour_votes(x: np.ndarray, y: np.ndarray, num_classes: int, k: int = NEIGHBOURS) -> np.ndarray:
    """Each image's class probabilities from the labels of its `k` most similar other images.

    Args:
        x: embeddings (N, D) of the labeled images.
        y: their class indices (N,).
        num_classes: C.
        k: neighbours per image (fewer when there are fewer other images).

    Returns:
        (N, C) float64 rows summing to 1: cosine-similarity-weighted votes (negative similarities count 0), plus
        `VOTE_PRIOR` per class. An image never votes for itself.
    """
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    votes = np.full((n, num_classes), VOTE_PRIOR, dtype=np.float64)
    k = min(k, n - 1)
    if k <= 0:
        return votes / votes.sum(axis=1, keepdims=True)
    xn = np.asarray(x, dtype=np.float32)
    xn = xn / np.maximum(np.linalg.norm(xn, axis=1, keepdims=True), 1e-12)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        sim = xn[start:stop] @ xn.T
        sim[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not itself
        nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        weight = np.maximum(np.take_along_axis(sim, nearest, axis=1), 0.0)
        rows = np.repeat(np.arange(start, stop), k)
        np.add.at(votes, (rows, y[nearest].reshape(-1)), weight.reshape(-1))
    return votes / votes.sum(axis=1, keepdims=True)


def confident_joint(y: np.ndarray, probs: np.ndarray, min_count: int = MIN_PER_LABEL) -> np.ndarray:
    """Confident learning's joint of given and true labels (Northcutt et al. 2021), calibrated.

    Each class j has a threshold t_j, the mean probability of j over the images labeled j. An image is counted under
    the most probable class among those whose probability reaches their threshold (not at all when none does); the
    counts per given label are then scaled to that label's number of images.

    Args:
        y: given class indices (N,).
        probs: out-of-fold probabilities (N, C).
        min_count: a class given to fewer images has no threshold (its mean would rest on too few), and its images
            are not counted (they are not judged).

    Returns:
        (C, C) float64: row = given label, column = the class the image confidently belongs to.
    """
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    num_classes = p.shape[1]
    counts = np.bincount(y, minlength=num_classes)
    thresholds = np.full(num_classes, np.inf)  # a class with too few images is never confidently counted
    for j in np.flatnonzero(counts >= min_count):
        thresholds[j] = p[y == j, j].mean()
    confident = np.where(p >= thresholds - 1e-9, p, -np.inf)
    counted = np.isfinite(confident.max(axis=1)) & (counts[y] >= min_count)
    joint = np.zeros((num_classes, num_classes))
    np.add.at(joint, (y[counted], confident[counted].argmax(axis=1)), 1.0)
    return joint / np.maximum(joint.sum(axis=1, keepdims=True), 1.0) * counts[:, None]


def estimated_wrong(y: np.ndarray, probs: np.ndarray) -> int:
    """How many of the labels are wrong, as confident learning estimates it: the off-diagonal of the calibrated
    `confident_joint`."""
    joint = confident_joint(y, probs)
    return int(round(float(joint.sum() - np.trace(joint))))


def label_issues(
    x: np.ndarray, y: np.ndarray, probs: np.ndarray, *, k: int = NEIGHBOURS, model_weight: float = MODEL_WEIGHT
) -> LabelIssues:
    """Rank labeled images by how likely their label is wrong (see the module docstring).

    Args:
        x: embeddings (N, D) of the labeled images.
        y: their given class indices (N,).
        probs: out-of-fold probabilities (N, C): each row from a model that did not train on that image.
        k: neighbours that vote.
        model_weight: share of `probs` in the average with the neighbours' votes (1 = confident learning alone).

    Returns:
        The ranking, scores, suggested classes and which images are suspected.
    """
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    n = len(y)
    if n == 0:
        empty = np.empty(0, dtype=np.int64)
        return LabelIssues(empty, np.empty(0), empty, np.empty(0, dtype=bool))
    combined = model_weight * p + (1.0 - model_weight) * neighbour_votes(x, y, p.shape[1], k)
    given = combined[np.arange(n), y]
    others = combined.copy()
    others[np.arange(n), y] = -np.inf
    suggested = others.argmax(axis=1)
    score = 1.0 - given
    margin = given - others.max(axis=1)  # below 0: another label is more probable than the given one
    order = np.lexsort((margin, -score)).astype(np.int64)  # most suspicious first; ties: the suggestion's lead
    judged = order[np.bincount(y, minlength=p.shape[1])[y[order]] >= MIN_PER_LABEL]
    suspected = np.zeros(n, dtype=bool)
    suspected[judged[: estimated_wrong(y, combined)]] = True
    return LabelIssues(order, score, suggested.astype(np.int64), suspected)
