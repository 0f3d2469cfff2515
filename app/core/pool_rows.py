"""Reading a big embedding matrix block by block: float16 rows (often a memory map of the embedding cache) widened
to float32 one block at a time, and the mapped pages of a block given back once it is read.

A project's embeddings stay float16 on disk and memory-mapped (`app.engine.embedding_cache`); a pass over a million
rows reads them once in blocks rather than copying the pool to float32 (2.6 GB float16, 5.1 GB float32 at 1M x
1280). Pages of a memory map that a block touched count in the process's resident memory until they are unmapped,
so `release` drops them after each block (they stay in the kernel's page cache, shared and reclaimable).

`Dense` lets a caller that may use torch pass faster float16 -> float32 conversion and matrix products (torch's
threads wait passively, where numpy's BLAS threads spin and crawl on a busy 2-core machine); the default is numpy.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["BLOCK_ROWS", "NUMPY", "Dense", "Widen", "blocks", "numpy_widen", "project", "release", "run_of"]

BLOCK_ROWS = 8192
PAGE = mmap.PAGESIZE
Widen = Callable[[np.ndarray], np.ndarray]
"""float16 (or float32) rows -> the same rows as a float32 array (a new array or a reused buffer)."""


def numpy_widen(block: np.ndarray) -> np.ndarray:
    """The rows as float32 (no copy when they already are)."""
    return np.asarray(block, dtype=np.float32)


@dataclass(frozen=True)
class Dense:
    """The dense operations of a pass over a big pool.

    Attributes:
        widen: float16 (or float32) rows -> float32 rows (may return a reused buffer).
        matmul: the product of two float32 matrices, as a new float32 array.
        project: ``project(x, rows, m)`` = ``x[rows] @ m`` (rows None: every row) as a new float32 array, read block
            by block like `blocks` (a memory map's pages given back); None = `blocks` with `widen` and `matmul`.
    """

    widen: Widen = numpy_widen
    matmul: Callable[[np.ndarray, np.ndarray], np.ndarray] = np.matmul
    project: Callable[[np.ndarray, np.ndarray | None, np.ndarray], np.ndarray] | None = None


NUMPY = Dense()


def release(x: np.ndarray, lo: int, hi: int) -> None:
    """Give back the mapped pages holding rows `lo` to `hi` of `x` when `x` is a memory map (else nothing).

    Only the process's mapping is dropped (``MADV_DONTNEED`` on a shared file mapping); the data stay in the
    page cache and a later read maps them again. Pages shared with neighbouring rows are dropped too, which costs at
    most a re-read.
    """
    mm, mode, owner = None, None, x
    while mm is None and isinstance(owner, np.ndarray):  # a plain view of a memory map (np.asarray) has none itself
        mm, mode, owner = getattr(owner, "_mmap", None), getattr(owner, "mode", None), owner.base
    if mode not in ("r", "r+"):  # a copy-on-write map ("c") would lose its changes: leave it alone
        return
    if mm is None or hi <= lo or not hasattr(mm, "madvise") or x.ndim != 2 or not x.flags.c_contiguous:
        return
    base = np.frombuffer(mm, dtype=np.uint8, count=1).ctypes.data  # the mapping's first byte (export freed at once)
    first = x.ctypes.data + lo * x.strides[0] - base
    last = x.ctypes.data + min(hi, x.shape[0]) * x.strides[0] - base
    start = max(0, first // PAGE * PAGE)
    stop = min(len(mm), -(-last // PAGE) * PAGE)
    if stop > start:
        mm.madvise(mmap.MADV_DONTNEED, start, stop - start)


def blocks(
    x: np.ndarray,
    rows: np.ndarray | None = None,
    *,
    block: int = BLOCK_ROWS,
    widen: Widen | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(position of the block's first row, float32 block) for the rows of `x` (or its `rows`, in that order).

    The mapped pages a block read are released before the next one (see `release`), so a pass over a memory map
    keeps one block resident, not the file. A block yielded may be a reused buffer: use it before the next.
    """
    widen = numpy_widen if widen is None else widen
    n = x.shape[0] if rows is None else len(rows)
    for s in range(0, n, block):
        e = min(n, s + block)
        if rows is None:
            yield s, widen(x[s:e])
            release(x, s, e)
        else:
            part = rows[s:e]
            lo, hi, run = run_of(part)
            yield s, widen(x[lo:hi])[part - lo] if run else widen(x[part])
            release(x, lo, hi)


def run_of(part: np.ndarray) -> tuple[int, int, bool]:
    """(lowest row, highest row + 1, whether to read that run as one slice: rows close together, as a pool's
    rows are) of a block of rows."""
    lo, hi = (int(part.min()), int(part.max()) + 1) if len(part) else (0, 0)
    return lo, hi, 0 < hi - lo <= 2 * len(part)


def project(x: np.ndarray, rows: np.ndarray | None, m: np.ndarray, dense: Dense) -> np.ndarray:
    """``x[rows] @ m`` (rows None: every row of `x`) as float32, read block by block (see `Dense.project`)."""
    if dense.project is not None:
        return dense.project(x, rows, m)
    out = np.empty((x.shape[0] if rows is None else len(rows), m.shape[1]), dtype=np.float32)
    for s, block in blocks(x, rows, widen=dense.widen):
        out[s : s + len(block)] = dense.matmul(block, m)
    return out
