"""Rounds on big pools: the float16 memory map read block by block, the lazy k-center, partial top-k, pool scoring."""

from __future__ import annotations

import numpy as np
import pytest

from app.core import pool_rows
from app.core.coreset import k_center
from app.core.scoring import top_k
from app.core.strategies import select_batch
from app.engine.embedding_cache import EmbeddingCache
from app.engine.pool_scoring import TorchWiden, pool_probs, torch_dense, torch_project
from lit_models.train import predict_proba, train_head


def plain_k_center(x: np.ndarray, labeled: np.ndarray | None, k: int) -> tuple[list[int], list[float]]:
    """The textbook greedy k-center: every point's distance updated after every pick (float64)."""
    x = x.astype(np.float64)
    if labeled is not None and len(labeled):
        d = ((x[:, None, :] - labeled[None].astype(np.float64)) ** 2).sum(-1).min(axis=1)
        picks: list[int] = []
        dists: list[float] = []
    else:
        to_mean = ((x - x.mean(axis=0)) ** 2).sum(-1)
        first = int(np.argmin(to_mean))
        picks, dists = [first], [float(np.sqrt(to_mean[first]))]
        d = ((x - x[first]) ** 2).sum(-1)
        d[first] = -np.inf
    while len(picks) < k:
        i = int(np.argmax(d))
        picks.append(i)
        dists.append(float(np.sqrt(d[i])))
        d = np.minimum(d, ((x - x[i]) ** 2).sum(-1))
        d[picks] = -np.inf
    return picks, dists


@pytest.mark.parametrize("with_labeled", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lazy_k_center_picks_what_the_plain_greedy_picks(with_labeled, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(6000, 8)).astype(np.float32) * rng.gamma(1.0, 1.0, size=(6000, 1)).astype(np.float32)
    labeled = x[:40] + 0.01 if with_labeled else None
    picks, dists = k_center(x, labeled, 30)
    want, want_d = plain_k_center(x, labeled, 30)
    assert picks.tolist() == want
    np.testing.assert_allclose(dists, want_d, rtol=1e-3)


def test_lazy_k_center_among_duplicates_picks_distinct_lowest_indices():
    x = np.zeros((50, 3), dtype=np.float32)
    x[10] = 5.0
    picks, _ = k_center(x, np.zeros((1, 3), dtype=np.float32), 4)
    assert picks.tolist() == [10, 0, 1, 2]  # the far point, then exact duplicates by lower index


@pytest.mark.parametrize("k", [1, 5, 100])
def test_partial_top_k_equals_the_full_stable_sort_with_ties(k):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 50, size=20_000).astype(np.float64)  # many ties
    assert top_k(scores, k).tolist() == np.argsort(-scores, kind="stable")[:k].tolist()
    scores[7] = np.nan  # NaN ranks last
    assert 7 not in top_k(scores, k).tolist()


def test_cache_matrix_is_the_memory_map_itself_in_cache_order_else_a_float16_gather(tmp_path):
    cache = EmbeddingCache(tmp_path)
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    cache.add(list(range(100, 110)), x)
    whole = cache.matrix(list(range(100, 110)))
    assert isinstance(whole, np.memmap) and whole.dtype == np.float16 and not whole.flags.writeable
    np.testing.assert_array_equal(whole, x)
    run = cache.matrix([103, 104, 105])
    assert isinstance(run, np.memmap)
    np.testing.assert_array_equal(run, x[3:6])
    gathered = cache.matrix([105, 101])
    assert gathered.dtype == np.float16 and not isinstance(gathered, np.memmap)
    np.testing.assert_array_equal(gathered, x[[5, 1]])
    with pytest.raises(KeyError):
        cache.matrix([100, 999])
    assert cache.missing(np.array([109, 200, 100, 201])) == [200, 201]


