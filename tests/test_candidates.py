"""Candidates on big pools: a round scores and selects from a seeded random sample of the pool plus the stop set;
smaller pools are scored and selected whole; the rest of the pool's probabilities are filled in after the round."""

from __future__ import annotations

import functools
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from app.core.audit import AUDIT
from app.core.candidates import candidate_positions, scored_rows
from app.core.scoring import margin, top_k
from app.core.settings import ProjectSettings
from app.core.stopping import stop_set
from app.core.strategies import select_batch
from app.engine import model_state, rounds
from app.engine.learners import HeadLearner
from app.engine.model_state import ModelState
from app.engine.pool_scoring import pool_probs
from app.engine.rounds import RoundData, run

N, DIM, CLASSES, LABELED = 3000, 16, 4, 40


def _pool(seed: int = 0, n: int = N) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=n)
    centers = rng.normal(size=(CLASSES, DIM)).astype(np.float32)
    x = (centers[y] + rng.normal(scale=1.5, size=(n, DIM))).astype(np.float16)
    labeled = np.sort(rng.choice(n, size=LABELED, replace=False))
    return x, y, labeled


def _data(seed: int = 0, *, n: int = N, audit: bool = False) -> RoundData:
    x, y, lab = _pool(n=n)
    flags = (np.arange(len(lab)) % 4 == 0) if audit else None
    return RoundData.from_arrays(x, lab, y[lab], num_classes=CLASSES, seed=seed, audit=flags)


def _round(data: RoundData, candidates: int | None, strategy: str = "margin", k: int = 10, **kw):
    evaluate = functools.partial(rounds.evaluate, seed=0)
    return run(data, HeadLearner(), strategy=strategy, k=k, evaluate=evaluate, candidates=candidates, **kw)


def test_candidate_positions_are_a_sorted_seeded_sample_that_rotates():
    assert candidate_positions(100, seed=0, size=100) is None  # a pool no bigger than the sample: all of it
    first = candidate_positions(10_000, seed=3, size=500)
    assert len(first) == 500 and len(np.unique(first)) == 500 and first.min() >= 0 and first.max() < 10_000
    assert np.all(np.diff(first) > 0)
    np.testing.assert_array_equal(first, candidate_positions(10_000, seed=3, size=500))
    following = candidate_positions(10_000, seed=4, size=500)
    assert len(np.intersect1d(first, following)) < 100  # about 25 expected by chance
    with pytest.raises(ValueError):
        candidate_positions(10, seed=0, size=0)


def test_scored_rows_are_the_candidates_rows_and_the_extra_rows_once_each():
    pool = np.array([1, 4, 6, 7, 9])
    np.testing.assert_array_equal(scored_rows(pool, np.array([0, 3]), np.array([7, 2, 1])), [1, 2, 7])


@pytest.mark.parametrize("strategy", ["margin", "margin_diverse", "diversity"])
def test_a_pool_up_to_the_threshold_is_scored_and_selected_whole_as_before(strategy):
    data = _data()
    result = _round(data, candidates=len(data.pool_rows), strategy=strategy)  # exactly the threshold: whole pool
    fitted = result.fitted
    assert not fitted.partial
    np.testing.assert_array_equal(fitted.ids, data.ids)
    # what the round did before candidates existed: the strategy on every pool image's probabilities
    want = select_batch(
        strategy, 10, probs=fitted.probs[data.pool_rows], pool_emb=data.x, pool_rows=data.pool_rows,
        labeled_emb=data.x[data.labeled_rows], seed=data.seed, dense=rounds.torch_dense(),
    )  # fmt: skip
    np.testing.assert_array_equal(result.selection.indices, want.indices)


def test_above_the_threshold_the_round_scores_its_candidates_and_the_stop_set_only():
    data = _data(seed=5)
    result = _round(data, candidates=300)
    fitted = result.fitted
    chosen = candidate_positions(len(data.pool_rows), 5, 300)
    stop = stop_set(data.ids)
    assert fitted.partial
    np.testing.assert_array_equal(fitted.ids, np.union1d(data.ids[data.pool_rows[chosen]], data.ids[stop]))
    assert len(fitted.ids) < len(data.ids) // 2
    # the evaluation compared every stop set image's prediction (none of them was left unscored)
    assert result.metrics["stop_set"]["ids"] == data.ids[stop].tolist()
    # and the probabilities kept are the model's own
    head_probs = pool_probs(fitted.head, data.x, rows=np.searchsorted(data.ids, fitted.ids))
    np.testing.assert_allclose(fitted.probs, head_probs, atol=1e-5)


def test_candidate_picks_are_unlabeled_candidates_and_the_top_margins_among_them():
    data = _data(seed=2)
    result = _round(data, candidates=300, k=12)
    chosen = candidate_positions(len(data.pool_rows), 2, 300)
    picked = result.selection.indices
    assert set(picked.tolist()) <= set(chosen.tolist())
    ids = [i for i, _, _ in result.picks]
    assert not set(ids) & set(data.ids[data.labeled_rows].tolist())
    probs = result.fitted.probs_of(data.ids[data.pool_rows[chosen]])
    want = chosen[top_k(margin(probs), 12)]
    np.testing.assert_array_equal(picked, want)


def test_candidate_rounds_are_repeatable_and_rotate_between_rounds():
    a, again, later = (_round(_data(seed=s), candidates=300).fitted for s in (7, 7, 8))
    np.testing.assert_array_equal(a.ids, again.ids)
    np.testing.assert_array_equal(a.probs, again.probs)
    stop_ids = _data().ids[stop_set(_data().ids)]
    fresh_a, fresh_later = np.setdiff1d(a.ids, stop_ids), np.setdiff1d(later.ids, stop_ids)
    assert len(np.intersect1d(fresh_a, fresh_later)) < len(fresh_a) // 2  # another sample in the next round


