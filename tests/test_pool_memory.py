"""Features beside the round on a big pool: "More like this", the likely-wrong-labels check, the batch's extension
and fine-tune mode's scoring read the embedding cache's float16 memory map block by block (or only the labeled
rows), never a float32 copy of the pool; on a small pool they give what a float32 copy gives.

The memory tests trace numpy's allocations (`tracemalloc` sees every numpy array, not a memory map's pages): a
float32 copy of the pool (`EmbeddingCache.get` of every image, `np.asarray(..., dtype=np.float32)`) is 4 bytes a
value and would be far above the bound, which is a quarter of it.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from app.core.settings import ProjectSettings
from app.core.strategies import select_batch
from app.engine import finetuning, label_check, queues, suspect_cache
from app.engine.embedding_cache import EmbeddingCache
from app.engine.extension import pick_extension, rows_of
from app.engine.pool_scoring import torch_dense
from benchmarks.memory import StandInProject
from lit_models.train import predict_proba, train_head

BIG, BIG_DIM = 100_000, 256  # 51 MB of float16 on disk, 102 MB as a float32 copy
CLASSES = 4


def clustered(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` float16 rows around `CLASSES` centres, and their classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=n)
    centres = rng.normal(size=(CLASSES, dim)).astype(np.float32) * 2
    x = np.empty((n, dim), dtype=np.float16)
    for s in range(0, n, 8192):
        x[s : s + 8192] = centres[y[s : s + 8192]] + rng.normal(size=(min(8192, n - s), dim)).astype(np.float32)
    return x, y


def write_cache(directory: Path, n: int, dim: int, first_id: int = 1) -> tuple[EmbeddingCache, np.ndarray]:
    """A cache of `n` clustered vectors for ids `first_id`, `first_id` + 1 ..., written in chunks; their classes."""
    x, y = clustered(n, dim)
    cache = EmbeddingCache(directory)
    for s in range(0, n, 16384):
        cache.add(list(range(first_id + s, first_id + min(n, s + 16384))), x[s : s + 16384])
    return EmbeddingCache(directory), y  # a fresh one: nothing of the writes kept


def labeled_project(cache: EmbeddingCache, y: np.ndarray, n_labeled: int, seed: int = 0, **kw: Any) -> StandInProject:
    rng = np.random.default_rng(seed)
    ids = cache.ids()
    chosen = np.sort(rng.choice(len(ids), size=n_labeled, replace=False))
    settings = ProjectSettings(strategy="margin_diverse", batch_size=10, audit_share=0.1, max_epochs=5)
    labels = {int(ids[r]): f"c{int(y[r])}" for r in chosen}
    return StandInProject(cache, labels, settings=settings, classes=CLASSES, **kw)


def traced_peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    """`fn()` and the peak of the memory allocated meanwhile (bytes; numpy arrays included, memory maps not)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


def float32_copy_bytes(cache: EmbeddingCache) -> int:
    return len(cache.ids()) * cache.matrix(cache.ids()[:1]).shape[1] * 4


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[EmbeddingCache, np.ndarray]:
    return write_cache(tmp_path_factory.mktemp("big") / "cache", BIG, BIG_DIM)


def test_tracing_sees_a_float32_copy_of_the_pool_but_not_the_memory_map(big) -> None:
    cache, _ = big
    ids = cache.ids()
    mapped, peak = traced_peak(lambda: cache.matrix(ids))
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.float16
    assert peak < float32_copy_bytes(cache) / 20  # the ids, not the vectors
    _, peak = traced_peak(lambda: cache.get(ids))  # what the features used to do
    assert peak >= float32_copy_bytes(cache)


