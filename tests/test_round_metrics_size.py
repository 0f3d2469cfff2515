"""Round metrics stay small with many labels, and the status poll reads only the newest round."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from app.core.agreement import Agreement
from app.core.metrics import classification_metrics
from app.core.store import ProjectStore
from app.ui import dashboard
from app.ui.views import status_html
from tests.fakes import FakeSession

MANY = 1000


def many_class_predictions() -> tuple[list[int], list[int]]:
    """300 predictions over 1,000 classes: 3 -> 9 seven times, 5 -> 2 four times, 10 -> 11 twice, 87 single slips."""
    pairs = [(5 * i, 5 * i) for i in range(200)]
    pairs += [(3, 9)] * 7 + [(5, 2)] * 4 + [(10, 11)] * 2
    pairs += [(100 + i, 600 + i) for i in range(87)]
    return [t for t, _ in pairs], [p for _, p in pairs]


def fake_session(store: ProjectStore) -> SimpleNamespace:
    """What `status_html` and `dashboard.build` use of a session, over a real store."""
    progress = {"labeled": 300, "total": 1000, "round": store.current_round(), "batch_done": 0, "batch_size": 0}
    return FakeSession(
        jobs=SimpleNamespace(status=lambda kind: None, start=lambda kind, fn: None),
        store=store,
        rounds=lambda: store.rounds(),
        latest_round=lambda: store.latest_round(),
        current_round=store.current_round,
        count_images=store.count_images,
        label_counts=store.label_counts,
        round_status=lambda: None,
        model=SimpleNamespace(has_model=lambda: False, active=lambda: None),
        agreement=lambda: Agreement((), (), None, 0),
        progress=lambda: progress,
    )


def test_many_classes_store_the_top_confusions_not_the_matrix() -> None:
    names = [f"c{i}" for i in range(MANY)]
    y_true, y_pred = many_class_predictions()

    m = classification_metrics(y_true, y_pred, names)

    assert len(json.dumps(m)) < 20_000
    assert "confusion" not in m
    assert m["n"] == 300
    assert m["accuracy"] == pytest.approx(200 / 300)
    top = m["top_confusions"]
    assert top[:3] == [["c3", "c9", 7], ["c5", "c2", 4], ["c10", "c11", 2]]
    assert 3 < len(top) <= 15
    assert all(count == 1 for _, _, count in top[3:])
    assert m["per_class_accuracy"]["c0"] == 1.0
    assert m["per_class_accuracy"]["c3"] == 0.0
    assert json.loads(json.dumps(m)) == m


def test_few_classes_keep_the_full_matrix_and_the_top_confusions() -> None:
    names = ["a", "b", "c", "d", "e"]
    y_true = [0, 0, 0, 1, 1, 2, 3, 4, 4, 4]
    y_pred = [0, 1, 1, 1, 0, 2, 3, 4, 3, 3]

    m = classification_metrics(y_true, y_pred, names)

    assert m["labels"] == names
    assert m["confusion"] == [
        [1, 2, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 0, 2, 1],
    ]
    assert m["top_confusions"] == [["a", "b", 2], ["e", "d", 2], ["b", "a", 1]]
    assert m["per_class_accuracy"] == pytest.approx({"a": 1 / 3, "b": 1 / 2, "c": 1.0, "d": 1.0, "e": 1 / 3})


def test_latest_round_reads_the_newest_row(store: ProjectStore) -> None:
    assert store.latest_round() is None
    store.add_round(labeled=10, strategy="margin", seconds=0.1, metrics={"accuracy": 0.5})
    store.add_round(labeled=20, strategy="entropy", seconds=0.2, metrics={"accuracy": 0.75})

    last = store.latest_round()

    assert last is not None
    assert (last.number, last.labeled, last.strategy, last.metrics) == (2, 20, "entropy", {"accuracy": 0.75})


def test_status_poll_does_not_read_every_round(store: ProjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"a rather long label name {i}" for i in range(MANY)]
    big = {
        "accuracy": 0.5,
        "accuracy_low": 0.33,
        "accuracy_high": 0.67,
        "audit_n": 30,
        "per_class_accuracy": dict.fromkeys(names, 0.5),
    }
    for number in range(200):
        store.add_round(labeled=10 + number, strategy="margin", seconds=0.1, metrics=big)

    def every_round() -> None:
        raise AssertionError("the status poll read every round")

    monkeypatch.setattr(store, "rounds", every_round)

    text = status_html(fake_session(store))

    assert "round 200 ready (209 labels). Accuracy about 50% (95% range 33%–67%, from 30 random checks)" in text


def test_dashboard_draws_the_most_confused_pairs_for_many_classes(store: ProjectStore) -> None:
    names = [f"c{i}" for i in range(MANY)]
    names[3], names[9] = "<b>x</b>", "dog & cat"
    y_true, y_pred = many_class_predictions()
    store.add_round(labeled=300, strategy="margin", seconds=0.1, metrics=classification_metrics(y_true, y_pred, names))

    html = dashboard.build(fake_session(store)).confusion

    assert len(html) < 10_000
    assert "<b>x</b>" not in html
    assert "<td>&lt;b&gt;x&lt;/b&gt;</td><td>dog &amp; cat</td><td>7</td>" in html
    assert html.index("dog &amp; cat") < html.index("c10")
    assert "300 held-out images" in html


def test_old_rounds_with_a_full_matrix_stay_readable(store: ProjectStore) -> None:
    labels = [f"k{i}" for i in range(40)]
    matrix = [[5 if i == j else 0 for j in range(40)] for i in range(40)]
    matrix[7][8] = 6
    store.add_round(
        labeled=9,
        strategy="margin",
        seconds=0.1,
        metrics={"accuracy": 1.0, "n": 3, "labels": ["p", "q"], "confusion": [[2, 0], [1, 0]]},
    )
    small = dashboard.build(fake_session(store)).confusion
    store.add_round(
        labeled=20, strategy="margin", seconds=0.1, metrics={"accuracy": 0.9, "labels": labels, "confusion": matrix}
    )
    big = dashboard.build(fake_session(store)).confusion

    assert "<th>p</th><td" in small and "<th>q</th><td" in small
    assert "<td>k7</td><td>k8</td><td>6</td>" in big
    assert "<th>k0</th>" not in big