def test_audit_picks_still_come_from_the_whole_pool_and_strategy_picks_from_the_candidates():
    data = _data(audit=True)
    pool_ids = data.ids[data.pool_rows].tolist()
    outside = 0
    for seed in range(8):  # the audit picks of several rounds: most fall outside the 200 of 2,960 candidates
        d = replace(data, seed=seed)
        result = _round(d, candidates=200, k=10, audit_share=0.3, size=10)
        chosen = set(candidate_positions(len(d.pool_rows), seed, 200).tolist())
        audit = [pool_ids.index(i) for i, s, _ in result.picks if s == AUDIT]
        assert audit
        outside += sum(p not in chosen for p in audit)
        assert set(result.selection.indices.tolist()) <= chosen
    assert outside > 0


def test_model_state_scores_the_rest_of_the_pool_on_demand_and_when_completed(tmp_path):
    data = _data(seed=3)
    fitted = _round(data, candidates=300).fitted
    ids = data.ids.tolist()
    model = ModelState(tmp_path, ProjectSettings(), SimpleNamespace(image_ids=lambda: ids))
    model.cache.add(ids, np.asarray(data.x, dtype=np.float32))
    model.set_current(fitted)
    every = pool_probs(fitted.head, model.cache.matrix(ids))
    unscored = np.setdiff1d(data.ids, fitted.ids)[:5]
    some = [int(unscored[0]), int(fitted.ids[0]), *map(int, unscored[1:])]  # scored on demand, in this order
    np.testing.assert_allclose(model.probs_for(some), every[some], atol=1e-5)
    assert model.fitted.partial  # a few looked up: the pool is not scored for them
    generation = model.generation
    scored_ids, probs = model.scored()  # the review grid's ranking needs every image: scored first
    np.testing.assert_array_equal(scored_ids, data.ids)
    np.testing.assert_allclose(probs, every, atol=1e-5)
    assert not model.fitted.partial and model.generation == generation  # the same model's probabilities
    assert model.complete_probs() is False  # nothing left to score


def _two_partial_models(tmp_path):
    """Two models of rounds that scored only their candidates, and a model state on the first."""
    data = _data(seed=3)
    old, new = (_round(replace(data, seed=s), candidates=300).fitted for s in (3, 4))
    ids = data.ids.tolist()
    model = ModelState(tmp_path, ProjectSettings(), SimpleNamespace(image_ids=lambda: ids))
    model.cache.add(ids, np.asarray(data.x, dtype=np.float32))
    model.set_current(old)
    return old, new, model


def test_completion_of_a_replaced_model_keeps_the_newer_model(tmp_path, monkeypatch):
    old, new, model = _two_partial_models(tmp_path)

    def swap_then_score(head, x, *args, **kw):  # a round finishes while the old model's pool is being scored
        if head is old.head:
            model.set_current(new)
        return pool_probs(head, x, *args, **kw)

    monkeypatch.setattr(model_state, "pool_probs", swap_then_score)
    assert model.complete_probs() is True  # the old model's probabilities dropped, the new model's scored
    assert model.fitted.head is new.head and not model.fitted.partial
    ids = model.cache.ids().tolist()
    np.testing.assert_allclose(model.fitted.probs, pool_probs(new.head, model.cache.matrix(ids)), atol=1e-5)


def test_completion_goes_on_to_a_newer_model_that_came_once_the_old_one_was_scored(tmp_path):
    old, new, model = _two_partial_models(tmp_path)
    real = model._lock

    class NewRoundOnceOldIsWhole:  # a round ends just after the old model's pool was stored
        def __enter__(self):
            real.__enter__()
            current = model._fitted
            if current is not None and current.head is old.head and not current.partial:
                model._fitted = new

        def __exit__(self, *exc):
            return real.__exit__(*exc)

    model._lock = NewRoundOnceOldIsWhole()
    assert model.complete_probs() is True
    model._lock = real
    assert model.fitted.head is new.head and not model.fitted.partial  # the newer model did not stay partial


@pytest.mark.slow
def test_a_session_round_on_a_big_pool_scores_the_rest_in_the_background(tmp_path, monkeypatch):
    from app.engine.demo import write_digits
    from app.engine.session import PROBS_JOB, ActiveLearningSession

    monkeypatch.setattr(rounds, "CANDIDATES", 30)  # "big": more than 30 unlabeled images
    monkeypatch.setattr(rounds, "stop_set", lambda ids: np.arange(5))  # a stop set smaller than the pool
    settings = ProjectSettings(backbone="test_efficientnet", backbone_source="random", image_size=32, batch_size=8)
    session = ActiveLearningSession.create(tmp_path / "projects", "big", [str(d) for d in range(10)], settings)
    try:
        session.add_data(write_digits(tmp_path / "imgs", size=32, limit=80))
        ids = session.store.image_ids()
        for n, item in enumerate(session.ensure_batch()):
            session.store.claim_next("c")
            session.label(item.image_id, str(n % 10), annotator="c")
        status = session.jobs.wait("round", 120)
        assert status.state == "done", status.error
        assert session.store.current_round() == 1
        status = session.jobs.wait(PROBS_JOB, 120)
        assert status is not None and status.state == "done", status
        fitted = session.model.fitted
        assert not fitted.partial
        np.testing.assert_array_equal(np.sort(fitted.ids), np.sort(ids))
        every = pool_probs(fitted.head, session.model.cache.matrix(ids))
        scored_ids, probs = session.model.scored()
        np.testing.assert_allclose(probs[np.argsort(scored_ids)], every[np.argsort(ids)], atol=1e-5)
        assert session.predictions(ids[-1]) is not None
    finally:
        session.close()
