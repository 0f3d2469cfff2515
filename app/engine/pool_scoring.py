"""Scoring a whole pool with a head: matrix products on float16 rows read straight from the memory map.

The embeddings a round reads are the cache's float16 memory map (`EmbeddingCache.matrix`), never a float32 copy of
the pool. The pool is cut into blocks of `SCORE_BLOCK` rows, shared out between worker threads (one per torch
thread, each running single-threaded ops: no barrier per operation, which on a busy 2-core machine cost more than
the work). A worker widens its block `PIECE` rows at a time into a float32 buffer that stays in the core's cache
(torch's half conversion), multiplies it by the head's weights (a linear head: one ``addmm`` with the outputs padded
to a multiple of 16, a width MKL's kernels run much faster; a head with a hidden layer: its forward), writes the
softmax straight into the result and gives the block's mapped pages back (`app.core.pool_rows.release`), so
scoring 1M x 1280 embeddings keeps a few blocks resident, not 2.6 GB. The probabilities equal
`lit_models.train.predict_proba`'s within float rounding.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import nn

from app.core.pool_rows import Dense, release, run_of

__all__ = ["PIECE", "SCORE_BLOCK", "TorchWiden", "pool_probs", "torch_dense", "torch_matmul", "torch_project"]

SCORE_BLOCK = 4096  # rows per task read from the memory map (its pages given back after)
PIECE = 256  # rows widened and multiplied at once: 1.3 MB of float32 at 1280-d stays in L2
PAD = 16  # head outputs padded to a multiple of this (1280 x 20 -> 32: ~10 % less CPU per row on this CPU)

_pool: ThreadPoolExecutor | None = None
_pool_size = (0, 0)  # (threads, process id)
_pool_lock = threading.Lock()
_local = threading.local()


class TorchWiden:
    """float16 rows -> float32 rows in one reused buffer (torch's half conversion: several times numpy's speed).

    Pass an instance as `widen` to `app.core.strategies.select_batch`; each call overwrites the previous result.
    """

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def tensor(self, block: np.ndarray) -> torch.Tensor:
        """The rows as a float32 tensor (a view of the buffer)."""
        rows, width = block.shape
        buf = self._buffer
        if buf is None or buf.shape[0] < rows or buf.shape[1] != width:
            buf = self._buffer = torch.empty((max(rows, 1), width), dtype=torch.float32)
        out = buf[:rows]
        with warnings.catch_warnings():  # a read-only memory map: torch warns about writing, which it never does here
            warnings.simplefilter("ignore", UserWarning)
            out.copy_(torch.from_numpy(np.ascontiguousarray(block)))
        return out

    def __call__(self, block: np.ndarray) -> np.ndarray:
        return self.tensor(block).numpy()


def torch_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of float32 matrices with torch (MKL; its threads wait passively instead of spinning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.mm(torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))).numpy()


def torch_dense() -> Dense:
    """torch's half conversion, matrix product and pool projection (`torch_project`), for `app.core.strategies`."""
    return Dense(widen=TorchWiden(), matmul=torch_matmul, project=torch_project)


def _quiet() -> None:
    """Have torch give its one warning about a read-only array (a memory map it never writes to) here, silenced,
    rather than from a worker thread (`warnings.catch_warnings` is not thread-safe)."""
    read_only = np.zeros(1, dtype=np.float32)
    read_only.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.from_numpy(read_only)


def _parallel(fn: Callable[..., None], tasks: list[tuple]) -> None:
    """``fn(*task)`` for every task, shared out between one worker per torch thread (single-threaded ops each)."""
    threads = min(torch.get_num_threads(), len(tasks))
    if threads <= 1:
        for task in tasks:
            fn(*task)
    else:
        list(_workers(threads).map(lambda task: fn(*task), tasks))


@torch.no_grad()
def _project_block(x: np.ndarray, rows: np.ndarray | None, s: int, e: int, m: torch.Tensor, out: torch.Tensor) -> None:
    """Rows `s` to `e` of ``x[rows] @ m`` into `out[s:e]`, `PIECE` rows widened at a time (a piece of consecutive
    rows straight from `x`, any other piece gathered first: a pool is most of the rows, so few are)."""
    lo, hi = (s, e) if rows is None else run_of(rows[s:e])[:2]
    wide = x.dtype in (np.float16, np.float32) and x.flags.c_contiguous
    piece = _buffer("piece", min(PIECE, e - s), x.shape[1])
    for p in range(s, e, PIECE):
        q = min(e, p + PIECE)
        part = None if rows is None else rows[p:q]
        if part is None or int(part[-1]) - int(part[0]) == q - p - 1 and bool(np.all(np.diff(part) == 1)):
            first = p if part is None else int(part[0])
            src = x[first : first + q - p] if wide else np.asarray(x[first : first + q - p], dtype=np.float32)
        else:
            src = np.asarray(x[part], dtype=np.float32 if not wide else None)
        block = torch.from_numpy(src)  # a read-only map: torch warns once per process, which `_quiet` did already
        if block.dtype == torch.float32 and block.is_contiguous():
            chunk = block
        else:
            chunk = piece[: q - p]
            chunk.copy_(block)
        torch.mm(chunk, m, out=out[p:q])
    release(x, lo, hi)


