"""The pure pieces behind the numbers a user trusts: intervals, audit picks, calibration, the stop rule."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.audit import AUDIT, audit_count, audit_estimate, draw_audit, place_audit, wilson_interval
from app.core.calibration import expected_calibration_error, fit_temperature, not_sure, tempered
from app.core.stopping import advise, agreement, cohen_kappa, paired_gain, reference, stop_set, window_kappa
from app.engine.rounds import RoundData, picks


def test_wilson_interval_values():
    # reference values (e.g. statsmodels proportion_confint(method="wilson"))
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(45, 50) == pytest.approx((0.7864, 0.9565), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_the_estimate_per_class_carries_its_interval_and_count():
    est = audit_estimate([0, 0, 0, 1, 1], [0, 0, 1, 1, 1], ["cat", "dog", "fox"])
    assert est["accuracy"] == pytest.approx(0.8) and est["audit_n"] == 5
    assert (est["accuracy_low"], est["accuracy_high"]) == pytest.approx(wilson_interval(4, 5))
    assert est["per_class"]["cat"]["n"] == 3 and est["per_class"]["cat"]["accuracy"] == pytest.approx(2 / 3)
    assert est["per_class"]["dog"]["low"] == pytest.approx(wilson_interval(2, 2)[0])
    assert "fox" not in est["per_class"]


def test_audit_share_of_a_batch():
    assert audit_count(10, 0.1, has_model=True) == 1
    assert audit_count(20, 0.1, has_model=True) == 2
    assert audit_count(4, 0.1, has_model=True) == 1  # at least one once a model exists
    assert audit_count(4, 0.1, has_model=False) == 0
    assert audit_count(10, 0.0, has_model=True) == 0
    assert audit_count(2, 0.5, has_model=True) == 1  # never the whole batch


def test_audit_picks_stay_in_the_batch_and_are_drawn_uniformly():
    order = place_audit(["s1", "s2", "s3", "s4", "s5", "s6"], ["a1", "a2"], 5)
    assert order[:5].count("a1") + order[:5].count("a2") == 2 and order[5:] == ["s4", "s5", "s6"]
    counts = np.bincount(np.concatenate([draw_audit(10, 3, seed) for seed in range(3000)]), minlength=10)
    assert counts.min() > 800 and counts.max() < 1000  # each of 10 positions about 900 times in 9000 draws


def test_a_round_batch_has_its_share_of_random_checks_from_the_pool():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    data = RoundData.from_arrays(x, np.arange(20), np.arange(20) % 2, num_classes=2, seed=3)
    probs = np.tile([0.6, 0.4], (200, 1)).astype(np.float32)
    fitted = type("F", (), {"probs": probs, "cache": None})()
    selection, chosen = picks(data, fitted, "margin", 20, audit_share=0.1, size=10)
    assert len(chosen) == 20 and len({c[0] for c in chosen}) == 20
    assert [c[1] for c in chosen[:10]].count(AUDIT) == 1 and AUDIT not in [c[1] for c in chosen[10:]]
    assert all(c[0] >= 20 for c in chosen)  # from the unlabeled pool only
    assert len(selection.indices) == 19


def test_temperature_and_calibration_error():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=2000)
    logits = rng.normal(size=(2000, 3))
    logits[np.arange(2000), y] += 1.0
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    sharp = tempered(truth, 1 / 3)  # three times over-confident
    assert expected_calibration_error(sharp, y) > 0.15
    t = fit_temperature(sharp, y)
    assert t == pytest.approx(3.0, rel=0.15)
    assert expected_calibration_error(tempered(sharp, t), y) < 0.04
    assert fit_temperature(sharp[:0], y[:0]) == 1.0
    assert 0.3 < fit_temperature(np.array([[0.9, 0.1]] * 3), [0, 0, 0]) < 1.0  # all right: sharper, but bounded


def test_not_sure_means_no_better_than_chance():
    assert not_sure([0.3, 0.25, 0.25, 0.2])  # 4 labels: chance is 0.25
    assert not not_sure([0.5, 0.2, 0.2, 0.1])
    assert not_sure([0.65, 0.35]) and not not_sure([0.75, 0.25])


def test_kappa_and_the_stop_set():
    assert cohen_kappa([0, 1, 0, 1], [0, 1, 0, 1], 2) == 1.0
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0], 2) == pytest.approx(-1.0)
    assert cohen_kappa([0, 0, 1, 1], [0, 1, 0, 1], 2) == pytest.approx(0.0)
    ids = np.arange(1000, 3000)
    first = set(ids[stop_set(ids, size=100)].tolist())
    more = np.concatenate([ids, np.arange(5000, 5020)])
    assert len(first) == 100 and len(first & set(more[stop_set(more, size=100)].tolist())) >= 95  # stays fixed
    kappa, n = agreement({"ids": [1, 2, 3, 4], "pred": [0, 1, 0, 1]}, [2, 3, 4, 5], [1, 0, 0, 1], {3, 4, 5}, 2)
    assert n == 2 and kappa == pytest.approx(0.0)  # only images unlabeled now and predicted both times
    kappa, n = agreement({"ids": [1, 2, 3], "pred": [0, 1, 1]}, [1, 2, 3], [0, 1, 0], None, 2)
    assert n == 3 and kappa < 1.0  # the whole stop set: an image labeled since still counts when its guess changed


def test_the_stop_rule_needs_a_window_of_settled_rounds_and_no_clear_gain():
    flat = paired_gain([True] * 30, [True] * 30, 100)
    assert flat == {"gain": 0.0, "low": 0.0, "n": 30}
    labels = [40, 120, 140, 160]  # the window: the rounds of the last 100 labels, here the last three
    assert advise([None, 0.995, 0.995], labels[:3], flat, 30)["stop"] is False  # two rounds: window not full
    assert advise([0.999, 0.999, 0.98, 0.985], labels, flat, 30)["stop"] is False  # mean of the window < 0.99
    assert advise([0.9, 0.995, 0.993, 0.999], [100, 120, 140, 160], flat, 30)["stop"] is False  # 0.9 is in it
    done = advise([0.9, 0.995, 0.993, 0.999], labels, flat, 30)
    assert done["stop"] and done["text"].startswith("You can stop:") and "about 0 points" in done["text"]
    # 100 labels more turned 8 of 30 checks from wrong to right and none the other way: clearly rising
    rising = paired_gain([True] * 30, [False] * 8 + [True] * 22, 100)
    assert rising["gain"] == pytest.approx(8 / 30) and rising["low"] > 0.1
    kept = advise([0.995] * 4, labels, rising, 30)
    assert not kept["stop"] and "still clearly rising" in kept["text"] and "about 27 points" in kept["text"]
    # one check of 30 gained, one lost: no clear gain, so the settled guesses decide
    mixed = paired_gain([True, False] + [True] * 28, [False, True] + [True] * 28, 100)
    assert mixed["gain"] == 0.0 and mixed["low"] < 0 and advise([0.995] * 4, labels, mixed, 30)["stop"]
    assert advise([0.995] * 4, labels, flat, 10)["stop"] is False  # too few random checks
    assert advise([0.995] * 4, labels, None, 30)["stop"] is False  # gain not measured
    assert paired_gain([True], [False], 25)["gain"] == pytest.approx(4.0)  # per 100 labels, from 25 left out


def test_the_window_and_the_models_compared_are_counted_in_labels_not_rounds():
    # batches of 10: a model is compared with the one 20 labels older, and the window spans ten rounds
    labels = list(range(100, 200, 10))
    assert reference(labels, 200) == labels.index(180) and reference(labels, 115) is None
    assert window_kappa([0.995] * 10, labels) == pytest.approx(0.995)
    later = list(range(100, 210, 10))
    assert window_kappa([0.95] + [0.995] * 10, later) == pytest.approx(0.995)  # 100 labels back: outside
    assert window_kappa([0.995] * 8 + [0.95, 0.95], labels) < 0.99
    assert window_kappa([0.995, 0.995], [180, 190]) is None  # fewer than three rounds
    assert window_kappa([0.9, 0.995, 0.995, 0.996], [50, 100, 150, 200]) == pytest.approx(0.9953, abs=1e-4)  # big
    # batches: 100 labels hold fewer than three rounds, so the window is the last three


def test_few_random_checks_are_scored_leave_one_out(monkeypatch):
    from app.engine import evaluation

    sizes = []
    real = evaluation.train_head

    def counting(x, y, num_classes, **kw):
        sizes.append(len(y))
        return real(x, y, num_classes, **kw)

    monkeypatch.setattr(evaluation, "train_head", counting)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = np.arange(30) % 2
    audit = np.zeros(30, dtype=bool)
    audit[:8] = True  # fewer than LEAVE_ONE_OUT_BELOW (more than FOLDS): each is held out alone
    oof = evaluation.cross_fit(x, np.arange(30), y, audit, 2, max_epochs=2)
    assert evaluation.FOLDS < 8 < evaluation.LEAVE_ONE_OUT_BELOW
    assert oof.shape == (8, 2) and sizes == [29] * 8
    sizes.clear()
    audit[:] = True  # 30 random checks: FOLDS folds
    evaluation.cross_fit(x, np.arange(30), y, audit, 2, max_epochs=2)
    assert len(sizes) == evaluation.FOLDS and set(sizes) == {30 - 30 // evaluation.FOLDS}


def test_a_fine_tuned_model_carries_the_caveat_of_what_was_measured():
    from app.engine.evaluation import FINETUNE_CAVEAT, evaluate
    from app.ui.views import estimate_text

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4)).astype(np.float32)
    y = (x[:40, 0] > 0).astype(int)
    audit = np.arange(40) % 4 == 0  # 10 random checks
    data = RoundData.from_arrays(x, np.arange(40), y, num_classes=2, seed=0, audit=audit)
    probs = np.tile([0.6, 0.4], (80, 1)).astype(np.float32)
    for tuned in (False, True):
        fitted = type("F", (), {"probs": probs, "ids": data.ids, "finetuned": tuned})()
        text = estimate_text(evaluate(data, fitted, max_epochs=2))
        assert text.startswith("Accuracy about") and (FINETUNE_CAVEAT in text) is tuned


def test_the_guess_panel_shows_no_percentages_before_it_is_calibrated():
    from app.ui.views import NOT_SURE, shown_guess

    guess = {"cat": 0.97, "dog": 0.02, "fox": 0.01}
    value, line = shown_guess(guess, {"audit_n": 2, "accuracy": None})
    assert value == "cat" and "without a percentage" in line and "(2 so far)" in line
    value, line = shown_guess(guess, {})  # no round yet (an imported model's own guess)
    assert value == "cat" and "(0 so far)" in line
    assert shown_guess(guess, {"audit_n": 8, "ece": 0.04}) == (guess, "")
    unsure = {"cat": 0.4, "dog": 0.35, "fox": 0.25}
    assert shown_guess(unsure, {"audit_n": 8, "ece": 0.04}) == (unsure, NOT_SURE)
    assert shown_guess(unsure, {}) == ("cat", NOT_SURE)
    assert shown_guess(None, {}) == (None, "")


def _blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 16)) * 5.0
    y = np.arange(n) % 3
    return (centers[y] + rng.normal(size=(n, 16))).astype(np.float32), y


@pytest.mark.parametrize("batch", [10, 20, 50])
def test_the_stop_advice_fires_on_an_easy_pool_whatever_the_batch_size(batch: int) -> None:
    from app.engine.simulate import run_curve

    x, y = _blobs(1200)
    x_test, y_test = _blobs(300, seed=1)
    curve = run_curve(
        x, y, x_test, y_test, num_classes=3, strategy="margin", initial_rows=np.arange(30), batch=batch,
        budget=30 + max(160, 4 * batch), seed=0, max_epochs=5, trust=True, audit_share=0.3,
        initial_audit=np.arange(30) < 10,
    )  # fmt: skip
    agreements = [a["agreement"] for a in curve.advice]
    assert agreements[0] is None and all(a is not None for a in agreements[2:])  # each round has a model to compare
    assert curve.stop_at is not None, curve.advice  # well separated blobs: the guesses settle at once
