"""Embeddings on disk, one pair of numpy files per backbone key, keyed by image id."""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.lib.format as npformat

from app.core.atomic import atomic_path

_GET_BLOCK = 16384  # rows widened to float32 at a time by `get`


class EmbeddingCache:
    """Float16 vectors for image ids, appended incrementally and read memory-mapped.

    Files: `<dir>/ids.npy` (int64) and `<dir>/vectors.npy` (float16, one row per id, same order). Both are plain
    `.npy` files. Appending writes only the new rows at the end of `vectors.npy` and updates its header in place
    (numpy reserves room in the header for the row count to grow), then replaces `ids.npy` atomically: the ids
    file is the commit point, so a crash mid-append leaves extra rows that are ignored and overwritten next time.
    Adding 100k vectors in chunks therefore costs the chunks' bytes, not a rewrite of the whole file per chunk.
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
            vectors = np.load(self._vectors_file, mmap_mode="r")
            if vectors.ndim != 2 or len(vectors) < len(self._ids):  # a torn write: start over rather than misalign
                self._ids, self._vectors = None, None
            else:  # rows past the ids are an append that never committed
                self._vectors = vectors[: len(self._ids)]

    def ids(self) -> np.ndarray:
        """The cached image ids, in row order."""
        with self._lock:
            self._load()
            return np.empty(0, dtype=np.int64) if self._ids is None else self._ids

    def missing(self, image_ids: Sequence[int]) -> list[int]:
        """The ids among `image_ids` that have no vector yet, in their order (vectorised: 1M ids take milliseconds)."""
        have = self.ids()
        wanted = np.asarray(image_ids, dtype=np.int64).reshape(-1)
        if len(have) == len(wanted) and np.array_equal(have, wanted):
            return []
        return wanted[~np.isin(wanted, have)].tolist()

    def _rows(self, image_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row of each id (call with the lock held and the cache loaded). KeyError for an id not cached."""
        assert self._ids is not None
        wanted = np.asarray(image_ids, dtype=np.int64).reshape(-1)
        if len(wanted) == len(self._ids) and np.array_equal(wanted, self._ids):
            return np.arange(len(wanted), dtype=np.int64)  # the usual case: every image, in the cache's order
        if len(self._ids) == 0 and len(wanted):
            raise KeyError(f"No embeddings cached for image {int(wanted[0])}.")
        order = np.argsort(self._ids, kind="stable")
        pos = np.clip(np.searchsorted(self._ids, wanted, sorter=order), 0, len(order) - 1)
        rows = order[pos]
        bad = self._ids[rows] != wanted
        if bad.any():
            raise KeyError(f"No embeddings cached for image {int(wanted[bad][0])}.")
        return rows

    def matrix(self, image_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Vectors for `image_ids` as float16 (N, D), in the given order, without widening them.

        When the ids are a run of the cache's rows in order (a project's images in id order, the usual case), this
        is the read-only memory map itself: nothing is read until used, and `app.core.pool_rows` reads it block by
        block. Otherwise the rows are gathered into a float16 array (half a float32 copy). KeyError for an id not
        cached.
        """
        with self._lock:
            self._load()
            if self._ids is None or self._vectors is None:
                if len(image_ids) == 0:
                    return np.zeros((0, 0), dtype=np.float16)
                raise KeyError(f"No embeddings cached for image {image_ids[0]}.")
            rows = self._rows(image_ids)
            if len(rows) == 0:
                return np.zeros((0, self._vectors.shape[1]), dtype=np.float16)
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            if hi - lo == len(rows) and bool(np.all(np.diff(rows) == 1)):
                return self._vectors[lo:hi]
            return np.asarray(self._vectors[rows])

    def get(self, image_ids: Sequence[int]) -> np.ndarray:
        """Vectors for `image_ids` as a float32 copy (N, D), in the given order. KeyError for an id not cached.

        For a few images; a pass over the pool reads `matrix` instead (float16, memory-mapped, no copy).
        """
        with self._lock:
            self._load()
            if self._ids is None or self._vectors is None:
                if len(image_ids) == 0:
                    return np.zeros((0, 0), dtype=np.float32)
                raise KeyError(f"No embeddings cached for image {image_ids[0]}.")
            rows = self._rows(image_ids)
            out = np.empty((len(rows), self._vectors.shape[1]), dtype=np.float32)
            for s in range(0, len(rows), _GET_BLOCK):  # widen block by block: no full-size float16 copy
                block = rows[s : s + _GET_BLOCK]
                lo, hi = int(block[0]), int(block[-1]) + 1
                contiguous = hi - lo == len(block) and bool(np.all(np.diff(block) == 1))
                _widen(self._vectors[lo:hi] if contiguous else self._vectors[block], out[s : s + len(block)])
            return out

    def add(self, image_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Append vectors for new ids (ids already present, or repeated in the call, are ignored).

        Raises:
            ValueError: not one vector per id, or a width different from the cached vectors'.
        """
        if len(image_ids) != len(vectors):
            raise ValueError("One vector per image id is needed.")
        with self._lock:
            self._load()
            new_ids = np.asarray(image_ids, dtype=np.int64).reshape(-1)
            new_vecs = np.asarray(vectors, dtype=np.float16)
            if new_vecs.ndim != 2:
                new_vecs = new_vecs.reshape(len(new_ids), -1)
            _, first = np.unique(new_ids, return_index=True)
            keep = np.zeros(len(new_ids), dtype=bool)
            keep[first] = True
            if self._ids is not None:
                keep &= ~np.isin(new_ids, self._ids)
            new_ids, new_vecs = new_ids[keep], np.ascontiguousarray(new_vecs[keep])
            if self._ids is None or self._vectors is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._ids_file.unlink(missing_ok=True)  # a stale list must never name rows of the new vectors
                _atomic_save(self._vectors_file, new_vecs)
                _atomic_save(self._ids_file, new_ids)
                self._ids = new_ids
            elif len(new_ids):
                if new_vecs.shape[1] != self._vectors.shape[1]:
                    raise ValueError(
                        f"These vectors have {new_vecs.shape[1]} values but the cached ones have "
                        f"{self._vectors.shape[1]}; use one cache directory per backbone."
                    )
                all_ids = np.concatenate([self._ids, new_ids])
                if not _append_rows(self._vectors_file, len(self._ids), new_vecs):
                    old = np.asarray(self._vectors)  # an old file without header room: rewrite it once
                    _atomic_save(self._vectors_file, np.concatenate([old, new_vecs]))
                _atomic_save(self._ids_file, all_ids)  # the commit point
                self._ids = all_ids
            else:
                return
            self._vectors = np.load(self._vectors_file, mmap_mode="r")[: len(self._ids)]

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
    """Replace a `.npy` file whole (flushed to disk, then renamed into place; see `app.core.atomic`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def _append_rows(path: Path, committed: int, rows: np.ndarray) -> bool:
    """Write `rows` after the first `committed` rows of a 2-D `.npy` file and update its header in place.

    Returns False (and changes nothing) when the new header would not fit in the old one's space.
    """
    with open(path, "r+b") as fh:
        version = npformat.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            return False
        read = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        offset = fh.tell()
        if fortran or dtype != rows.dtype or len(shape) != 2 or shape[1] != rows.shape[1]:
            return False
        if shape[0] < committed:
            return False
        header = io.BytesIO()
        meta = {"descr": npformat.dtype_to_descr(dtype), "fortran_order": False}
        meta["shape"] = (committed + len(rows), shape[1])
        write = npformat.write_array_header_1_0 if version == (1, 0) else npformat.write_array_header_2_0
        write(header, meta)
        if header.tell() != offset:
            return False
        end = offset + committed * rows.shape[1] * rows.dtype.itemsize
        fh.truncate(end)  # drop rows of an append that never committed
        fh.seek(end)
        fh.write(rows.tobytes())
        fh.seek(0)
        fh.write(header.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    return True


def _widen(src: np.ndarray, dst: np.ndarray) -> None:
    """Copy float16 rows into a float32 array; torch's vectorised half conversion is ~7x faster than numpy's."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of the app
        dst[...] = src
        return
    with warnings.catch_warnings():  # a read-only memory map: torch warns about writing, which it never does here
        warnings.simplefilter("ignore", UserWarning)
        torch.from_numpy(dst).copy_(torch.from_numpy(np.ascontiguousarray(src)))
