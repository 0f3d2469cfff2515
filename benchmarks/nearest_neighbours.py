"""More like this at scale: one query for its k = 48 nearest neighbours (cosine) among N float16 embeddings.

The embeddings are what `app.engine.embedding_cache` keeps: float16 rows (1280 wide for EfficientNet-Lite0) in a
memory-mapped file. Ways measured, each for one query image against every other row:

- ``numpy``: block-wise matrix-vector product straight on the memory map (rows widened to float32 a block at a
  time, the rows' norms computed once and kept), then `argpartition` for the k best;
- ``sklearn``: scikit-learn `NearestNeighbors(metric="cosine")` fitted on the rows and asked for k (what
  `app.engine.queues.similar` did per query: fit + query);
- ``faiss-flat``: faiss `IndexFlatIP` on the normalized rows (exact); its build (float32 copy + add) apart;
- ``torch``: `torch.mv` on the float16 rows as they are (no float32 copy), norms kept;
- ``faiss-sq16``: faiss `IndexScalarQuantizer(QT_fp16)`: the rows stored as float16 inside faiss (exact up to
  float16), build apart;
- ``faiss-ivf``: faiss `IndexIVFFlat` (sqrt(N) lists, nprobe 16, approximate), build and train apart, with its
  recall of the exact 48.

    python -m benchmarks.nearest_neighbours --sizes 100000 1000000 --out nn.json

Random rows stand in for embeddings (their speed does not depend on the values). Wall-clock seconds on this
machine; the median of `--repeats` queries after one warm-up.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

import numpy as np

DIM, K, BLOCK = 1280, 48, 65_536


def make_memmap(path: Path, n: int, seed: int = 0) -> np.memmap:
    """`n` random float16 rows in a file, written block by block (as the embedding cache is)."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, DIM))
    for s in range(0, n, BLOCK):
        out[s : s + BLOCK] = rng.standard_normal((min(BLOCK, n - s), DIM), dtype=np.float32)
    out.flush()
    return np.load(path, mmap_mode="r")


def row_norms(x: np.ndarray) -> np.ndarray:
    out = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), BLOCK):
        block = x[s : s + BLOCK].astype(np.float32)
        out[s : s + len(block)] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return np.maximum(out, 1e-12)


def numpy_knn(x: np.ndarray, norms: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """The k rows of `x` most cosine-similar to `q` (itself left out by the caller), best first."""
    q = q.astype(np.float32) / max(float(np.linalg.norm(q)), 1e-12)
    sims = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), BLOCK):
        sims[s : s + BLOCK] = x[s : s + BLOCK].astype(np.float32) @ q
    sims /= norms
    top = np.argpartition(-sims, k)[:k]
    return top[np.argsort(-sims[top])]


def timed(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), result


def measure(n: int, folder: Path, repeats: int, skip_sklearn: bool, skip_ivf: bool = False) -> dict:
    import faiss

    x = make_memmap(folder / f"emb_{n}.npy", n)
    q = np.asarray(x[123], dtype=np.float32)
    out: dict = {"n": n, "dim": DIM, "k": K}
    t0 = time.perf_counter()
    norms = row_norms(x)
    out["numpy_norms_once_s"] = round(time.perf_counter() - t0, 3)
    out["numpy_query_s"], exact = timed(lambda: numpy_knn(x, norms, q, K + 1), repeats)
    exact = set(np.asarray(exact).tolist())

    if not skip_sklearn:
        from sklearn.neighbors import NearestNeighbors

        def sk() -> np.ndarray:
            finder = NearestNeighbors(n_neighbors=K + 1, metric="cosine").fit(x)
            return finder.kneighbors(q[None])[1][0]

        out["sklearn_fit_and_query_s"], found = timed(sk, max(1, repeats // 2))
        out["sklearn_recall"] = round(len(exact & set(found.tolist())) / len(exact), 3)
        gc.collect()

    import torch

    rows, qt = torch.from_numpy(np.array(x)), torch.from_numpy(q.astype(np.float16))
    tnorms = torch.from_numpy(norms)

    def by_torch() -> np.ndarray:
        sims = torch.mv(rows, qt).float() / tnorms
        return torch.topk(sims, K + 1).indices.numpy()

    out["torch_fp16_query_s"], found = timed(by_torch, repeats)
    out["torch_fp16_recall"] = round(len(exact & set(found.tolist())) / len(exact), 3)
    rows = None
    gc.collect()

    t0 = time.perf_counter()
    sq = faiss.IndexScalarQuantizer(DIM, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    sq.train(np.zeros((1, DIM), dtype=np.float32))
    for s in range(0, n, BLOCK):
        sq.add(x[s : s + BLOCK].astype(np.float32) / norms[s : s + BLOCK, None])
    out["faiss_sq16_build_s"] = round(time.perf_counter() - t0, 3)
    qn = (q / np.linalg.norm(q))[None].astype(np.float32)
    out["faiss_sq16_query_s"], (_, found) = timed(lambda: sq.search(qn, K + 1), repeats)
    out["faiss_sq16_recall"] = round(len(exact & set(found[0].tolist())) / len(exact), 3)
    sq = None
    gc.collect()

    t0 = time.perf_counter()
    flat = np.empty((n, DIM), dtype=np.float32)
    for s in range(0, n, BLOCK):
        flat[s : s + BLOCK] = x[s : s + BLOCK].astype(np.float32) / norms[s : s + BLOCK, None]
    index = faiss.IndexFlatIP(DIM)
    index.add(flat)
    out["faiss_flat_build_s"] = round(time.perf_counter() - t0, 3)
    out["faiss_flat_query_s"], (_, found) = timed(lambda: index.search(qn, K + 1), repeats)
    out["faiss_flat_recall"] = round(len(exact & set(found[0].tolist())) / len(exact), 3)
    index = None
    gc.collect()
    if skip_ivf:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}

    t0 = time.perf_counter()
    lists = int(np.sqrt(n))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, lists, faiss.METRIC_INNER_PRODUCT)
    ivf.train(flat[np.random.default_rng(1).choice(n, min(n, lists * 40), replace=False)])
    ivf.add(flat)
    ivf.nprobe = 16
    out["faiss_ivf_build_s"] = round(time.perf_counter() - t0, 3)
    out["faiss_ivf_query_s"], (_, found) = timed(lambda: ivf.search(qn, K + 1), repeats)
    out["faiss_ivf_recall"] = round(len(exact & set(found[0].tolist())) / len(exact), 3)
    for key, value in list(out.items()):
        if isinstance(value, float):
            out[key] = round(value, 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-sklearn-above", type=int, default=200_000, help="it needs > 17 GB at 1M (OOM here)")
    parser.add_argument("--skip-ivf-above", type=int, default=200_000, help="a second float32 copy of the rows")
    parser.add_argument("--out")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="nn-") as tmp:
        for n in args.sizes:
            result = measure(n, Path(tmp), args.repeats, n > args.skip_sklearn_above, n > args.skip_ivf_above)
            print(json.dumps(result), flush=True)
            results.append(result)
            for f in Path(tmp).glob("*.npy"):
                f.unlink()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
