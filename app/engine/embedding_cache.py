"""Embeddings on disk, one pair of numpy files per backbone key, keyed by image id."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


class EmbeddingCache:
    """Float16 vectors for image ids, appended incrementally and read memory-mapped.

    Files: `<dir>/ids.npy` (int64) and `<dir>/vectors.npy` (float16, one row per id, same order).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._ids: np.ndarray | None = None
        self._vectors: np.ndarray | None = None

    @property
    def _ids_file(self) -> Path:
        return self.directory / "ids.npy"

    @property
    def _vectors_file(self) -> Path:
        return self.directory / "vectors.npy"

    def _load(self) -> None:
        if self._ids is None and self._ids_file.exists() and self._vectors_file.exists():
            self._ids = np.load(self._ids_file)
            self._vectors = np.load(self._vectors_file, mmap_mode="r")
            if len(self._ids) != len(self._vectors):  # a torn write: start over rather than misalign
                self._ids, self._vectors = None, None

    def ids(self) -> np.ndarray:
        """The cached image ids, in row order."""
        with self._lock:
            self._load()
            return np.empty(0, dtype=np.int64) if self._ids is None else self._ids

    def missing(self, image_ids: Sequence[int]) -> list[int]:
        """The ids among `image_ids` that have no vector yet."""
        have = set(self.ids().tolist())
        return [i for i in image_ids if i not in have]

    def get(self, image_ids: Sequence[int]) -> np.ndarray:
        """Vectors for `image_ids` as float32 (N, D), in the given order. KeyError for an id not cached."""
        with self._lock:
            self._load()
            if self._ids is None or self._vectors is None:
                if len(image_ids) == 0:
                    return np.zeros((0, 0), dtype=np.float32)
                raise KeyError(f"No embeddings cached for image {image_ids[0]}.")
            order = np.argsort(self._ids)
            pos = np.searchsorted(self._ids, image_ids, sorter=order)
            pos = np.clip(pos, 0, len(order) - 1)
            rows = order[pos]
            wanted = np.asarray(image_ids, dtype=np.int64)
            bad = self._ids[rows] != wanted
            if bad.any():
                raise KeyError(f"No embeddings cached for image {int(wanted[bad][0])}.")
            return np.asarray(self._vectors[rows], dtype=np.float32)

    def add(self, image_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Append vectors for new ids (ids already present are ignored) and rewrite the files atomically."""
        if len(image_ids) != len(vectors):
            raise ValueError("One vector per image id is needed.")
        with self._lock:
            self._load()
            new_ids = np.asarray(image_ids, dtype=np.int64)
            new_vecs = np.asarray(vectors, dtype=np.float16)
            if self._ids is not None and self._vectors is not None:
                keep = ~np.isin(new_ids, self._ids)
                new_ids = np.concatenate([self._ids, new_ids[keep]])
                new_vecs = np.concatenate([np.asarray(self._vectors), new_vecs[keep]])
            self.directory.mkdir(parents=True, exist_ok=True)
            _atomic_save(self._vectors_file, new_vecs)
            _atomic_save(self._ids_file, new_ids)
            self._ids = new_ids
            self._vectors = np.load(self._vectors_file, mmap_mode="r")

    def ensure(
        self,
        image_ids: Sequence[int],
        compute: Callable[[list[int]], np.ndarray],
        *,
        chunk: int = 2048,
    ) -> int:
        """Compute and store vectors for the ids that lack one, `chunk` images at a time. Returns how many."""
        todo = self.missing(image_ids)
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            self.add(part, compute(part))
        return len(todo)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)
