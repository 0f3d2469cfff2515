"""A photo-like benchmark set: square patches cut from scikit-image's sample photos; class = which photo.

ImageNet features suit these (textures, colours and objects of real photographs), unlike 8x8 digits blown up to
224 px, so the two sets bracket what a user's folder looks like. Every patch is a seeded random crop, written once
as a PNG in class folders (the layout `python -m app simulate` reads).

    write_patches(Path("/tmp/patches"))   # 10 photos x 200 patches of 48 px, plus the skewed set's extra patches
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS: tuple[str, ...] = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "camera", "coins",
    "moon", "gravel",
)  # fmt: skip
"""`skimage.data` images that ship with scikit-image (no download): six colour photos, four grey ones."""
PER_CLASS = 200
PATCH = 48
SKEW_CLASS = PHOTOS[0]
SKEW_EXTRA = 1260  # the skewed pool: 140 pool patches per class (200 less the 30 % test split) + these = 10x


def photo(name: str) -> np.ndarray:
    """One sample photo as an (H, W, 3) uint8 array (grey ones repeated over three channels)."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3].astype(np.uint8))


def crops(img: np.ndarray, n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`n` random `size` x `size` crops of `img` (top-left corners uniform over the image)."""
    h, w = img.shape[:2]
    ys = rng.integers(0, h - size + 1, size=n)
    xs = rng.integers(0, w - size + 1, size=n)
    return [img[y : y + size, x : x + size] for y, x in zip(ys, xs, strict=True)]


def write_patches(
    folder: Path, *, per_class: int = PER_CLASS, extra: int = SKEW_EXTRA, size: int = PATCH, seed: int = 0
) -> Path:
    """Write the patches once as `folder/<photo>/<photo>_<i>.png`; returns `folder`.

    The first `per_class` patches of each photo form the balanced set; `extra` more of `SKEW_CLASS` (numbered
    after them) are added to the pool of the skewed case only (`is_extra`). Rewritten only when missing.
    """
    done = folder / ".complete"
    if done.exists():
        return folder
    rng = np.random.default_rng(seed)
    for name in PHOTOS:
        count = per_class + (extra if name == SKEW_CLASS else 0)
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        for i, patch in enumerate(crops(photo(name), count, size, rng)):
            Image.fromarray(patch).save(target / f"{name}_{i:04d}.png")
    done.write_text(f"{per_class} {extra} {size} {seed}\n", encoding="utf-8")
    return folder


def is_extra(path: Path, per_class: int = PER_CLASS) -> bool:
    """Whether a patch file is one of the skewed set's extra patches (beyond the first `per_class` of its photo)."""
    return int(path.stem.rsplit("_", 1)[1]) >= per_class