# ----------------------------------------------------------------------------------------------- More like this
def reference_nearest(x: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """The old way: a float32 copy, cosine in one product (ties: lower row first)."""
    x, q = x.astype(np.float32), query.astype(np.float32)
    sims = (x @ q) / np.maximum(np.linalg.norm(x, axis=1), 1e-12)
    return np.lexsort((np.arange(len(x)), -sims))[:k].tolist()


@pytest.mark.parametrize("dense", [None, torch_dense()], ids=["numpy", "torch"])
def test_nearest_on_the_memory_map_block_by_block_equals_a_float32_copy(tmp_path: Path, dense) -> None:
    cache, _ = write_cache(tmp_path / "c", 20_000, 48)  # more than two blocks
    x = cache.matrix(cache.ids())
    assert isinstance(x, np.memmap)
    rows = np.flatnonzero(np.arange(len(x)) % 3 != 0)
    kw = {} if dense is None else {"dense": dense}
    got = queues.nearest(x, x[5], 40, rows=rows, **kw)
    assert got.tolist() == reference_nearest(np.asarray(x)[rows], x[5], 40)
    assert queues.nearest(x, x[5], 7, **kw).tolist() == reference_nearest(np.asarray(x), x[5], 7)
    assert queues.nearest(x, x[5], 0, rows=rows, **kw).tolist() == []


def test_nearest_ties_go_to_the_lower_position() -> None:
    x = np.ones((6, 3), dtype=np.float16)
    assert queues.nearest(x, np.ones(3, dtype=np.float32), 4).tolist() == [0, 1, 2, 3]


def test_more_like_this_gives_the_nearest_unlabeled_images_as_a_float32_copy_does(tmp_path: Path) -> None:
    cache, y = write_cache(tmp_path / "c", 3_000, 32, first_id=10)
    project = labeled_project(cache, y, 200)
    anchor = 10 + 17
    got = [t.image_id for t in queues.similar(project, anchor, 25)]  # type: ignore[arg-type]
    ids = cache.ids()
    candidates = [int(i) for i in ids if int(i) not in project.labels_of and int(i) != anchor]
    want = [candidates[r] for r in reference_nearest(cache.get(candidates), cache.get([anchor])[0], 25)]
    assert got == want
    assert not set(got) & set(project.labels_of)
    assert queues.similar(project, 10**9, 5) == []  # an image without an embedding


def test_more_like_this_on_a_big_pool_makes_no_float32_copy(big) -> None:
    cache, y = big
    project = labeled_project(cache, y, 300)
    tiles, peak = traced_peak(lambda: queues.similar(project, int(cache.ids()[3]), 48))  # type: ignore[arg-type]
    assert len(tiles) == 48
    assert peak < float32_copy_bytes(cache) / 4, peak


# ------------------------------------------------------------------------------------------ Likely-wrong labels
def test_cached_suspects_read_the_labeled_rows_and_find_what_a_float32_copy_finds(tmp_path: Path) -> None:
    cache, y = write_cache(tmp_path / "c", 2_000, 16)
    project = labeled_project(cache, y, 60, seed=1)
    wrong = sorted(project.labels_of)[:4]
    for i in wrong:  # flip a few labels
        project.labels_of[i] = f"c{(int(project.labels_of[i][1:]) + 1) % CLASSES}"
    ids = project.image_ids()
    want = label_check.project_suspects(project, project.settings, ids, cache.get(ids))  # type: ignore[arg-type]
    got = label_check.cached_suspects(project, project.settings, cache)  # type: ignore[arg-type]
    assert got == want and want
    assert len({s.image_id for s in got} & set(wrong)) >= 3  # most of the flipped labels
    mapped = label_check.project_suspects(project, project.settings, ids, cache.matrix(ids))  # type: ignore[arg-type]
    assert mapped == want  # the memory map itself: only the labeled rows are read, widened exactly


def test_the_suspects_of_a_big_pool_make_no_float32_copy(big) -> None:
    cache, y = big
    project = labeled_project(cache, y, 40)
    found, peak = traced_peak(lambda: suspect_cache._compute(project, 1))  # type: ignore[arg-type]
    assert found == len(suspect_cache.kept(project).suspects)  # type: ignore[arg-type, union-attr]
    assert peak < float32_copy_bytes(cache) / 4, peak


# ------------------------------------------------------------------------------------------- Batch extension
def reference_extension(project: StandInProject, pool: list[int]) -> list[tuple[int, str]]:
    """`pick_extension` computed on float32 copies of the pool's and the labeled images' vectors."""
    from app.core.audit import AUDIT, audit_count, draw_audit, place_audit

    s, cache = project.settings, project.cache
    k = min(s.batch_size, len(pool))
    probs = project.probs_for(pool)
    drawn = draw_audit(len(pool), audit_count(k, s.audit_share, has_model=True), s.seed + len(pool))
    rest = np.setdiff1d(np.arange(len(pool)), drawn)
    sel = select_batch(
        s.strategy, k - len(drawn), probs=probs[rest], pool_emb=cache.get(pool)[rest],
        labeled_emb=cache.get(list(project.labels_of)), seed=s.seed,
    )  # fmt: skip
    chosen = [(pool[int(rest[i])], sel.strategy, 0.0) for i in sel.indices]
    return [(i, why) for i, why, _ in place_audit(chosen, [(pool[int(i)], AUDIT, 0.0) for i in drawn], k)]


@pytest.mark.parametrize("strategy", ["margin", "margin_diverse", "diversity", "entropy"])
def test_the_extension_on_the_memory_map_picks_what_a_float32_copy_picks(tmp_path: Path, strategy: str) -> None:
    cache, y = write_cache(tmp_path / "c", 3_000, 32, first_id=5)
    probs = np.random.default_rng(3).dirichlet(np.ones(CLASSES), size=3_000).astype(np.float32)
    project = labeled_project(cache, y, 50, probs=probs)
    project.settings = ProjectSettings(strategy=strategy, batch_size=12, audit_share=0.2)
    pool = [i for i in project.ids if i not in project.labels_of][::-1]  # not the cache's order
    got = pick_extension(project, project, project.settings, pool)  # type: ignore[arg-type]
    assert [(i, why) for i, why, _ in got] == reference_extension(project, pool)


def test_the_extension_falls_back_to_margin_when_an_image_has_no_embedding(tmp_path: Path) -> None:
    cache, y = write_cache(tmp_path / "c", 500, 8)
    project = labeled_project(cache, y, 20, probs=np.full((600, CLASSES), 1 / CLASSES, dtype=np.float32))
    pool = [i for i in project.ids if i not in project.labels_of] + [501]
    picks = pick_extension(project, project, project.settings, pool)  # type: ignore[arg-type]
    assert {why for _, why, _ in picks} <= {"margin", "audit"} and len(picks) == 10


def test_rows_of_finds_each_id_in_the_cache_or_none() -> None:
    cached = np.array([7, 3, 9, 1], dtype=np.int64)
    assert rows_of(cached, [9, 7, 1]).tolist() == [2, 0, 3]  # type: ignore[union-attr]
    assert rows_of(cached, [7, 3, 9, 1]).tolist() == [0, 1, 2, 3]  # type: ignore[union-attr]
    assert rows_of(cached, []).tolist() == []  # type: ignore[union-attr]
    assert rows_of(cached, [3, 4]) is None
    assert rows_of(np.empty(0, dtype=np.int64), [3]) is None


def test_the_extension_of_a_big_pool_makes_no_float32_copy(big) -> None:
    cache, y = big
    probs = np.random.default_rng(0).dirichlet(np.ones(CLASSES), size=BIG).astype(np.float32)
    project = labeled_project(cache, y, 300, probs=probs)
    pool = [i for i in project.ids if i not in project.labels_of]
    picks, peak = traced_peak(lambda: pick_extension(project, project, project.settings, pool))  # type: ignore[arg-type]
    assert len(picks) == project.settings.batch_size
    assert peak < float32_copy_bytes(cache) / 4, peak


# ---------------------------------------------------------------------------------------------- Fine-tune mode
def fine_tune_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int, dim: int) -> tuple[Any, Callable[[], Any]]:
    """A `FineTuneLearner` whose training and re-embedding are stand-ins (the re-embedding writes `n` clustered
    vectors in chunks, as `embed_missing` does), and the call of its `fit`."""
    x, y = clustered(n, dim, seed=4)
    train_rows = np.arange(0, n, max(1, n // 200), dtype=np.int64)
    head = train_head(x[train_rows].astype(np.float32), y[train_rows], CLASSES, max_epochs=3)

    def embed(_backbone: Any, cache: EmbeddingCache, ids: list[int], *_a: Any, **_k: Any) -> None:
        for s in range(0, len(ids), 16384):
            cache.add(ids[s : s + 16384], x[s : s + 16384])

    monkeypatch.setattr(finetuning, "train_head", lambda *a, **k: head)
    monkeypatch.setattr(finetuning.gpu, "run_on_gpu", lambda fn, *a, **k: ("tuned", head))
    monkeypatch.setattr(finetuning, "embed_missing", embed)
    ids = np.arange(1, n + 1, dtype=np.int64)
    learner = finetuning.FineTuneLearner(
        backbone=None,  # type: ignore[arg-type]
        paths={int(i): tmp_path / f"{i}.png" for i in ids[train_rows]},
        cache_for=lambda tag: EmbeddingCache(tmp_path / tag),
    )
    data = SimpleNamespace(
        ids=ids, x=x, label_names=tuple(f"c{i}" for i in range(CLASSES)), train_rows=train_rows,
        y_train=y[train_rows], seed=0, tag="round0001",
    )  # fmt: skip
    return head, lambda: learner.fit(data, None, None)  # type: ignore[arg-type]


def test_a_fine_tune_round_scores_the_re_embedded_pool_as_predict_proba_does(tmp_path, monkeypatch) -> None:
    head, fit = fine_tune_fit(tmp_path, monkeypatch, 5_000, 32)
    fitted = fit()
    want = predict_proba(head, fitted.cache.get(fitted.ids.tolist()))
    np.testing.assert_allclose(fitted.probs, want, atol=1e-5)


def test_a_fine_tune_round_on_a_big_pool_scores_it_without_a_float32_copy(tmp_path, monkeypatch) -> None:
    _, fit = fine_tune_fit(tmp_path, monkeypatch, BIG, BIG_DIM)
    fitted, peak = traced_peak(fit)
    assert fitted.probs.shape == (BIG, CLASSES)
    assert peak < BIG * BIG_DIM * 4 / 4, peak
