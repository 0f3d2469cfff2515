"""Round metrics on tiny hand-computed examples."""

from __future__ import annotations

import json

import pytest

from app.core.metrics import classification_metrics

NAMES = ["cat", "dog", "bird"]


def test_hand_computed_example():
    # true:  cat cat cat dog dog bird
    # pred:  cat cat dog dog cat bird
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 0, 2], NAMES)

    assert m["n"] == 6
    assert m["labels"] == NAMES
    assert m["confusion"] == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # cat: P=2/3 R=2/3 F1=2/3; dog: P=1/2 R=1/2 F1=1/2; bird: F1=1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["per_class_accuracy"] == pytest.approx({"cat": 2 / 3, "dog": 1 / 2, "bird": 1.0})


def test_class_without_true_samples_is_none_and_does_not_drag_macro_f1():
    m = classification_metrics([0, 1, 1], [0, 1, 1], NAMES)

    assert m["per_class_accuracy"] == {"cat": 1.0, "dog": 1.0, "bird": None}
    assert m["macro_f1"] == pytest.approx(1.0)
    assert m["confusion"][2] == [0, 0, 0]


def test_predicted_but_absent_class_counts_in_macro_f1():
    # bird never occurs but is predicted once: its F1 is 0 and it takes part in the average
    m = classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], NAMES)

    assert m["per_class_accuracy"]["bird"] is None
    assert m["per_class_accuracy"]["cat"] == pytest.approx(0.5)
    # cat: P=1 R=1/2 F1=2/3; dog: F1=1; bird: 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["confusion"] == [[1, 0, 1], [0, 2, 0], [0, 0, 0]]


def test_values_are_plain_python_and_json_ready():
    m = classification_metrics([0, 1], [1, 1], ["a", "b"])

    assert type(m["accuracy"]) is float
    assert type(m["n"]) is int
    assert all(type(v) is int for row in m["confusion"] for v in row)
    assert json.loads(json.dumps(m)) == m


def test_empty_evaluation_gives_none_scores():
    m = classification_metrics([], [], ["a", "b"])

    assert m["n"] == 0
    assert m["accuracy"] is None
    assert m["macro_f1"] is None
    assert m["per_class_accuracy"] == {"a": None, "b": None}
    assert m["confusion"] == [[0, 0], [0, 0]]


def test_rejects_mismatched_lengths_and_unknown_class_index():
    with pytest.raises(ValueError, match="must match"):
        classification_metrics([0, 1], [0], ["a", "b"])
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 2], [0, 1], ["a", "b"])
