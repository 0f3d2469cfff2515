"""Shared labeling: a share of each batch is labeled by two different annotators, the rest once, as before."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from app.core.batch_rows import overlap_flags
from app.core.records import MIGRATIONS
from app.core.settings import ProjectSettings
from app.core.store import ProjectStore
from app.engine.demo import write_digits
from app.engine.labeling import Labeling
from app.engine.session import ActiveLearningSession
from tests.test_session import TINY
from tests.test_store import add_images

TABS = {"tab-a": "alice", "tab-b": "bob"}


def _shared_store(tmp_path: Path, overlap: float, n: int = 8) -> tuple[ProjectStore, list[int]]:
    store = ProjectStore(tmp_path / "p")
    store.update_settings(settings=ProjectSettings(overlap=overlap, batch_size=n).to_dict())
    store.ensure_labels(["a", "b"])
    ids = add_images(store, n)
    store.set_batch([(i, "margin", 0.5) for i in ids])
    return store, ids


def _label_everything(store: ProjectStore, tabs: dict[str, str]) -> dict[int, list[str]]:
    """Tabs take turns claiming and labeling until none gets an image; who labeled each image, in order."""
    who: dict[int, list[str]] = defaultdict(list)
    while True:
        handed = False
        for client, annotator in tabs.items():
            item = store.claim_next(client, annotator=annotator)
            if item is not None:
                store.add_annotation(item.image_id, "a", annotator=annotator)
                who[item.image_id].append(annotator)
                handed = True
        if not handed:
            return who


def test_overlap_flags_are_a_stable_share_of_the_batch() -> None:
    ids = list(range(100, 120))
    flags = overlap_flags(ids, 0.25, seed=3)
    assert sum(flags) == 5
    chosen = {i for i, f in zip(ids, flags, strict=True) if f}
    reversed_flags = overlap_flags(ids[::-1], 0.25, seed=3)
    assert {i for i, f in zip(ids[::-1], reversed_flags, strict=True) if f} == chosen  # not by position
    assert sum(overlap_flags(ids, 0.0, seed=3)) == 0 and all(overlap_flags(ids, 1.0, seed=3))
    other_seeds = [{i for i, f in zip(ids, overlap_flags(ids, 0.25, seed=s), strict=True) if f} for s in range(5)]
    assert any(c != chosen for c in other_seeds)  # the seed decides which


def test_overlap_images_reach_two_annotators_and_the_rest_one(tmp_path: Path) -> None:
    store, ids = _shared_store(tmp_path, overlap=0.5)
    overlap = {b.image_id for b in store.batch() if b.overlap}
    assert len(overlap) == 4
    who = _label_everything(store, TABS)
    assert set(who) == set(ids)
    for image_id, annotators in who.items():
        assert len(annotators) == len(set(annotators))  # nobody got the same image twice
        assert sorted(annotators) == (["alice", "bob"] if image_id in overlap else annotators)
        assert len(annotators) == (2 if image_id in overlap else 1)
    assert {b.status for b in store.batch()} == {"labeled"}
    assert len(store.current_labels()) == len(ids)  # each image counts once
    assert len(store.history()) == len(ids) + len(overlap)  # the history keeps both labels
    store.close()


def test_another_tab_of_the_same_annotator_gets_no_second_label(tmp_path: Path) -> None:
    store, ids = _shared_store(tmp_path, overlap=1.0, n=2)
    for _ in ids:
        item = store.claim_next("tab-a", annotator="alice")
        store.add_annotation(item.image_id, "a", annotator="alice")
    assert store.claim_next("tab-a2", annotator="alice") is None
    assert store.claim_next("tab-x") is None  # a tab that does not say who labels gets no second labels
    second = store.claim_next("tab-b", annotator="bob")
    assert second is not None and second.overlap and second.status == "labeled"
    assert store.waiting_second("alice") == [] and set(store.waiting_second("bob")) == set(ids)
    store.close()


def test_without_overlap_every_image_is_labeled_once(tmp_path: Path) -> None:
    store, ids = _shared_store(tmp_path, overlap=0.0)
    assert not any(b.overlap for b in store.batch())
    who = _label_everything(store, TABS)
    assert sorted(who) == sorted(ids)
    assert all(len(a) == 1 for a in who.values())
    assert set(Counter(a[0] for a in who.values())) == {"alice", "bob"}  # the tabs shared the batch
    store.close()


def test_a_second_label_is_handed_out_before_new_images(tmp_path: Path) -> None:
    store, ids = _shared_store(tmp_path, overlap=0.5)
    overlap = [b.image_id for b in store.batch() if b.overlap]
    first = None
    while first not in overlap:  # alice labels until she has labeled an overlap image
        first = store.claim_next("tab-a", annotator="alice").image_id
        store.add_annotation(first, "a", annotator="alice")
    assert store.claim_next("tab-b", annotator="bob").image_id == first
    store.close()


def test_undo_by_the_second_annotator_puts_the_image_back_for_a_second_label(tmp_path: Path) -> None:
    store, _ = _shared_store(tmp_path, overlap=1.0, n=1)
    x = store.claim_next("tab-a", annotator="alice").image_id
    store.add_annotation(x, "a", annotator="alice")
    assert store.claim_next("tab-b", annotator="bob").image_id == x
    store.add_annotation(x, "b", annotator="bob")
    assert store.label_of(x) == "b"  # the newest label is the current one
    assert store.claim_next("tab-c", annotator="carol") is None
    assert store.undo_last("bob").image_id == x
    assert store.label_of(x) == "a" and store.batch()[0].status == "labeled"  # still labeled once
    assert store.claim_next("tab-a", annotator="alice") is None  # never back to the first annotator
    assert store.claim_next("tab-b", annotator="bob").image_id == x  # bob's tab redoes it
    store.close()


def test_undo_by_the_first_annotator_reopens_the_image(tmp_path: Path) -> None:
    store, _ = _shared_store(tmp_path, overlap=1.0, n=1)
    x = store.claim_next("tab-a", annotator="alice").image_id
    store.add_annotation(x, "a", annotator="alice")
    store.undo_last("alice")
    assert store.batch()[0].status == "pending" and store.waiting_second() == []
    assert store.claim_next("tab-a", annotator="alice").image_id == x  # unlabeled again: a first label
    store.close()


def test_skipping_a_second_label_keeps_the_first(tmp_path: Path) -> None:
    store, _ = _shared_store(tmp_path, overlap=1.0, n=1)
    x = store.claim_next("tab-a", annotator="alice").image_id
    store.add_annotation(x, "a", annotator="alice")
    assert store.claim_next("tab-b", annotator="bob").image_id == x
    store.set_batch_status(x, "skipped")
    (row,) = store.batch()
    assert (row.status, row.overlap) == ("labeled", False) and store.label_of(x) == "a"
    assert store.claim_next("tab-c", annotator="carol") is None
    store.close()


def test_a_new_batch_keeps_the_images_waiting_for_a_second_label(tmp_path: Path) -> None:
    store, ids = _shared_store(tmp_path, overlap=1.0, n=4)
    for _ in range(3):
        item = store.claim_next("tab-a", annotator="alice")
        store.add_annotation(item.image_id, "a", annotator="alice")
    waiting = store.waiting_second()
    assert len(waiting) == 3
    assert store.claim_next("tab-a", annotator="alice").image_id == ids[3]  # on alice's screen
    extra = add_images(store, 4, start=100)
    store.set_batch([(i, "margin", 0.5) for i in extra], size=4)
    batch = store.batch()
    # on alice's screen, new (the image on screen counts toward the size of 4), waiting
    assert [b.image_id for b in batch] == [ids[3], *extra[:3], *waiting]
    assert {b.status for b in batch if b.image_id in waiting} == {"labeled"}
    assert store.claim_next("tab-b", annotator="bob").image_id == waiting[0]
    store.close()


def test_waiting_images_kept_by_a_new_batch_are_at_most_a_batch(tmp_path: Path) -> None:
    store, _ = _shared_store(tmp_path, overlap=1.0, n=3)
    store.update_settings(settings=ProjectSettings(overlap=1.0, batch_size=2).to_dict())
    labeled = []
    while (item := store.claim_next("tab-a", annotator="alice")) is not None:
        store.add_annotation(item.image_id, "a", annotator="alice")
        labeled.append(item.image_id)
    store.set_batch([])
    assert [b.image_id for b in store.batch()] == labeled[1:]  # the two most recently labeled
    store.close()


def _labeling(store: ProjectStore, changes: list[int]) -> Labeling:
    return Labeling(
        store,
        extension=list,
        labels_changed=lambda: changes.append(1),
        learn_now=lambda: None,
        lock=threading.Lock(),
    )


def test_a_second_label_starts_no_round(tmp_path: Path) -> None:
    store, _ = _shared_store(tmp_path, overlap=1.0, n=1)
    changes: list[int] = []
    labeling = _labeling(store, changes)
    x = labeling.next_item("tab-a", annotator="alice").image_id
    labeling.label(x, "a", annotator="alice")
    assert changes == [1] and labeling.second_pass(x)
    assert labeling.next_item("tab-b", annotator="bob").image_id == x
    labeling.label(x, "b", annotator="bob")
    assert changes == [1]  # counted labeled at its first label
    assert not labeling.second_pass(x) and store.label_of(x) == "b"
    store.close()


def test_the_next_images_ahead_include_second_labels_first(tmp_path: Path) -> None:
    store, ids = _shared_store(tmp_path, overlap=1.0, n=3)
    labeling = _labeling(store, [])
    assert labeling.next_item("tab-a", annotator="alice").image_id == ids[0]
    labeling.label(ids[0], "a", annotator="alice")
    assert labeling.next_item("tab-b", annotator="bob").image_id == ids[0]
    assert labeling.upcoming(store.batch(), ids[0], "tab-b", 5, annotator="bob") == ids[1:]
    labeling.label(ids[0], "b", annotator="bob")
    assert labeling.next_item("tab-b", annotator="bob").image_id == ids[1]  # the one reserved ahead
    assert labeling.next_item("tab-a", annotator="alice").image_id == ids[2]
    labeling.label(ids[2], "a", annotator="alice")
    assert labeling.upcoming(store.batch(), ids[1], "tab-c", 5) == []  # a tab without a name: no second labels
    assert labeling.upcoming(store.batch(), ids[1], "tab-b", 5, annotator="bob") == [ids[2]]
    assert store.batch()[2].claimed_by == "tab-b"  # reserved for bob's tab
    assert labeling.upcoming(store.batch(), None, "tab-c", 5, annotator="carol") == []
    labeling.label(ids[1], "b", annotator="bob")
    assert labeling.next_item("tab-b", annotator="bob").image_id == ids[2]
    store.close()


def test_undo_gives_the_image_back_to_the_tab_that_undid(tmp_path: Path) -> None:
    store, ids = _shared_store(tmp_path, overlap=1.0, n=2)
    labeling = _labeling(store, [])
    x = labeling.next_item("tab-a", annotator="alice").image_id
    labeling.label(x, "a", annotator="alice")
    assert labeling.undo("alice", client="tab-a").image_id == x
    assert labeling.next_item("tab-b", annotator="bob").image_id != x  # it is on alice's screen again
    assert labeling.next_item("tab-a", annotator="alice").image_id == x
    store.close()


def test_the_overlap_setting_is_checked() -> None:
    assert ProjectSettings().overlap == 0.0
    assert ProjectSettings(overlap=1.0).overlap == 1.0
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="overlap"):
            ProjectSettings(overlap=bad)


def test_an_older_project_gains_the_overlap_column(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / ProjectStore.DB_NAME)
    for statement in filter(str.strip, MIGRATIONS[0].split(";")):
        conn.execute(statement)
    conn.execute("INSERT INTO images VALUES (1, 'h', 'images/h.png', 'h.png', 'x', 1, 8, 8, 0)")
    conn.execute("INSERT INTO batch (position, image_id, strategy) VALUES (0, 1, 'random')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = ProjectStore(root, create=False)
    (row,) = store.batch()
    assert (row.image_id, row.status, row.overlap) == (1, "pending", False)
    assert store.claim_next("tab", annotator="alice").image_id == 1
    store.close()


@pytest.fixture
def shared_project(tmp_path):
    from sklearn.datasets import load_digits

    paths = write_digits(tmp_path / "imgs", size=32, limit=24)
    truth = {p.name: str(load_digits().target[i]) for i, p in enumerate(paths)}
    settings = TINY.replace(batch_size=8, overlap=0.5)
    session = ActiveLearningSession.create(tmp_path / "projects", "shared", [str(d) for d in range(10)], settings)
    session.add_data(paths)
    yield session, truth
    session.close()


@pytest.mark.slow
def test_two_annotators_label_a_shared_project_through_rounds(shared_project) -> None:
    session, truth = shared_project
    session.ensure_batch()
    first_batch = {b.image_id for b in session.batch()}
    wanted: dict[int, bool] = {}
    who: dict[int, list[str]] = defaultdict(list)
    idle = 0
    while idle < 2:  # until two passes in a row, each after the round ended, hand out nothing
        handed = False
        for client, annotator in TABS.items():
            item = session.next_item(client, annotator=annotator)
            if item is None:
                continue
            wanted[item.image_id] = item.overlap
            second = session.labeling.second_pass(item.image_id)
            assert second == (len(who[item.image_id]) == 1)  # the page can tell a second label from a first
            name = session.image(item.image_id).original_name
            session.label(item.image_id, truth[name], annotator=annotator, seconds=1.0)
            who[item.image_id].append(annotator)
            handed = True
        idle = 0 if handed else idle + 1
        if not handed:
            session.jobs.wait("round", 120)
    assert session.jobs.wait("round", 120).state == "done" and len(session.rounds()) >= 1
    assert set(who) == set(session.store.image_ids())  # every image labeled
    assert first_batch <= set(who)
    for image_id, annotators in who.items():
        assert len(set(annotators)) == len(annotators)  # no annotator saw an image twice
        assert len(annotators) == (2 if wanted[image_id] else 1)
    double = [i for i, a in who.items() if len(a) == 2]
    assert sum(wanted[i] for i in first_batch) == 4 and set(double) >= {i for i in first_batch if wanted[i]}
    assert session.progress()["labeled"] == 24
    agreement = session.agreement()
    assert agreement.shared == len(double) and agreement.kappa == 1.0  # both labeled from the truth
    assert {a.annotator for a in agreement.annotators} == {"alice", "bob"}
    assert all(a.median_seconds == 1.0 and a.labels_per_hour == 3600.0 for a in agreement.annotators)