def torch_project(x: np.ndarray, rows: np.ndarray | None, m: np.ndarray) -> np.ndarray:
    """``x[rows] @ m`` (rows None: every row) as float32: `x` (float16, a memory map or an array) read in blocks
    of `SCORE_BLOCK` rows shared out between the workers, each block's mapped pages given back after it."""
    n = x.shape[0] if rows is None else len(rows)
    out = np.empty((n, m.shape[1]), dtype=np.float32)
    mt, result = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)), torch.from_numpy(out)
    rows = None if rows is None else np.asarray(rows, dtype=np.int64)
    _quiet()
    _parallel(_project_block, [(x, rows, s, min(n, s + SCORE_BLOCK), mt, result) for s in range(0, n, SCORE_BLOCK)])
    return out


def _single_threaded() -> None:
    torch.get_num_threads()  # torch sets a thread's thread count on first use: let it happen now, not after ours
    torch.set_num_threads(1)  # this worker's own OpenMP and MKL threads (the global setting is restored after)


def _workers(n: int) -> ThreadPoolExecutor:
    """A pool of `n` threads whose torch ops run single-threaded (made once, kept for later rounds)."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != (n, os.getpid()):  # a forked child has none of its parent's threads
            if _pool is not None and _pool_size[1] == os.getpid():
                _pool.shutdown(wait=False)
            before = torch.get_num_threads()
            pool = ThreadPoolExecutor(n, thread_name_prefix="pool-scoring", initializer=_single_threaded)
            started = threading.Barrier(n)
            with contextlib.suppress(threading.BrokenBarrierError):  # start every thread now, so that the global
                list(pool.map(lambda _: started.wait(timeout=10), range(n)))  # thread count changes only meanwhile
            torch.set_num_threads(before)
            _pool, _pool_size = pool, (n, os.getpid())
        return _pool


def _buffer(name: str, rows: int, width: int) -> torch.Tensor:
    """A float32 (rows, width) work buffer of this thread, reused from block to block (no fresh pages each time)."""
    buf = getattr(_local, name, None)
    if buf is None or buf.shape[0] < rows or buf.shape[1] != width:
        buf = torch.empty((rows, width), dtype=torch.float32)
        setattr(_local, name, buf)
    return buf[:rows]


@torch.no_grad()
def _score_block(
    x: np.ndarray, rows: np.ndarray | None, s: int, e: int, out: torch.Tensor, head: Any, linear: Any
) -> None:
    """Softmax of the head's logits for rows `s` to `e` of `x` (of `x[rows]`: those rows gathered first) into
    `out[s:e]` (no_grad: grad mode is per thread)."""
    lo, hi = (s, e) if rows is None else run_of(rows[s:e])[:2]
    part = x[s:e] if rows is None else x[rows[s:e]]
    src = torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32 if x.dtype != np.float16 else None))
    classes = out.shape[1]
    width = classes if linear is None else linear[0].shape[1]
    logits = _buffer("logits", e - s, width)
    piece = _buffer("piece", min(PIECE, e - s), src.shape[1])
    for p in range(0, e - s, PIECE):
        q = min(e - s, p + PIECE)
        if src.dtype == torch.float32:
            chunk = src[p:q]
        else:
            chunk = piece[: q - p]
            chunk.copy_(src[p:q])
        if linear is None:
            logits[p:q] = head(chunk)
        else:
            torch.addmm(linear[1], chunk, linear[0], out=logits[p:q])
    torch.softmax(logits[:, :classes], dim=1, out=out[s:e])
    release(x, lo, hi)


@torch.no_grad()
def pool_probs(head: Any, x: np.ndarray, block: int = SCORE_BLOCK, *, rows: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities (N, C) float32 of every row of `x` (float16 or float32, a memory map or an array), or of
    its `rows` only.

    Args:
        head: a ``lit_models.modules.HeadClassifier`` (its calibration temperature is in its weights).
        x: embeddings (N, D); read block by block, a memory map's pages released after each block.
        block: rows per task (see the module docstring).
        rows: the rows of `x` to score (a round's candidates, `app.core.candidates`; ascending reads best), in the
            order of the result; each block of them is gathered (float16) and scored. None = every row.
    """
    head = head.cpu().eval()
    x = np.asarray(x) if not isinstance(x, np.ndarray) else x
    rows = None if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
    n, classes = len(x) if rows is None else len(rows), int(head.hparams.num_classes)
    out = np.empty((n, classes), dtype=np.float32)
    linear = None
    if isinstance(head.net, nn.Linear):
        weight, bias = head.linear_weights()
        width = -(-classes // PAD) * PAD
        linear = (torch.zeros((weight.shape[1], width)), torch.zeros(width))
        linear[0][:, :classes] = weight.T
        linear[1][:classes] = bias
    starts = list(range(0, n, block))
    _quiet()
    result = torch.from_numpy(out)
    _parallel(_score_block, [(x, rows, s, min(n, s + block), result, head, linear) for s in starts])
    return out
