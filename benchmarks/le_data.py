"""The label-efficiency benchmark's data sets, as embeddings: (pool x, pool y, test x, test y, class names).

- ``digits``: scikit-learn's 1,797 digits as 64-px PNGs (the demo's images);
- ``patches``: 10 scikit-image sample photos x 200 patches of 48 px (`benchmarks.patches`), class = which photo;
- ``patches_skewed``: the same test set, but the pool holds 10x as many patches of one photo (astronaut).

The test set is a stratified 30 % (`app.core.splits.stratified_holdout`, seed 12345, as `python -m app simulate`)
of the balanced images; the skewed pool's extra patches are never in it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.core.splits import stratified_holdout
from benchmarks.features import class_files, embed_folder

DATASETS = ("digits", "patches", "patches_skewed")
Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]


def folder_of(name: str, work: Path) -> Path:
    """The class folders of a data set, written into `work` on first use."""
    if name == "digits":
        folder = work / "digits"
        if not folder.is_dir():
            from app.engine.demo import write_digits

            write_digits(folder, size=64, class_folders=True)
        return folder
    from benchmarks.patches import write_patches

    return write_patches(work / "patches")


def load(name: str, work: Path, *, arch: str = "tf_efficientnet_lite0", flip: bool = False, log=print) -> Data:
    """Embeddings and classes of a data set's pool and test set (see the module docstring)."""
    if name not in DATASETS:
        raise ValueError(f"Unknown data set '{name}'; choose from {', '.join(DATASETS)}.")
    folder = folder_of(name, work)
    files, names = class_files(folder)
    if name == "digits":
        extra = np.zeros(len(files), dtype=bool)
    else:
        from benchmarks.patches import is_extra

        extra = np.array([is_extra(f) for f in files])
    whole = work / f"{folder.name}-{arch}{'-flip' if flip else ''}.npz"
    if name == "patches" and not whole.exists():  # the balanced set alone: the extra patches are not embedded
        kept = [f for f, e in zip(files, extra, strict=True) if not e]
        part, _ = embed_folder(folder, arch, work, flip=flip, files=kept, tag="balanced", log=log)
        x = np.zeros((len(files), part.shape[1]), dtype=np.float32)
        x[~extra] = part
    else:
        x, _ = embed_folder(folder, arch, work, flip=flip, log=log)
    classes = sorted(set(names.tolist()))
    y_all = np.array([classes.index(n) for n in names], dtype=np.int64)
    base = np.flatnonzero(~extra)
    held = stratified_holdout(y_all[base].tolist(), 0.3, seed=12345)
    test, pool = base[held], base[~held]
    if name == "patches_skewed":
        pool = np.sort(np.concatenate([pool, np.flatnonzero(extra)]))
    return x[pool], y_all[pool], x[test], y_all[test], classes
