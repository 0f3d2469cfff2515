"""Importing 100,000 small images (hash, probe, copy, record) and caching 100,000 embeddings, at scale.

1. ``images``: writes N small distinct PNGs (digits-like: scikit-learn's 8 x 8 digits upscaled to 28 x 28 with
   noise, in 10 class folders) under a temporary folder, then imports the folder into a new project exactly as
   `ActiveLearningSession.add_data` does (`app.core.ingest.ingest` into a `ProjectStore`). Reports images/s overall
   and per tenth of the import (a step quadratic in the pool would slow the later tenths), and with ``--profile``
   the time per step (reading each file once, probing, writing the staged copy, SQLite in batches, the file
   system) from cProfile.
2. ``embeddings``: N synthetic 1280-d vectors stored in the project's embedding cache in chunks of 2,048 (as
   `learners.embed_missing` stores them); reports time and resident memory per chunk (constant = no growth).

    python -m benchmarks.ingest_scale                         # 100k images, both phases
    python -m benchmarks.ingest_scale --images 20000 --profile
    python -m benchmarks.ingest_scale --phase embeddings

Everything is written under ``--dir`` (default: a new folder in /tmp) and removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

MB = 1024 * 1024
STEPS = {  # step -> (file name part, function name) of the profiled functions it sums (cumulative times)
    "listing the folder": [("ingest", "plan")],
    "reading the source file once (open, read, fstat, hash)": [("read_once", "read_file")],
    "probing (decode the image fully, from memory)": [("images", "_probe")],
    "writing the staging file (create + write)": [("read_once", "write_staged"), ("read_once", "copy_hashing")],
    "file system: move into images/ (os.replace)": [("~", "<built-in method posix.replace>")],
    "file system: mkdir, stat, unlink": [("pathlib", "mkdir"), ("pathlib", "exists"), ("pathlib", "unlink")],
    "SQLite: record a batch (images + label annotations)": [("store", "add_images")],
    "SQLite: duplicate lookup (hash)": [("store", "image_id_for_hash")],
}


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / MB


def write_pngs(folder: Path, n: int, seed: int = 0) -> float:
    """`n` distinct 28 x 28 gray PNGs in class folders 0-9; returns the seconds it took."""
    from sklearn.datasets import load_digits

    start = time.perf_counter()
    digits = load_digits()
    rng = np.random.default_rng(seed)
    for c in range(10):
        (folder / str(c)).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        j = int(rng.integers(len(digits.images)))
        small = digits.images[j] * 16.0 + rng.normal(0, 6.0, size=(8, 8))
        img = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((28, 28), Image.BILINEAR)
        img.save(folder / str(digits.target[j]) / f"img{i:06d}.png", optimize=False)
    return time.perf_counter() - start


def import_images(source: Path, project: Path, profile: bool) -> dict:
    from app.core.ingest import ingest
    from app.core.store import ProjectStore

    store = ProjectStore(project)
    store.ensure_labels([str(c) for c in range(10)])
    marks: list[tuple[int, float]] = []
    start = time.perf_counter()

    def progress(done: int, total: int | None, _item: str) -> None:
        if total and (done % max(1, total // 10) == 0 or done == total):
            marks.append((done, time.perf_counter() - start))

    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    report = ingest(store, [source], labels_from_folders=True, progress=progress)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - start
    tenths, last = [], (0, 0.0)
    for done, t in marks:
        if done > last[0]:
            tenths.append(round((done - last[0]) / max(t - last[1], 1e-9), 1))
            last = (done, t)
    out = {
        "phase": "images",
        "imported": len(report.imported),
        "rejected": len(report.rejected),
        "labeled": report.labeled,
        "seconds": round(seconds, 2),
        "images_per_second": round(len(report.imported) / seconds, 1),
        "images_per_second_by_tenth": tenths,
        "store_images": store.count_images(),
    }
    if profiler is not None:
        out["profile_seconds"] = steps(profiler)
    store.close()
    return out


def steps(profiler: cProfile.Profile) -> dict:
    """Cumulative seconds of each step in STEPS and the top functions by own time (profiled, so slower than the
    run without the profiler)."""
    stats = pstats.Stats(profiler)
    table = stats.stats  # type: ignore[attr-defined]
    found: dict[str, float] = {}
    for step, keys in STEPS.items():
        found[step] = round(
            sum(ct for (f, _l, name), (_cc, _nc, _tt, ct, _c) in table.items() if (f == "~" or f.endswith(".py"))
                and any(part in f and name == want for part, want in keys)),
            2,
        )  # fmt: skip
    found["total (profiled)"] = round(stats.total_tt, 2)  # type: ignore[attr-defined]
    own = sorted(table.items(), key=lambda item: -item[1][2])[:8]
    found["top own time"] = [f"{Path(f).name}:{name} {tt:.2f}s" for (f, _l, name), (_a, _b, tt, _c, _d) in own]
    return found


def cache_embeddings(directory: Path, n: int, dim: int, chunk: int = 2048) -> dict:
    from app.engine.embedding_cache import EmbeddingCache

    cache = EmbeddingCache(directory)
    base = rss_mb()
    rng = np.random.default_rng(0)
    times, rss = [], []
    for s in range(0, n, chunk):
        ids = list(range(s, min(n, s + chunk)))
        vecs = rng.random((len(ids), dim), dtype=np.float32)
        t = time.perf_counter()
        cache.ensure(ids, lambda part, v=vecs: v[: len(part)], chunk=chunk)
        times.append(time.perf_counter() - t)
        rss.append(rss_mb() - base)
    return {
        "phase": "embeddings",
        "vectors": len(cache.ids()),
        "chunks": len(times),
        "seconds_total": round(sum(times), 2),
        "seconds_first_chunk": round(times[0], 4),
        "seconds_last_chunk": round(times[-1], 4),
        "seconds_median_chunk": round(float(np.median(times)), 4),
        "rss_above_start_mb_first_last_max": [round(rss[0], 1), round(rss[-1], 1), round(max(rss), 1)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--phase", choices=("all", "images", "embeddings"), default="all")
    parser.add_argument("--profile", action="store_true", help="profile the import with cProfile (slower)")
    parser.add_argument("--dir", help="work folder (default: a new one in /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-ingest-"))
    results = []
    try:
        if args.phase in ("all", "images"):
            source = work / "source"
            if not source.exists():
                print(json.dumps({"wrote_pngs_seconds": round(write_pngs(source, args.images), 1)}), flush=True)
            shutil.rmtree(work / "project", ignore_errors=True)
            results.append(import_images(source, work / "project", args.profile))
            print(json.dumps(results[-1], indent=2), flush=True)
        if args.phase in ("all", "embeddings"):
            shutil.rmtree(work / "embeddings", ignore_errors=True)
            results.append(cache_embeddings(work / "embeddings", args.images, args.dim))
            print(json.dumps(results[-1], indent=2), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
