"""Memory of a 100k (or 1M) image pool: float16 memory-mapped embedding cache, then labeling rounds on it.

Each phase runs in its own child process, so its peak resident memory (``ru_maxrss``) is its own:

- ``fill``: the embedding cache receives 100k synthetic 1280-d vectors in chunks of 2,048 (as
  `ActiveLearningSession.ensure_embeddings` stores them); reports the time per chunk and the file size.
- ``round``: the session's path of a labeling round: the cache's float16 memory map (`EmbeddingCache.matrix`, as
  `ActiveLearningSession.run_round` reads it; no float32 copy), then `rounds.run` (head learner, score, select)
  with each strategy (and the cold start), 300 labeled images.
- ``similar``: "More like this" (`app.engine.queues.similar`) for one image, 300 images labeled.
- ``suspects``: the likely-wrong-labels check of 300 labeled images (`app.engine.suspect_cache`'s computation).
- ``extension``: the batch's extension (`app.engine.extension.pick_extension`) over the unlabeled pool.

The last three call the engine's functions on a stand-in session (`StandInProject`: the store's and the model's reads
they make), so no 1M-image project database is needed.

Peak memory is reported above the process's resident memory right after importing numpy, torch and Lightning
(the "baseline": what any process of the app pays before it loads a backbone or touches embeddings).

    python -m benchmarks.memory                   # 100k pool
    python -m benchmarks.memory --pool 1000000 --dir /tmp/cache1m --keep   # 1M pool (2.6 GB of cache on disk)
    python -m benchmarks.memory --phase round --dir /tmp/cache1m           # rounds on a cache already written
    python -m benchmarks.memory --phase similar --dir /tmp/cache1m         # or suspects, extension
    /usr/bin/time -v python -m benchmarks.memory --phase round --dir DIR   # a phase alone, under time -v

Targets (docs/benchmarks.md): the engine's peak beyond the imports <= 1.5 GB at 100k images, <= 3 GB at 1M.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the app does (app/__main__.py)
import torch  # noqa: E402, F401  (part of the baseline)

import lit_models  # noqa: E402, F401
from app.core.strategies import COLD_START, DEFAULT_STRATEGY
from app.engine.embedding_cache import EmbeddingCache
from benchmarks.round_latency import synthetic_embeddings

CHUNK = 2048
FEATURES = ("similar", "suspects", "extension")
MB = 1024 * 1024


def rss_mb() -> float:
    """Current resident memory of this process in MiB (from /proc)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / MB


