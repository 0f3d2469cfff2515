"""Agreement and speed of annotators from the annotation history, checked against hand-computed values."""

from __future__ import annotations

import math
from itertools import count

import pytest

from app.core.agreement import Agreement, compute_agreement, kappa
from app.core.records import Annotation
from app.core.store import ProjectStore
from tests.test_store import add_images


def _history(rows: list[tuple]) -> list[Annotation]:
    """(image_id, label, annotator, seconds[, undone]) rows -> annotations in that order."""
    ids = count(1)
    return [
        Annotation(next(ids), r[0], r[1], r[2], 0.0, 0, None, None, r[3], bool(r[4]) if len(r) > 4 else False)
        for r in rows
    ]


def _by_name(result: Agreement) -> dict:
    return {a.annotator: a for a in result.annotators}


# alice labels images 1-4, then bob (who relabels image 2 and takes back image 5), then carol labels 1 and 3.
HISTORY = _history(
    [
        (1, "cat", "alice", 2.0),
        (2, "cat", "alice", 4.0),
        (3, "dog", "alice", 6.0),
        (4, "dog", "alice", 8.0),
        (1, "cat", "bob", 1.0),
        (2, "cat", "bob", 1.0),
        (2, "dog", "bob", 3.0),  # bob's newest label of image 2 counts
        (3, "dog", "bob", None),
        (4, "dog", "bob", 2.0),
        (5, "cat", "bob", 9.0, True),  # undone: not a label
        (1, "cat", "carol", None),
        (3, "dog", "carol", None),
    ]
)


def test_pair_kappas_match_hand_computed_values() -> None:
    pairs = {(p.first, p.second): p for p in compute_agreement(HISTORY).pairs}
    assert set(pairs) == {("alice", "bob"), ("alice", "carol"), ("bob", "carol")}
    # alice cat cat dog dog / bob cat dog dog dog: observed 3/4, chance 1/2 -> (3/4 - 1/2) / (1/2)
    ab = pairs[("alice", "bob")]
    assert (ab.shared, ab.agreed) == (4, 3) and ab.kappa == pytest.approx(0.5)
    ac = pairs[("alice", "carol")]
    assert (ac.shared, ac.agreed) == (2, 2) and ac.kappa == pytest.approx(1.0)


def test_each_annotator_against_everyone_else() -> None:
    stats = _by_name(compute_agreement(HISTORY))
    # alice: cat cat cat dog dog dog against cat cat dog dog dog dog: observed 5/6, chance 1/2
    assert stats["alice"].kappa == pytest.approx(2 / 3) and stats["alice"].shared == 4
    # carol: cat dog against alice and bob: cat cat dog dog on both sides
    assert stats["carol"].kappa == pytest.approx(1.0) and stats["carol"].shared == 2


def test_the_overall_figure_compares_earlier_with_later_labels() -> None:
    result = compute_agreement(HISTORY)
    # earlier: cat x4 dog x4, later: cat x3 dog x5 over the 8 pairs of images 1-4: observed 7/8, chance 1/2
    assert result.kappa == pytest.approx(0.75)
    assert result.shared == 4  # image 5 was labeled once and taken back


def test_labels_and_speed_per_annotator() -> None:
    stats = _by_name(compute_agreement(HISTORY))
    assert (stats["alice"].labels, stats["alice"].images) == (4, 4)
    assert stats["alice"].median_seconds == pytest.approx(5.0)
    assert stats["alice"].labels_per_hour == pytest.approx(3600 * 4 / 20)
    assert (stats["bob"].labels, stats["bob"].images) == (5, 4)  # the relabel counts, the undone label does not
    assert stats["bob"].median_seconds == pytest.approx(1.5)  # 1, 1, 3, 2: the label without a time is left out
    assert stats["bob"].labels_per_hour == pytest.approx(3600 * 4 / 7)
    assert stats["carol"].median_seconds is None and stats["carol"].labels_per_hour is None


def test_kappa_is_none_when_it_says_nothing() -> None:
    one_shared = _history([(1, "cat", "a", 1.0), (1, "dog", "b", 1.0), (2, "cat", "a", 1.0)])
    result = compute_agreement(one_shared)
    assert result.shared == 1 and result.kappa is None
    assert result.pairs[0].kappa is None and _by_name(result)["a"].kappa is None
    same_label = _history([(i, "cat", who, 1.0) for who in ("a", "b") for i in (1, 2, 3)])
    result = compute_agreement(same_label)
    assert result.shared == 3 and result.kappa is None and result.pairs[0].agreed == 3  # chance explains it all
    assert kappa(["cat", "cat"], ["dog", "dog"]) == 0.0  # defined: no agreement at all
    empty = compute_agreement([])
    assert (empty.annotators, empty.pairs, empty.kappa, empty.shared) == ((), (), None, 0)
    for value in (result.kappa, *(a.kappa for a in result.annotators), *(p.kappa for p in result.pairs)):
        assert value is None or not math.isnan(value)


def test_a_lone_annotator_shares_no_images() -> None:
    result = compute_agreement(_history([(1, "cat", "a", 2.0), (2, "dog", "a", 4.0)]))
    assert result.pairs == () and result.kappa is None
    (alone,) = result.annotators
    assert (alone.labels, alone.shared, alone.kappa, alone.median_seconds) == (2, 0, None, 3.0)


def test_agreement_from_a_real_store_history(store: ProjectStore) -> None:
    store.ensure_labels(["cat", "dog"])
    ids = add_images(store, 3)
    for image_id, (a, b) in zip(ids, [("cat", "cat"), ("dog", "dog"), ("cat", "dog")], strict=True):
        store.add_annotation(image_id, a, annotator="alice", seconds=2.0)
        store.add_annotation(image_id, b, annotator="bob", seconds=4.0)
    store.add_annotation(ids[2], "cat", annotator="bob", seconds=4.0)
    assert store.undo_last("bob").label == "cat"  # bob's "dog" of the third image stands again
    result = compute_agreement(store.history())
    # alice cat dog cat / bob cat dog dog: observed 2/3, chance 4/9 -> (2/3 - 4/9) / (5/9) = 0.4
    assert result.shared == 3 and result.kappa == pytest.approx(0.4)
    assert _by_name(result)["bob"].labels == 3 and _by_name(result)["bob"].labels_per_hour == pytest.approx(900.0)