def test_blocks_read_every_row_once_and_give_back_mapped_pages(tmp_path):
    cache = EmbeddingCache(tmp_path)
    x = np.random.default_rng(0).normal(size=(5000, 64)).astype(np.float16)
    cache.add(list(range(5000)), x)
    mapped = cache.matrix(list(range(5000)))
    rows = np.arange(3, 4990, 3)
    for widen in (None, TorchWiden()):
        got = np.concatenate([b.copy() for _, b in pool_rows.blocks(mapped, rows, block=512, widen=widen)])
        np.testing.assert_array_equal(got, x[rows].astype(np.float32))
        whole = np.concatenate([b.copy() for _, b in pool_rows.blocks(mapped, block=700, widen=widen)])
        np.testing.assert_array_equal(whole, x.astype(np.float32))
    pool_rows.release(mapped, 0, len(mapped))  # released pages read back the same
    np.testing.assert_array_equal(mapped[4000], x[4000])
    pool_rows.release(x, 0, 10)  # not a memory map: nothing happens


@pytest.mark.parametrize("hidden", [0, 16])
def test_pool_probs_from_the_memory_map_equal_predict_proba(tmp_path, hidden):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 32)).astype(np.float16)
    y = rng.integers(0, 3, size=3000)
    head = train_head(x[:200].astype(np.float32), y[:200], 3, hidden=hidden, seed=0)
    cache = EmbeddingCache(tmp_path)
    cache.add(list(range(3000)), x)
    probs = pool_probs(head, cache.matrix(list(range(3000))), block=256)
    np.testing.assert_allclose(probs, predict_proba(head, x.astype(np.float32)), rtol=1e-5, atol=1e-6)
    assert probs.dtype == np.float32


def test_torch_project_reads_any_rows_like_numpy_and_keeps_the_thread_count(tmp_path):
    import torch

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 64)).astype(np.float16)
    cache = EmbeddingCache(tmp_path)
    cache.add(list(range(20000)), x)
    mapped = cache.matrix(list(range(20000)))
    m = rng.normal(size=(64, 8)).astype(np.float32)
    before = torch.get_num_threads()
    runs = [None, np.arange(3, 19000, 3), np.setdiff1d(np.arange(20000), [5, 77, 4000]), rng.permutation(20000)[:900]]
    for rows in runs:
        want = (x if rows is None else x[rows]).astype(np.float32) @ m
        for source in (mapped, x.astype(np.float32)):
            np.testing.assert_allclose(torch_project(source, rows, m), want, rtol=1e-5, atol=1e-5)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("strategy", ["diversity", "margin", "margin_diverse"])
def test_select_batch_on_the_memory_map_picks_like_on_a_float32_copy(tmp_path, strategy):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, 300)).astype(np.float16)
    cache = EmbeddingCache(tmp_path)
    cache.add(list(range(3000)), x)
    mapped = cache.matrix(list(range(3000)))
    pool = np.arange(50, 3000)
    probs = rng.dirichlet(np.ones(4), size=len(pool))
    args = {"probs": probs, "labeled_emb": x[:50].astype(np.float32), "seed": 1, "pool_rows": pool}
    copied = select_batch(strategy, 12, pool_emb=x.astype(np.float32), **args)
    lazy = select_batch(strategy, 12, pool_emb=mapped, dense=torch_dense(), **args)
    assert lazy.indices.tolist() == copied.indices.tolist()
    np.testing.assert_allclose(lazy.scores, copied.scores, rtol=1e-5)


def test_release_finds_the_memory_map_behind_a_plain_view(tmp_path):
    cache = EmbeddingCache(tmp_path)
    x = np.ones((20000, 256), dtype=np.float16)
    cache.add(list(range(20000)), x)
    view = np.asarray(cache.matrix(list(range(20000))))  # what np.asarray makes of a memory map: no `_mmap` itself
    assert not isinstance(view, np.memmap)

    def resident_kb() -> int:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("RssFile"))

    before = resident_kb()
    assert float(view.astype(np.float32).sum()) == 20000 * 256  # every page read: ~10 MB mapped
    read = resident_kb()
    pool_rows.release(view, 0, len(view))
    assert resident_kb() < read - 5000 and read > before + 5000
