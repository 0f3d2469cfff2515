"""Embeddings of a class-folder benchmark set, once per backbone (and per flip), cached as .npz in a work dir.

Uses the app's embedder (`lit_models.embed.embed_paths`, batched, the backbone's own eval transform) on the bundled
weights, so the features are the ones a project with that backbone caches. `flip=True` also embeds every image
mirrored left to right and returns the mean of the two embeddings (flip-averaged features).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def class_files(folder: Path) -> tuple[list[Path], np.ndarray]:
    """Image files of a class-folder layout in a stable order, and the class name of each."""
    files = sorted(p for p in folder.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return files, np.array([p.parent.name for p in files], dtype=object)


def _flipped(files: list[Path], folder: Path, out: Path) -> list[Path]:
    """Mirrored copies of `files` under `out` (same relative paths), written once."""
    paths = []
    for f in files:
        target = out / f.relative_to(folder)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(f) as img:
                img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(target)
        paths.append(target)
    return paths


def embed_folder(
    folder: Path, arch: str, work: Path, *, flip: bool = False, files: list[Path] | None = None, tag: str = "",
    log: Callable[[str], None] = print,
) -> tuple[np.ndarray, float]:  # fmt: skip
    """Embeddings (N, D) float32 of `files` (default: `class_files(folder)`) with bundled `arch`, and the
    images/s of embedding.

    Cached as `work/<folder name>[-tag]-<arch>[-flip].npz` (`tag` names a subset of the files); images/s is the one
    measured when the cache was made.
    """
    cache = work / f"{folder.name}{'-' + tag if tag else ''}-{arch}{'-flip' if flip else ''}.npz"
    files = class_files(folder)[0] if files is None else files
    if cache.exists():
        saved = np.load(cache)
        if len(saved["x"]) == len(files):
            return saved["x"], float(saved["images_per_s"])
    from lit_models.backbones import BackboneSpec, load_backbone
    from lit_models.embed import embed_paths

    if flip:  # the plain embeddings are cached (or made) first, then only the mirrored images are embedded
        x, speed = embed_folder(folder, arch, work, files=files, tag=tag, log=log)
    backbone = load_backbone(BackboneSpec(arch=arch, source="bundled"))
    if not flip:
        start = time.perf_counter()
        x = embed_paths(backbone, files, batch_size=64)
        speed = len(files) / (time.perf_counter() - start)
    else:
        mirrored = _flipped(files, folder, work / f"{folder.name}-flipped")
        x = (x + embed_paths(backbone, mirrored, batch_size=64)) / 2.0
    log(f"  embedded {len(files)} images of {folder.name} with {arch}{' (+flip)' if flip else ''}: {speed:.1f} img/s")
    work.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=x.astype(np.float32), images_per_s=speed)
    return x.astype(np.float32), speed
