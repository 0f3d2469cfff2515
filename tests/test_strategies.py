"""Query strategies on small hand-made arrays with hand-predictable answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.core import strategies as st
from app.core.errors import EmptyPoolError
from app.core.scoring import as_probs
from app.core.strategies import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    entropy,
    k_center_greedy,
    least_confidence,
    margin,
    reduce_dims,
    select_batch,
    top_k,
    typical_clusters,
)

ROWS = np.array(
    [
        [0.7, 0.2, 0.1],  # peaked
        [1 / 3, 1 / 3, 1 / 3],  # uniform
        [0.0, 1.0, 0.0],  # one-hot
        [0.5, 0.5, 0.0],  # two-way tie
    ]
)
CENTRES = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])


def blobs(per_blob: int = 40, sigma: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(c, sigma, (per_blob, 2)) for c in CENTRES])


def two_class(margins: np.ndarray) -> np.ndarray:
    """Two-class probabilities whose margin score is exactly `margins`."""
    m = np.asarray(margins, dtype=np.float64)
    return np.stack([(2 - m) / 2, m / 2], axis=1)


# --- scores -------------------------------------------------------------------------------------------------------


def test_least_confidence_known_values():
    np.testing.assert_allclose(least_confidence(ROWS), [0.3, 2 / 3, 0.0, 0.5])
    np.testing.assert_allclose(least_confidence([[0.6, 0.4], [0.1, 0.9]]), [0.4, 0.1])


def test_margin_known_values():
    np.testing.assert_allclose(margin(ROWS), [0.5, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(margin([[0.6, 0.4], [0.1, 0.9]]), [0.8, 0.2])
    np.testing.assert_allclose(margin([[0.3], [1.0]]), [0.7, 0.0])  # one column: runner-up counts as 0


def test_entropy_known_values_and_zero_probabilities_are_safe():
    peaked = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    with np.errstate(all="raise"):  # p = 0 must not produce log(0) warnings or NaN
        got = entropy(ROWS)
    np.testing.assert_allclose(got, [peaked, math.log(3), 0.0, math.log(2)])
    np.testing.assert_allclose(entropy([[0.5, 0.5], [1, 0]]), [math.log(2), 0.0])  # integers are accepted


def test_scores_are_float64_vectors_even_for_float32_input():
    for fn in (least_confidence, margin, entropy):
        out = fn(ROWS.astype(np.float32))
        assert out.dtype == np.float64
        assert out.shape == (4,)


def test_probs_must_be_a_finite_matrix():
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        as_probs([0.2, 0.8])
    with pytest.raises(ValueError, match="NaN"):
        margin([[0.5, np.nan]])


def test_top_k_highest_first_ties_by_lower_index():
    scores = [0.5, 0.9, 0.5, 0.9, 0.1]
    assert top_k(scores, 3).tolist() == [1, 3, 0]
    assert top_k(scores, 4).tolist() == [1, 3, 0, 2]
    assert top_k([0.2, 0.2, 0.2], 2).tolist() == [0, 1]


def test_top_k_edge_cases():
    assert top_k([0.3, 0.1, 0.2], 10).tolist() == [0, 2, 1]  # k > N -> all
    assert top_k([0.3, 0.1], 0).tolist() == []
    assert top_k([np.nan, 0.1, 0.5], 3).tolist() == [2, 1, 0]  # NaN ranks last
    with pytest.raises(ValueError, match="negative"):
        top_k([0.1], -1)


# --- diversity (k-center greedy) -----------------------------------------------------------------------------------


LINE = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])


def test_k_center_on_a_line_with_a_labeled_point():
    # labeled at 0: farthest is 10; then 3 (3 from 0, 7 from 10); then 1 and 2 tie at 1 -> lower index 1
    assert k_center_greedy(LINE, np.array([[0.0]]), 3).tolist() == [4, 3, 1]
    sel = select_batch("diversity", 3, probs=None, pool_emb=LINE, labeled_emb=np.array([[0.0]]))
    assert sel.strategy == "diversity"
    assert sel.indices.tolist() == [4, 3, 1]
    np.testing.assert_allclose(sel.scores, [10.0, 3.0, 1.0])


def test_k_center_without_labeled_starts_nearest_the_mean():
    # mean is 3.2 -> start at 3; farthest from 3 is 10; then 0 (3 away from 3)
    assert k_center_greedy(LINE, None, 3).tolist() == [3, 4, 0]
    assert k_center_greedy(LINE, np.empty((0, 1)), 3).tolist() == [3, 4, 0]
    sel = select_batch("diversity", 3, probs=None, pool_emb=LINE, labeled_emb=None)
    np.testing.assert_allclose(sel.scores, [0.2, 7.0, 3.0], atol=1e-6)  # first: distance to the mean


def test_k_center_picks_distinct_items_among_duplicates_and_caps_k():
    same = np.ones((4, 3))
    assert sorted(k_center_greedy(same, same[:1], 4).tolist()) == [0, 1, 2, 3]
    assert sorted(k_center_greedy(LINE, None, 50).tolist()) == [0, 1, 2, 3, 4]


def test_direct_calls_with_nothing_to_pick_return_nothing():
    assert k_center_greedy(LINE, None, 0).tolist() == []
    assert k_center_greedy(np.empty((0, 2)), None, 3).tolist() == []
    assert typical_clusters(blobs(), 0).tolist() == []
    with pytest.raises(ValueError, match="negative"):
        typical_clusters(blobs(), -1)


def naive_k_center(x: np.ndarray, labeled: np.ndarray, k: int) -> list[int]:
    picks: list[int] = []
    for _ in range(k):
        centres = np.concatenate([labeled, x[picks]])
        d = np.sqrt(((x[:, None, :] - centres[None]) ** 2).sum(-1)).min(axis=1)
        d[picks] = -1
        picks.append(int(np.argmax(d)))
    return picks


def test_k_center_matches_a_naive_reference_also_after_pca_reduction():
    rng = np.random.default_rng(3)
    low = rng.normal(size=(200, 4))
    assert k_center_greedy(low, low[:5] + 0.1, 8).tolist() == naive_k_center(low, low[:5] + 0.1, 8)
    # 300-D points in a 6-D subspace: the 128-D PCA keeps every distance, so the picks must not change
    wide = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 300))
    labeled = wide[:3] + 0.05
    assert k_center_greedy(wide, labeled, 8).tolist() == naive_k_center(wide, labeled, 8)


def test_reduce_dims_keeps_distances_of_low_rank_data_and_leaves_narrow_data_alone():
    rng = np.random.default_rng(0)
    wide = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 400))
    other = rng.normal(size=(4, 5)) @ rng.normal(size=(5, 400))  # different subspace: only shape is checked
    pool, proj_other = reduce_dims(wide, other, seed=0)
    assert pool.shape == (300, st.REDUCED_DIMS)
    assert pool.dtype == np.float32
    assert proj_other.shape == (4, st.REDUCED_DIMS)
    d_raw = np.linalg.norm(wide[:20, None] - wide[None, :20], axis=-1)
    d_red = np.linalg.norm(pool[:20, None].astype(np.float64) - pool[None, :20], axis=-1)
    np.testing.assert_allclose(d_red, d_raw, rtol=1e-3, atol=1e-3)
    narrow = rng.normal(size=(300, 64))
    np.testing.assert_array_equal(reduce_dims(narrow)[0], narrow.astype(np.float32))


# --- cold start (typical_clusters) ---------------------------------------------------------------------------------


def assert_one_typical_pick_per_blob(x: np.ndarray, picks: np.ndarray, per_blob: int = 40) -> None:
    assert sorted((picks // per_blob).tolist()) == [0, 1, 2]
    for i in picks:
        blob = i // per_blob
        members = x[blob * per_blob : (blob + 1) * per_blob]
        member_d = np.linalg.norm(members - CENTRES[blob], axis=1)
        # the most typical point sits in the dense centre: nearer the centre than most of its blob
        assert np.linalg.norm(x[i] - CENTRES[blob]) < np.quantile(member_d, 0.25)


def test_typical_clusters_picks_the_centre_of_each_blob():
    x = blobs()
    picks = typical_clusters(x, 3, seed=0)
    assert len(set(picks.tolist())) == 3
    assert_one_typical_pick_per_blob(x, picks)


def test_typical_clusters_with_sampled_neighbours_and_minibatch_kmeans(monkeypatch):
    monkeypatch.setattr(st, "MINIBATCH_ABOVE", 50)
    monkeypatch.setattr(st, "TYPICALITY_REF_ROWS", 15)
    x = blobs(seed=1)
    assert_one_typical_pick_per_blob(x, typical_clusters(x, 3, seed=0))


def test_typical_clusters_tiny_cluster_uses_the_point_nearest_its_centroid():
    far = np.array([[100.0, 100.0], [101.0, 100.0], [100.0, 101.0]])  # centroid (100.33, 100.33)
    x = np.concatenate([blobs(per_blob=30)[:60], far])
    picks = typical_clusters(x, 3, seed=0)
    assert 60 in picks.tolist()
    assert sorted((picks[picks < 60] // 30).tolist()) == [0, 1]


def test_typicality_is_inverse_mean_distance_to_nearest_other_members(monkeypatch):
    monkeypatch.setattr(st, "TYPICALITY_NEIGHBORS", 2)
    x = np.array([[0.0], [1.0], [3.0], [4.0], [10.0]], dtype=np.float32)
    typ = st._typicality(x, np.arange(5), np.random.default_rng(0))
    # two nearest others: 0 -> 1, 3; 1 -> 0, 3; 3 -> 4, 1; 4 -> 3, 1; 10 -> 4, 3
    np.testing.assert_allclose(typ, 1 / np.array([2.0, 1.5, 1.5, 2.0, 6.5]), rtol=1e-6)


def test_typical_clusters_prefers_clusters_without_labeled_points():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(CENTRES[0], 0.5, (80, 2)), blobs()[40:]])  # blob 0 is the biggest: 80 points
    picks = typical_clusters(x, 2, seed=0, labeled_emb=np.array([[0.1, -0.1]]))
    assert (picks >= 80).all()
    assert sorted(((picks - 80) // 40).tolist()) == [0, 1]  # one from each of the two other blobs
    assert (typical_clusters(x, 2, seed=0) < 80).sum() == 1  # without labels the biggest blob is covered first


def test_typical_clusters_k_at_least_n_returns_everything():
    x = blobs(per_blob=2)
    assert typical_clusters(x, 6).tolist() == list(range(6))
    assert typical_clusters(x, 100).tolist() == list(range(6))


# --- margin_diverse ------------------------------------------------------------------------------------------------


def clustered_pool() -> tuple[np.ndarray, np.ndarray]:
    """60 items; item i is in blob i % 3. Blob 0 holds the 20 most uncertain items, all near-duplicates."""
    rng = np.random.default_rng(0)
    i = np.arange(60)
    emb = CENTRES[i % 3] + rng.normal(0, 0.05, (60, 2))
    j = i // 3
    margins = np.where(i % 3 == 0, 0.99 - 0.001 * j, np.where(i % 3 == 1, 0.60 + 0.001 * j, 0.40 - 0.001 * j))
    return two_class(margins), emb


def test_margin_diverse_picks_the_most_uncertain_item_of_each_cluster():
    probs, emb = clustered_pool()
    assert select_batch("margin", 3, probs=probs, pool_emb=emb, labeled_emb=None).indices.tolist() == [0, 3, 6]

    sel = select_batch("margin_diverse", 3, probs=probs, pool_emb=emb, labeled_emb=None)
    assert sel.strategy == "margin_diverse"
    assert sel.indices.tolist() == [0, 58, 2]  # best of blob 0, 1 (j = 19), 2; highest margin first
    np.testing.assert_allclose(sel.scores, [0.99, 0.619, 0.40])


def test_margin_diverse_only_picks_from_the_margin_candidates():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=1000)
    emb = rng.normal(size=(1000, 8))
    sel = select_batch("margin_diverse", 5, probs=probs, pool_emb=emb, labeled_emb=None)
    assert len(set(sel.indices.tolist())) == 5
    assert set(sel.indices.tolist()) <= set(top_k(margin(probs), 100).tolist())  # max(10 k, 100) candidates
    assert np.all(np.diff(sel.scores) <= 0)


def test_margin_diverse_without_embeddings_is_plain_margin():
    probs, _ = clustered_pool()
    sel = select_batch("margin_diverse", 3, probs=probs, pool_emb=None, labeled_emb=None)
    assert sel.strategy == "margin"
    assert sel.indices.tolist() == [0, 3, 6]


def test_margin_diverse_fills_up_when_points_are_identical():
    probs = two_class(np.linspace(0.9, 0.1, 30))
    sel = select_batch("margin_diverse", 4, probs=probs, pool_emb=np.zeros((30, 3)), labeled_emb=None)
    assert sorted(sel.indices.tolist()) == [0, 1, 2, 3]


# --- select_batch --------------------------------------------------------------------------------------------------


def test_default_strategy_is_the_hybrid():
    assert DEFAULT_STRATEGY == "margin_diverse"
    assert DEFAULT_STRATEGY in STRATEGIES
    assert set(STRATEGIES) >= {"random", "least_confidence", "margin", "entropy", "diversity"}


@pytest.mark.parametrize(
    ("name", "fn"), [("least_confidence", least_confidence), ("margin", margin), ("entropy", entropy)]
)
def test_uncertainty_strategies_take_the_top_scores(name, fn):
    sel = select_batch(name, 2, probs=ROWS, pool_emb=None, labeled_emb=None)
    assert sel.strategy == name
    assert sel.indices.tolist() == top_k(fn(ROWS), 2).tolist()
    np.testing.assert_allclose(sel.scores, fn(ROWS)[sel.indices])
    assert sel.indices.tolist() == {"least_confidence": [1, 3], "margin": [1, 3], "entropy": [1, 0]}[name]


def test_without_a_model_the_batch_is_a_cold_start():
    x = blobs()
    sel = select_batch("margin", 3, probs=None, pool_emb=x, labeled_emb=None, seed=4)
    assert sel.strategy == "cold_start"
    assert sel.indices.tolist() == typical_clusters(x, 3, seed=4).tolist()
    assert np.all(sel.scores > 0)
    assert select_batch("random", 3, probs=None, pool_emb=x, labeled_emb=None).strategy == "random"


def test_random_is_distinct_unscored_and_seeded():
    probs = np.full((1000, 2), 0.5)
    a = select_batch("random", 10, probs=probs, pool_emb=None, labeled_emb=None, seed=1)
    b = select_batch("random", 10, probs=probs, pool_emb=None, labeled_emb=None, seed=1)
    c = select_batch("random", 10, probs=probs, pool_emb=None, labeled_emb=None, seed=2)
    assert a.strategy == "random"
    assert len(set(a.indices.tolist())) == 10
    assert a.indices.min() >= 0
    assert a.indices.max() < 1000
    assert np.isnan(a.scores).all()
    assert a.indices.tolist() == b.indices.tolist()
    assert a.indices.tolist() != c.indices.tolist()


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_is_deterministic_and_caps_k_at_the_pool_size(name):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=300)
    emb = rng.normal(size=(300, 300))  # wider than REDUCE_ABOVE: exercises the PCA path
    labeled = rng.normal(size=(7, 300))
    runs = [select_batch(name, 12, probs=probs, pool_emb=emb, labeled_emb=labeled, seed=5) for _ in range(2)]
    assert runs[0].indices.tolist() == runs[1].indices.tolist()
    np.testing.assert_array_equal(runs[0].scores, runs[1].scores)
    assert len(set(runs[0].indices.tolist())) == 12
    assert runs[0].indices.dtype == np.int64

    small = select_batch(name, 10, probs=probs[:4], pool_emb=emb[:4], labeled_emb=labeled, seed=5)
    assert sorted(small.indices.tolist()) == [0, 1, 2, 3]
    assert small.scores.shape == (4,)


def test_empty_pool_raises_a_clear_error():
    with pytest.raises(EmptyPoolError, match="no unlabeled images left"):
        select_batch("margin", 5, probs=np.empty((0, 3)), pool_emb=np.empty((0, 8)), labeled_emb=None)
    with pytest.raises(EmptyPoolError):
        select_batch("random", 5, probs=None, pool_emb=np.empty((0, 8)), labeled_emb=None)


def test_unknown_strategy_lists_the_valid_names():
    with pytest.raises(ValueError, match="Unknown query strategy 'bald'") as err:
        select_batch("bald", 5, probs=ROWS, pool_emb=None, labeled_emb=None)
    for name in STRATEGIES:
        assert name in str(err.value)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="at least 1"):
        select_batch("margin", 0, probs=ROWS, pool_emb=None, labeled_emb=None)
    with pytest.raises(ValueError, match="same pool"):
        select_batch("margin", 2, probs=ROWS, pool_emb=np.zeros((3, 2)), labeled_emb=None)
    with pytest.raises(ValueError, match="probs or pool_emb"):
        select_batch("margin", 2, probs=None, pool_emb=None, labeled_emb=None)
    with pytest.raises(ValueError, match="embeddings"):
        select_batch("diversity", 2, probs=ROWS, pool_emb=None, labeled_emb=None)
    with pytest.raises(ValueError, match="width"):
        select_batch("diversity", 2, probs=None, pool_emb=np.zeros((4, 3)), labeled_emb=np.zeros((1, 5)))


@pytest.mark.parametrize("name", [*STRATEGIES, None])
def test_pool_rows_of_a_bigger_float16_matrix_select_like_the_copied_pool(name):
    rng = np.random.default_rng(1)
    everything = rng.normal(size=(400, 300)).astype(np.float16)  # e.g. the project's memory-mapped cache
    pool_rows = np.sort(rng.choice(400, size=250, replace=False))
    labeled = everything[np.setdiff1d(np.arange(400), pool_rows)[:20]]
    probs = None if name is None else rng.dirichlet(np.ones(3), size=250)
    strategy = name or DEFAULT_STRATEGY  # None: no model yet, a cold start
    copied = select_batch(strategy, 9, probs=probs, pool_emb=everything[pool_rows], labeled_emb=labeled, seed=2)
    lazy = select_batch(strategy, 9, probs=probs, pool_emb=everything, pool_rows=pool_rows, labeled_emb=labeled, seed=2)
    assert lazy.strategy == copied.strategy
    assert lazy.indices.tolist() == copied.indices.tolist()
    np.testing.assert_allclose(lazy.scores, copied.scores, rtol=1e-5)


def test_pool_rows_must_be_rows_of_pool_emb():
    with pytest.raises(ValueError, match="rows of pool_emb"):
        select_batch("margin", 2, probs=np.full((2, 2), 0.5), pool_emb=np.zeros((3, 2)), labeled_emb=None,
                     pool_rows=np.array([0, 5]))  # fmt: skip
    with pytest.raises(ValueError, match="same pool"):
        select_batch("margin", 2, probs=np.full((3, 2), 0.5), pool_emb=np.zeros((9, 2)), labeled_emb=None,
                     pool_rows=np.array([0, 1]))  # fmt: skip
