"""The honest numbers of a round: audit labels, cross-fitting, calibration and the stop advice."""

from __future__ import annotations

import numpy as np
import pytest

import lit_models.train as train
from app.engine import evaluation
from app.engine.learners import HeadLearner
from app.engine.rounds import RoundData, run


def blobs(n: int, classes: int = 3, dims: int = 16, seed: int = 0, spread: float = 5.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dims)) * spread
    y = np.arange(n) % classes
    return (centers[y] + rng.normal(size=(n, dims))).astype(np.float32), y


def test_audit_images_never_train_the_fold_that_scores_them(monkeypatch):
    x, y = blobs(60)
    x[:, 0] = np.arange(60)  # each row is recognisable by its first feature
    audit = np.zeros(40, dtype=bool)
    audit[::4] = True
    rows = np.arange(40)
    fits: list[set[int]] = []
    scored: list[set[int]] = []
    real_train, real_predict = train.train_head, train.predict_proba

    def spy_train(xs, *args, **kwargs):
        fits.append(set(xs[:, 0].astype(int).tolist()))
        return real_train(xs, *args, **kwargs)

    def spy_predict(head, xs, *args, **kwargs):
        scored.append(set(xs[:, 0].astype(int).tolist()))
        return real_predict(head, xs, *args, **kwargs)

    monkeypatch.setattr(evaluation, "train_head", spy_train)
    monkeypatch.setattr(evaluation, "predict_proba", spy_predict)
    oof = evaluation.cross_fit(x, rows, y[:40], audit, 3, max_epochs=2)

    assert oof.shape == (10, 3) and np.allclose(oof.sum(axis=1), 1, atol=1e-5)
    assert len(fits) == 5 and set().union(*scored) == set(np.flatnonzero(audit).tolist())
    for trained_on, held in zip(fits, scored, strict=True):
        assert not trained_on & held  # the fold's audit images are not in its training set
        assert trained_on | held == set(range(40))  # everything else is: the strategy picks and other folds


def test_too_few_random_checks_say_so_in_plain_words():
    x, y = blobs(50)
    audit = np.zeros(30, dtype=bool)
    audit[:4] = True
    data = RoundData.from_arrays(x, np.arange(30), y[:30], num_classes=3, seed=0, audit=audit)
    result = run(data, HeadLearner(max_epochs=2), strategy="margin", k=5, evaluate=evaluation.evaluate)
    m = result.metrics
    assert m["accuracy"] is None and m["audit_n"] == 4
    assert m["note"] == "Not enough random checks yet to measure accuracy honestly (4 of 5)."
    assert m["advice"]["stop"] is False and m["advice"]["text"].startswith("Keep going:")


def test_an_overconfident_head_is_calibrated_and_the_model_it_keeps_carries_the_temperature():
    # labels are 30 % noise: the head fits them and is far too sure; the temperature softens it
    from app.core.calibration import expected_calibration_error

    x, y = blobs(1000, classes=2, dims=8, seed=3, spread=1.5)
    rng = np.random.default_rng(4)
    noisy = np.where(rng.random(1000) < 0.3, 1 - y, y)
    lab, test = np.arange(300), np.arange(300, 1000)
    audit = np.zeros(300, dtype=bool)
    audit[rng.choice(300, 60, replace=False)] = True
    data = RoundData.from_arrays(x, lab, noisy[lab], num_classes=2, seed=0, audit=audit)

    raw = run(data, HeadLearner(), strategy="margin", k=5)  # no evaluation: no calibration
    result = run(data, HeadLearner(), strategy="margin", k=5, evaluate=evaluation.evaluate)

    m = result.metrics
    before = expected_calibration_error(raw.fitted.probs[test], noisy[test])
    after = expected_calibration_error(result.fitted.probs[test], noisy[test])
    assert m["temperature"] > 1.1 and after < before - 0.02
    assert (result.fitted.probs.argmax(axis=1) == raw.fitted.probs.argmax(axis=1)).all()  # same guesses
    assert result.fitted.head.temperature == pytest.approx(m["temperature"])
    assert np.allclose(train.predict_proba(result.fitted.head, x[test]), result.fitted.probs[test], atol=1e-4)


@pytest.mark.slow
def test_the_estimate_matches_accuracy_on_a_random_set_within_its_interval_on_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = (digits.data / 16.0).astype(np.float32), digits.target
    covered, gaps = 0, []
    for seed in range(8):
        order = np.random.default_rng(seed).permutation(len(y))
        test, pool = order[:500], order[500:]
        audit = np.arange(150) < 60  # 60 drawn at random from the pool; the other 90 stand in for strategy picks
        data = RoundData.from_arrays(x[pool], np.arange(150), y[pool[:150]], num_classes=10, seed=seed, audit=audit)

        m = run(data, HeadLearner(), strategy="margin", k=10, evaluate=evaluation.evaluate).metrics

        head = train.train_head(x[pool[:150]], y[pool[:150]], 10, seed=seed)  # the model the user exports
        true = float((train.predict_proba(head, x[test]).argmax(axis=1) == y[test]).mean())
        assert m["audit_n"] == 60 and m["validation"] == "cross-fitted on 60 random checks"
        assert sum(c["n"] for c in m["per_class"].values()) == 60
        covered += m["accuracy_low"] <= true <= m["accuracy_high"]
        gaps.append(m["accuracy"] - true)
    assert covered >= 6  # a 95 % interval misses about 1 draw in 20
    assert abs(np.mean(gaps)) < 0.04  # no bias beyond a few points


def _settled_round(monkeypatch, kappa: float, audit_every: int = 5):
    """A round whose stop set agreed `kappa` with each of the last rounds'; one label in `audit_every` audited."""
    x, y = blobs(400, classes=4)
    audit = np.zeros(300, dtype=bool)
    audit[::audit_every] = True
    history = tuple({"labeled": 200 + 20 * i, "agreement": kappa} for i in range(3))
    data = RoundData.from_arrays(x, np.arange(300), y[:300], num_classes=4, seed=0, audit=audit, history=history)
    monkeypatch.setattr(evaluation, "_stability", lambda data, fitted, labeled: {"agreement": kappa})
    return run(data, HeadLearner(max_epochs=5), strategy="margin", k=5, evaluate=evaluation.evaluate).metrics


def test_the_random_checks_say_what_more_labels_add(monkeypatch):
    sizes: list[int] = []
    real = evaluation.train_head
    monkeypatch.setattr(evaluation, "train_head", lambda xs, *a, **k: sizes.append(len(xs)) or real(xs, *a, **k))
    settled = _settled_round(monkeypatch, 0.999)
    # 60 checks in 5 folds of 12; the gain's two heads train without the checks, one also without 60 of the 240
    # other labels (a quarter)
    assert sizes == [288] * 5 + [240, 180]
    advice = settled["advice"]
    assert advice["gain_100"] is not None and advice["gain_low"] is not None
    assert advice["stop"] and "100 more labels add about" in advice["text"]  # well separated blobs: nothing to gain

    sizes.clear()
    changing = _settled_round(monkeypatch, 0.9)
    assert sizes == [288] * 5 + [240, 180]  # guesses still change: the advice still says what more labels add
    assert changing["advice"]["gain_100"] is not None and not changing["advice"]["stop"]
    assert changing["advice"]["text"].startswith("Keep going: its guesses still change")
    assert "100 more labels add about" in changing["advice"]["text"]

    sizes.clear()
    few = _settled_round(monkeypatch, 0.999, audit_every=20)  # 15 random checks: too few to measure a gain
    assert sizes == [297] * 5 and few["advice"]["gain_100"] is None and not few["advice"]["stop"]