def peak_mb() -> float:
    """Peak resident memory of this process so far in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(directory: Path, pool: int, dim: int) -> dict:
    base = rss_mb()
    cache = EmbeddingCache(directory)
    times = []
    for start in range(0, pool, CHUNK):
        ids = list(range(start, min(pool, start + CHUNK)))
        x, _ = synthetic_embeddings(len(ids), dim=dim, seed=start)
        t = time.perf_counter()
        cache.add(ids, x)
        times.append(time.perf_counter() - t)
    size = sum(f.stat().st_size for f in Path(directory).rglob("*") if f.is_file())
    return {
        "phase": "fill",
        "baseline_mb": round(base, 1),
        "peak_mb": round(peak_mb(), 1),
        "peak_above_baseline_mb": round(peak_mb() - base, 1),
        "chunks": len(times),
        "seconds_total": round(sum(times), 2),
        "seconds_first_chunk": round(times[0], 3),
        "seconds_last_chunk": round(times[-1], 3),
        "files_mb": round(size / MB, 1),
    }


def round_phase(directory: Path, pool: int, labeled: int, strategies: list[str]) -> dict:
    from app.engine.learners import HeadLearner
    from app.engine.rounds import RoundData, run

    base = rss_mb()
    cache = EmbeddingCache(directory)
    ids = cache.ids()
    t = time.perf_counter()
    x = cache.matrix(ids)  # what the session's rounds get: the float16 memory map of every image
    get_seconds = time.perf_counter() - t
    _, y = synthetic_embeddings(0, dim=x.shape[1])  # classes only; labels below are synthetic
    rng = np.random.default_rng(0)
    y = rng.integers(0, 20, size=len(x))
    after_get = peak_mb() - base
    seconds: dict[str, float] = {}
    peaks: dict[str, float] = {}
    for strategy in strategies:
        n_lab = 0 if strategy == COLD_START else labeled
        lab = np.sort(rng.choice(len(x), size=n_lab, replace=False))
        is_lab = np.zeros(len(x), dtype=bool)
        is_lab[lab] = True
        pool_rows = np.flatnonzero(~is_lab)
        data = RoundData.from_arrays(x, lab, y[lab], num_classes=20, seed=0, pool_rows=pool_rows)
        t = time.perf_counter()
        run(
            data, HeadLearner() if n_lab else None, strategy=DEFAULT_STRATEGY if strategy == COLD_START else strategy,
            k=20,
        )  # fmt: skip
        seconds[strategy] = round(time.perf_counter() - t, 3)
        peaks[strategy] = round(peak_mb() - base, 1)  # the running peak: run one strategy per phase to split them
    return {
        "phase": "round",
        "pool": len(x),
        "baseline_mb": round(base, 1),
        "peak_mb": round(peak_mb(), 1),
        "peak_above_baseline_mb": round(peak_mb() - base, 1),
        "peak_above_baseline_after_get_mb": round(after_get, 1),
        "get_seconds": round(get_seconds, 3),
        "round_seconds": seconds,
        "peak_above_baseline_after_mb": peaks,
    }


class StandInProject:
    """The reads `queues.similar`, `suspect_cache` and `pick_extension` make of a session, its store and its model
    (names as `ActiveLearningSession`'s), over a cache of embeddings whose ids run on from the first one: `labels`
    by image id, a model's probabilities of every cached image in id order (None: no model yet)."""

    def __init__(
        self, cache: EmbeddingCache, labels: dict[int, str], probs: np.ndarray | None = None, *,
        settings: Any = None, classes: int = 20,
    ) -> None:  # fmt: skip
        from app.core.settings import ProjectSettings

        self.cache, self.labels_of, self.probs = cache, labels, probs
        self.settings = settings or ProjectSettings()
        self.label_names = [f"c{i}" for i in range(classes)]
        self.ids = [int(i) for i in cache.ids()]
        self.store = self.model = self

    def image_ids(self) -> list[int]:
        return list(self.ids)

    def labels(self) -> list[str]:
        return list(self.label_names)

    def current_labels(self) -> dict[int, str]:
        return dict(self.labels_of)

    def current_round(self) -> int:
        return 1

    def batch(self) -> list:
        return []

    def current_cache(self) -> EmbeddingCache:
        return self.cache

    def probs_for(self, ids: list[int]) -> np.ndarray | None:
        return None if self.probs is None else self.probs[np.asarray(ids, dtype=np.int64) - self.ids[0]]


def _random_project(cache: EmbeddingCache, labeled: int) -> StandInProject:
    """`labeled` images of the cache given one of 20 labels at random, and random probabilities for every image."""
    ids = cache.ids()
    rng = np.random.default_rng(0)
    lab = ids[np.sort(rng.choice(len(ids), size=labeled, replace=False))]
    labels = {int(i): f"c{int(rng.integers(0, 20))}" for i in lab}
    probs = rng.random((len(ids), 20), dtype=np.float32)  # no transient above what is kept
    probs /= probs.sum(axis=1, keepdims=True)
    return StandInProject(cache, labels, probs)


def feature_phase(phase: str, directory: Path, labeled: int) -> dict:
    """Peak memory of one feature on the cache in `directory` (see the module docstring)."""
    from app.engine import queues, suspect_cache
    from app.engine.extension import pick_extension

    project = _random_project(EmbeddingCache(directory), labeled)
    base = rss_mb()  # after the stand-in's own arrays (the probabilities a model keeps anyway)
    t = time.perf_counter()
    if phase == "similar":
        anchor = next(i for i in project.ids if i not in project.labels_of)
        found = len(queues.similar(project, anchor, 48))  # type: ignore[arg-type]
    elif phase == "suspects":
        found = suspect_cache._compute(project, 1)  # type: ignore[arg-type]
    else:
        pool = [i for i in project.ids if i not in project.labels_of]
        found = len(pick_extension(project, project, project.settings, pool))  # type: ignore[arg-type]
    return {
        "phase": phase,
        "pool": len(project.ids),
        "labeled": labeled,
        "baseline_mb": round(base, 1),
        "peak_above_baseline_mb": round(peak_mb() - base, 1),
        "seconds": round(time.perf_counter() - t, 2),
        "found": found,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--labeled", type=int, default=300)
    parser.add_argument("--strategies", default=f"margin,{DEFAULT_STRATEGY},diversity,{COLD_START}")
    parser.add_argument("--phase", choices=("all", "fill", "round", *FEATURES), default="all")
    parser.add_argument("--dir", help="cache directory (default: a temporary one); `all` fills it unless it is full")
    parser.add_argument("--keep", action="store_true", help="with --dir: keep the cache for another run")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    strategies = list(dict.fromkeys(s.strip() for s in args.strategies.split(",") if s.strip()))
    if args.phase == "fill":
        print(json.dumps(fill(Path(args.dir), args.pool, args.dim)))
        return
    if args.phase == "round":
        print(json.dumps(round_phase(Path(args.dir), args.pool, args.labeled, strategies)))
        return
    if args.phase in FEATURES:
        print(json.dumps(feature_phase(args.phase, Path(args.dir), args.labeled)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as scratch:
        tmp = args.dir or scratch
        full = args.dir is not None and len(EmbeddingCache(tmp).ids()) == args.pool
        results = []
        for phase in ("round",) if full else ("fill", "round"):
            cmd = [sys.executable, "-m", "benchmarks.memory", "--phase", phase, "--dir", tmp]
            cmd += ["--pool", str(args.pool), "--dim", str(args.dim), "--labeled", str(args.labeled)]
            cmd += ["--strategies", ",".join(strategies)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(results[-1], indent=2), flush=True)
        if args.dir and not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
