"""Pseudo-labels, the semi-supervised learner, class-balanced querying and ProbCover on synthetic embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.strategies import select_batch
from app.engine.rounds import RoundData
from benchmarks.le_candidates import class_balanced
from benchmarks.probcover import choose_delta, distances, max_coverage, prob_cover
from benchmarks.semi_supervised import SemiSupervisedFitted, SemiSupervisedLearner, pseudo_labels, spread


def blobs(n_per: int = 40, centers: int = 3, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 10, (centers, dim))
    x = np.concatenate([m + rng.normal(0, 0.5, (n_per, dim)) for m in means]).astype(np.float32)
    return x, np.repeat(np.arange(centers), n_per)


def test_spreading_carries_each_label_through_its_cluster() -> None:
    x, y = blobs()
    labeled = np.array([0, 40, 80])
    dist = spread(x, labeled, y[labeled], 3)
    assert dist.shape == (120, 3)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-6)
    assert (dist.argmax(axis=1) == y).mean() == 1.0


def test_pseudo_labels_never_touch_labeled_rows_and_respect_threshold_and_cap() -> None:
    probs = np.array([[0.99, 0.01], [0.98, 0.02], [0.97, 0.03], [0.6, 0.4], [0.01, 0.99], [0.95, 0.05]])
    labeled, y = np.array([0, 4]), np.array([0, 1])
    rows, cls = pseudo_labels(probs, None, labeled, y, threshold=0.9, per_class=2.0)
    assert 0 not in rows and 4 not in rows  # the user's labels win
    assert 3 not in rows  # below the threshold
    assert rows.tolist() == [1, 2] and cls.tolist() == [0, 0]  # at most 2 per label of class 0, most confident first
    # label spreading must agree: row 1 is spread to class 1, so it drops out
    spread_probs = probs.copy()
    spread_probs[1] = [0.1, 0.9]
    rows, _ = pseudo_labels(probs, spread_probs, labeled, y, threshold=0.9, per_class=5.0)
    assert rows.tolist() == [2, 5]


@pytest.mark.parametrize("method", ["spread", "self"])
def test_semi_supervised_learner_trains_on_pseudo_labels_and_says_so(method: str) -> None:
    x, y = blobs(seed=1)
    lab = np.array([0, 1, 40, 41, 80, 81])
    data = RoundData.from_arrays(x, lab, y[lab], num_classes=3, seed=0)
    fitted = SemiSupervisedLearner(method=method, threshold=0.6).fit(data, None, None)
    assert isinstance(fitted, SemiSupervisedFitted)
    assert fitted.probs.shape == (120, 3)
    assert len(fitted.pseudo_ids) > 0 and not set(fitted.pseudo_ids.tolist()) & set(lab.tolist())
    assert len(fitted.pseudo_ids) <= 2.0 * len(lab)
    assert fitted.basis.startswith(f"6 labels + {len(fitted.pseudo_ids)} pseudo-labels")
    assert (fitted.probs.argmax(axis=1) == y).mean() > 0.95


def test_class_balanced_spreads_a_batch_over_predicted_classes() -> None:
    rng = np.random.default_rng(0)
    n_big, n_small = 900, 30
    cls = np.concatenate([np.zeros(n_big, int), np.repeat([1, 2, 3], n_small)])
    top = rng.uniform(0.6, 0.7, len(cls))
    top[:n_big] = rng.uniform(0.5, 0.55, n_big)  # the big class holds every one of the most uncertain images
    probs = np.full((len(cls), 4), 0.0)
    probs[np.arange(len(cls)), cls] = top
    probs[np.arange(len(cls)), (cls + 1) % 4] = 1 - top
    picks = class_balanced(probs, 20)
    assert len(set(picks.tolist())) == 20
    counts = np.bincount(cls[picks], minlength=4)
    assert counts.min() >= 4, counts
    plain = select_batch("margin", 20, probs=probs, pool_emb=None, labeled_emb=None).indices
    assert np.bincount(cls[plain], minlength=4)[0] == 20  # plain margin asks only about the big class


def test_prob_cover_picks_one_point_per_blob_and_skips_covered_blobs() -> None:
    x, y = blobs(n_per=30, centers=4, seed=2)
    picks = prob_cover(x, 4, seed=0, n_clusters=4)
    assert sorted(y[picks].tolist()) == [0, 1, 2, 3]
    covered = prob_cover(x, 3, seed=0, labeled_emb=x[y == 0][:1], n_clusters=4)
    assert 0 not in y[covered].tolist()


def test_delta_and_greedy_coverage_on_a_line() -> None:
    x = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [10.0]], dtype=np.float32)
    d = distances(x, x)
    delta = choose_delta(d, np.array([0, 0, 0, 1, 1, 2]))
    assert 0.1 <= delta < 4.8  # balls stay within a cluster
    assert max_coverage(d, 0.15, 1).tolist() == [1]  # the middle point covers all three of its group
    assert sorted(max_coverage(d, 0.15, 3).tolist()) == [1, 3, 5] or sorted(max_coverage(d, 0.15, 3).tolist()) == [
        1, 4, 5
    ]  # fmt: skip


def test_patches_are_class_folders_of_seeded_crops(tmp_path: Path) -> None:
    from benchmarks.patches import PHOTOS, SKEW_CLASS, is_extra, write_patches

    folder = write_patches(tmp_path / "p", per_class=3, extra=2, size=16)
    files = sorted(folder.glob("*/*.png"))
    assert {f.parent.name for f in files} == set(PHOTOS)
    assert len(files) == 3 * len(PHOTOS) + 2
    assert [f.name for f in files if is_extra(f, per_class=3)] == [f"{SKEW_CLASS}_0003.png", f"{SKEW_CLASS}_0004.png"]
    again = write_patches(tmp_path / "q", per_class=3, extra=2, size=16)
    assert (again / "coffee" / "coffee_0001.png").read_bytes() == (folder / "coffee" / "coffee_0001.png").read_bytes()


def test_benchmark_figures_read_the_mean_curves() -> None:
    from benchmarks.label_efficiency import parse_config
    from benchmarks.le_report import figures

    labels = [20, 40, 60, 80]
    random_curve = np.array([[0.5, 0.6, 0.7, 0.8], [0.5, 0.6, 0.7, 0.8]])
    curve = np.array([[0.5, 0.8, 0.9, 0.95], [0.5, 0.7, 0.9, 0.99]])  # mean .5 .75 .9 .97
    f = figures(labels, curve, random_curve, full=1.0, pool=1000, at=80)
    assert f["ratio"] == pytest.approx((40 + 20 * (0.8 - 0.75) / (0.9 - 0.75)) / 80)
    assert f["worst"] == pytest.approx(0.15)  # the smallest gap at >= 40 labels, above random
    assert f["to95"] == pytest.approx(60 + 20 * (0.95 - 0.9) / (0.97 - 0.9))
    assert f["to99"] is None and f["to99_pool"] is None
    assert f["to95_pool"] == pytest.approx(f["to95"] / 1000)
    assert parse_config("margin_diverse@semi+cold") == ("margin_diverse", "semi", "typiclust")
    assert parse_config("random") == ("random", "head", "random")
    with pytest.raises(ValueError):
        parse_config("margin+nonsense")
