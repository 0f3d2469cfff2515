"""What the status line and the dashboard say about the estimate, its range and the stop advice."""

from __future__ import annotations

from types import SimpleNamespace

from app.core.agreement import Agreement
from app.core.store import ProjectStore
from app.ui import dashboard
from app.ui.views import status_html
from tests.fakes import FakeSession

KEEP = "Keep going: its guesses still change from round to round (agreement 0.950; 0.99 means settled)."


def session_over(store: ProjectStore) -> SimpleNamespace:
    """What `status_html` and `dashboard.build` read of a session, over a real store."""
    progress = {"labeled": 60, "total": 500, "round": store.current_round(), "batch_done": 0, "batch_size": 0}
    return FakeSession(
        jobs=SimpleNamespace(status=lambda kind: None, start=lambda kind, fn: None),
        rounds=store.rounds, latest_round=store.latest_round, current_round=store.current_round,
        count_images=store.count_images, label_counts=store.label_counts, round_status=lambda: None,
        model=SimpleNamespace(has_model=lambda: True, active=lambda: None), progress=lambda: progress,
        agreement=lambda: Agreement((), (), None, 0),
    )  # fmt: skip


def test_too_few_random_checks_are_said_in_plain_words_and_draw_no_curve(store: ProjectStore) -> None:
    note = "Not enough random checks yet to measure accuracy honestly (2 of 5)."
    store.add_round(labeled=20, strategy="margin", seconds=0.1, metrics={"accuracy": None, "audit_n": 2, "note": note})
    text = status_html(session_over(store))
    assert "Model of round 1 ready (20 labels). Not enough random checks yet" in text
    board = dashboard.build(session_over(store))
    assert board.curve.empty and "Not enough random checks" in board.confusion and note in board.summary
    assert board.curve_note == "Accuracy: from 5 random checks (2 so far)"


def test_the_estimate_shows_with_its_range_count_and_the_advice(store: ProjectStore) -> None:
    store.ensure_labels(["cat", "dog"])
    old = {"accuracy": 0.5, "val": 4, "validation": "4 held-out labels"}  # recorded before random checks existed
    store.add_round(labeled=40, strategy="margin", seconds=0.1, metrics=old)
    measured = {
        "accuracy": 0.84, "accuracy_low": 0.7, "accuracy_high": 0.92, "audit_n": 12, "n": 12, "ece": 0.03,
        "per_class": {"cat": {"accuracy": 0.8, "low": 0.5, "high": 0.94, "n": 5}},
        "advice": {"stop": False, "text": KEEP}, "confusion": [[4, 1], [1, 6]], "labels": ["cat", "dog"],
    }  # fmt: skip
    store.add_round(labeled=60, strategy="margin", seconds=0.1, metrics=measured)

    text = status_html(session_over(store))
    assert "Accuracy about 84% (95% range 70%–92%, from 12 random checks)." in text and KEEP in text
    board = dashboard.build(session_over(store))
    assert list(board.curve["labeled"]) == [60, 60, 60]  # the held-out round is not mixed into the curve
    assert sorted(board.curve["value"]) == [0.7, 0.84, 0.92] and board.curve_note is None
    assert KEEP in board.summary and "3% away" in board.summary
    assert "random checks" in board.confusion and "50%–94%" in board.confusion
    assert list(board.history["95% range"]) == ["0.70–0.92", ""]
