"""Stable, stratified validation splits of the labeled images."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def _rank_key(image_id: int, seed: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def validation_mask(image_ids: Sequence[int], y: Sequence[int], fraction: float, seed: int = 0) -> np.ndarray:
    """Which labeled images are held out for validation.

    Per class, images are ordered by a hash of (seed, image id) and the first `round(fraction * n)` are held
    out, with at least one image left for training. The order does not depend on when an image was labeled, so
    the held-out set stays nearly the same as labels accumulate and accuracy across rounds is comparable.

    Returns:
        Boolean array, True for held-out images, aligned with `image_ids`.
    """
    ids = np.asarray(image_ids, dtype=np.int64)
    labels = np.asarray(y)
    mask = np.zeros(len(ids), dtype=bool)
    if fraction <= 0 or len(ids) == 0:
        return mask
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        n_val = min(int(round(fraction * len(members))), len(members) - 1)
        if n_val <= 0:
            continue
        order = sorted(members, key=lambda i: _rank_key(int(ids[i]), seed))
        mask[order[:n_val]] = True
    return mask


def stratified_holdout(y: Sequence[int], fraction: float, seed: int = 0) -> np.ndarray:
    """A random stratified held-out split for simulations (True = held out); each class keeps one for training."""
    labels = np.asarray(y)
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        n_out = min(int(round(fraction * len(members))), len(members) - 1)
        if n_out > 0:
            mask[rng.choice(members, size=n_out, replace=False)] = True
    return mask
