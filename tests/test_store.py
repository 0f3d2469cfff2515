"""ProjectStore: labels, images, annotation history, rounds, batch claims, persistence and concurrency."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from app.core.errors import LabelInUseError, StoreError
from app.core.store import SCHEMA_VERSION, BatchItem, ProjectStore

REPO_ROOT = Path(__file__).resolve().parents[1]


def sha(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def add_images(store: ProjectStore, n: int, start: int = 0) -> list[int]:
    ids = []
    for i in range(start, start + n):
        image_id = store.add_image(
            sha256=sha(i),
            path=f"images/{sha(i)[:2]}/{sha(i)}.png",
            original_name=f"img{i}.png",
            source=f"/data/img{i}.png",
            size_bytes=100 + i,
            width=32,
            height=24,
        )
        assert image_id is not None
        ids.append(image_id)
    return ids


# ------------------------------------------------------------------------------------------------- opening


def test_new_project_uses_wal_and_current_schema_version(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "new" / "proj")
    assert store.root == (tmp_path / "new" / "proj").resolve()
    db = store.root / ProjectStore.DB_NAME
    assert db.is_file()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"settings", "labels", "images", "annotations", "rounds", "batch"} <= tables
    conn.close()
    store.close()


def test_missing_project_without_create_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="No project found"):
        ProjectStore(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()


def test_project_from_a_newer_app_is_refused(tmp_path: Path) -> None:
    ProjectStore(tmp_path).close()
    conn = sqlite3.connect(tmp_path / ProjectStore.DB_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer version"):
        ProjectStore(tmp_path)


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.labels()


def test_foreign_keys_are_enforced(store: ProjectStore) -> None:
    with pytest.raises(StoreError, match="not in this project"):
        store.set_batch([(12345, "random", None)])
    assert store.batch() == []


# ------------------------------------------------------------------------------------------------- settings


def test_settings_round_trip_json_values(store: ProjectStore) -> None:
    assert store.settings() == {}
    assert store.get_setting("missing", 7) == 7
    store.update_settings(backbone={"arch": "x", "size": 224}, batch_size=8, classes=["a", "b"], flag=None)
    store.update_settings(batch_size=16)
    assert store.get_setting("batch_size") == 16
    assert store.get_setting("flag", "default") is None
    assert store.settings() == {
        "backbone": {"arch": "x", "size": 224},
        "batch_size": 16,
        "classes": ["a", "b"],
        "flag": None,
    }
    with pytest.raises(StoreError, match="not plain data"):
        store.update_settings(bad=object())
    assert "bad" not in store.settings()


# ------------------------------------------------------------------------------------------------- labels


def test_labels_keep_insertion_order_and_stay_distinct(store: ProjectStore) -> None:
    for name in ["1", "2", "10", "b", "a", "B"]:
        store.add_label(name)
    assert store.labels() == ["1", "2", "10", "b", "a", "B"]
    store.add_label("  cat  ")
    assert store.labels()[-1] == "cat"


def test_add_label_rejects_duplicates_and_empty_names(store: ProjectStore) -> None:
    store.add_label("cat")
    with pytest.raises(StoreError) as info:
        store.add_label(" cat ")
    assert str(info.value) == "The label 'cat' already exists."
    with pytest.raises(StoreError, match="cannot be empty"):
        store.add_label("   ")
    assert store.labels() == ["cat"]


def test_ensure_labels_adds_only_missing_in_order(store: ProjectStore) -> None:
    store.add_label("dog")
    assert store.ensure_labels(["cat", "dog", "10", "cat", "2"]) == ["cat", "10", "2"]
    assert store.ensure_labels(["dog", "cat"]) == []
    assert store.labels() == ["dog", "cat", "10", "2"]


def test_rename_label_keeps_annotations_and_position(store: ProjectStore) -> None:
    store.ensure_labels(["cat", "dog"])
    (image,) = add_images(store, 1)
    store.add_annotation(image, "cat")
    store.rename_label("cat", " kitten ")
    assert store.labels() == ["kitten", "dog"]
    assert store.label_of(image) == "kitten"
    assert [a.label for a in store.history(image)] == ["kitten"]
    store.rename_label("kitten", "kitten")  # no-op
    with pytest.raises(StoreError, match="already exists"):
        store.rename_label("kitten", "dog")
    with pytest.raises(StoreError, match="does not exist"):
        store.rename_label("cow", "bull")


def test_merge_labels_moves_annotations_and_removes_source(store: ProjectStore) -> None:
    store.ensure_labels(["cat", "kitty", "dog"])
    a, b, c = add_images(store, 3)
    store.add_annotation(a, "cat")
    store.add_annotation(b, "kitty")
    store.add_annotation(c, "dog")
    store.merge_labels("kitty", "cat")
    assert store.labels() == ["cat", "dog"]
    assert store.current_labels() == {a: "cat", b: "cat", c: "dog"}
    assert store.label_counts() == {"cat": 2, "dog": 1}
    with pytest.raises(StoreError, match="into itself"):
        store.merge_labels("cat", "cat")
    with pytest.raises(StoreError, match="does not exist"):
        store.merge_labels("kitty", "cat")


def test_delete_label_only_when_unused(store: ProjectStore) -> None:
    store.ensure_labels(["cat", "dog", "cow", "spare"])
    a, b = add_images(store, 2)
    store.add_annotation(a, "dog")
    store.add_annotation(b, "dog")
    store.add_annotation(a, "cow")
    store.undo_last()  # cow is now only used by an undone annotation
    store.delete_label("spare")
    assert store.labels() == ["cat", "dog", "cow"]
    with pytest.raises(LabelInUseError) as info:
        store.delete_label("dog")
    assert str(info.value) == (
        "The label 'dog' is used by 2 annotations; merge it into another label instead of deleting it."
    )
    with pytest.raises(LabelInUseError, match="used by 1 annotation;"):
        store.delete_label("cow")
    with pytest.raises(StoreError, match="does not exist"):
        store.delete_label("spare")
    assert store.labels() == ["cat", "dog", "cow"]


# ------------------------------------------------------------------------------------------------- images


def test_add_image_and_duplicate_hash(store: ProjectStore) -> None:
    first = store.add_image(
        sha256=sha(1),
        path="images/ab/x.jpg",
        original_name="x.JPG",
        source="/in/x.JPG",
        size_bytes=10,
        width=4,
        height=3,
    )
    assert isinstance(first, int)
    dup = store.add_image(
        sha256=sha(1),
        path="images/ab/y.jpg",
        original_name="y.jpg",
        source="/in/y.jpg",
        size_bytes=10,
        width=4,
        height=3,
    )
    assert dup is None
    assert store.count_images() == 1
    assert store.image_id_for_hash(sha(1)) == first
    assert store.image_id_for_hash(sha(2)) is None
    row = store.get_image(first)
    assert (row.id, row.sha256, row.path, row.original_name, row.source) == (
        first,
        sha(1),
        "images/ab/x.jpg",
        "x.JPG",
        "/in/x.JPG",
    )
    assert (row.size_bytes, row.width, row.height) == (10, 4, 3)
    assert abs(row.added_at - time.time()) < 60
    assert store.image_path(first) == store.root / "images" / "ab" / "x.jpg"
    assert store.image_path(first).is_absolute()
    with pytest.raises(StoreError, match="no image with id 999"):
        store.get_image(999)


def test_absolute_path_inside_project_is_stored_relative(store: ProjectStore) -> None:
    image = store.add_image(
        sha256=sha(5),
        path=store.root / "images" / "cd" / "z.png",
        original_name="z.png",
        source="upload",
        size_bytes=1,
        width=1,
        height=1,
    )
    assert store.get_image(image).path == "images/cd/z.png"


def test_images_listing_is_ordered_by_id(store: ProjectStore) -> None:
    ids = add_images(store, 5)
    assert store.image_ids() == ids == sorted(ids)
    assert [row.id for row in store.images()] == ids
    assert [row.original_name for row in store.images()] == [f"img{i}.png" for i in range(5)]


# ------------------------------------------------------------------------------------------------- annotations


def test_relabel_undo_and_history(store: ProjectStore) -> None:
    store.ensure_labels(["cat", "dog"])
    a, b = add_images(store, 2)
    assert store.label_of(a) is None
    first = store.add_annotation(a, "cat", annotator="ann", round=1, strategy="margin", score=0.4, seconds=1.5)
    second = store.add_annotation(a, "dog", annotator="ann", round=2)
    assert second > first
    assert store.label_of(a) == "dog"
    assert store.current_labels() == {a: "dog"}

    undone = store.undo_last()
    assert undone is not None
    assert (undone.id, undone.label, undone.undone) == (second, "dog", True)
    assert store.label_of(a) == "cat"

    history = store.history(a)
    assert [(h.id, h.label, h.undone) for h in history] == [(first, "cat", False), (second, "dog", True)]
    h = history[0]
    assert (h.image_id, h.annotator, h.round, h.strategy, h.score, h.seconds) == (a, "ann", 1, "margin", 0.4, 1.5)
    assert (history[1].strategy, history[1].score, history[1].seconds) == (None, None, None)

    assert store.undo_last().id == first
    assert store.label_of(a) is None
    assert store.current_labels() == {}
    assert store.undo_last() is None
    assert len(store.history()) == 2
    assert store.history(b) == []


def test_undo_last_for_one_annotator(store: ProjectStore) -> None:
    store.ensure_labels(["cat", "dog"])
    a, b = add_images(store, 2)
    mine = store.add_annotation(a, "cat", annotator="alice")
    store.add_annotation(b, "dog", annotator="bob")
    undone = store.undo_last("alice")
    assert (undone.id, undone.annotator) == (mine, "alice")
    assert store.current_labels() == {b: "dog"}
    assert store.undo_last("alice") is None
    assert store.undo_last("carol") is None


def test_add_annotation_rejects_unknown_label_and_image(store: ProjectStore) -> None:
    store.add_label("cat")
    (a,) = add_images(store, 1)
    with pytest.raises(StoreError, match="The label 'dog' does not exist"):
        store.add_annotation(a, "dog")
    with pytest.raises(StoreError, match="no image with id 4242"):
        store.add_annotation(4242, "cat")
    assert store.history() == []


def test_label_counts_use_current_labels_and_list_every_label(store: ProjectStore) -> None:
    store.ensure_labels(["cat", "dog", "bird"])
    a, b, c, _ = add_images(store, 4)
    assert store.label_counts() == {"cat": 0, "dog": 0, "bird": 0}
    store.add_annotation(a, "cat")
    store.add_annotation(b, "cat")
    store.add_annotation(b, "dog")  # relabel: b counts once, as dog
    store.add_annotation(c, "dog")
    store.add_annotation(c, "bird")
    store.undo_last()  # c back to dog
    counts = store.label_counts()
    assert counts == {"cat": 1, "dog": 2, "bird": 0}
    assert list(counts) == ["cat", "dog", "bird"]


def test_current_labels_many_images(store: ProjectStore) -> None:
    store.ensure_labels(["x", "y"])
    ids = add_images(store, 300)
    for i, image in enumerate(ids):
        store.add_annotation(image, "x")
        if i % 3 == 0:
            store.add_annotation(image, "y")
    expected = {image: ("y" if i % 3 == 0 else "x") for i, image in enumerate(ids)}
    assert store.current_labels() == expected
    assert store.label_counts() == {"x": 200, "y": 100}


# ------------------------------------------------------------------------------------------------- rounds


def test_rounds(store: ProjectStore) -> None:
    assert store.current_round() == 0
    assert store.rounds() == []
    metrics = {"accuracy": 0.5, "per_class_accuracy": {"cat": None}, "confusion": [[1, 0], [0, 1]]}
    assert store.add_round(labeled=10, strategy="cold_start", seconds=0.2, metrics=metrics) == 1
    assert store.add_round(labeled=20, strategy="margin", seconds=0.3, metrics={}, checkpoint="c/2.ckpt") == 2
    assert store.current_round() == 2
    store.set_round_checkpoint(1, "c/1.ckpt")
    first, second = store.rounds()
    assert (first.number, first.labeled, first.strategy, first.seconds) == (1, 10, "cold_start", 0.2)
    assert (first.metrics, first.checkpoint) == (metrics, "c/1.ckpt")
    assert (second.number, second.metrics, second.checkpoint) == (2, {}, "c/2.ckpt")
    assert first.created_at <= second.created_at
    with pytest.raises(StoreError, match="no round 3"):
        store.set_round_checkpoint(3, "x")


# ------------------------------------------------------------------------------------------------- batch


def test_set_batch_replaces_and_keeps_order(store: ProjectStore) -> None:
    ids = add_images(store, 5)
    store.set_batch([(ids[3], "margin", 0.9), (ids[0], "margin", 0.8)])
    store.set_batch([(ids[4], "entropy", 0.7), (ids[2], "random", None), (ids[1], "entropy", 0.1)])
    batch = store.batch()
    assert [item.image_id for item in batch] == [ids[4], ids[2], ids[1]]
    assert [item.position for item in batch] == sorted(item.position for item in batch)
    assert batch[1] == BatchItem(batch[1].position, ids[2], "random", None, "pending", None, None)
    with pytest.raises(StoreError, match="same image twice"):
        store.set_batch([(ids[0], "x", None), (ids[0], "x", None)])
    assert len(store.batch()) == 3


def test_batch_status_follows_labeling_and_undo(store: ProjectStore) -> None:
    store.ensure_labels(["cat", "dog"])
    a, b, c = add_images(store, 3)
    store.set_batch([(a, "margin", 0.5), (b, "margin", 0.4)])
    item = store.claim_next("tab-1")
    assert item.image_id == a
    store.add_annotation(a, "cat")
    store.add_annotation(c, "cat")  # not in the batch: no effect on it
    assert [i.status for i in store.batch()] == ["labeled", "pending"]
    assert store.undo_last().image_id == c
    assert [i.status for i in store.batch()] == ["labeled", "pending"]
    store.add_annotation(a, "dog")
    assert store.undo_last().label == "dog"
    assert store.label_of(a) == "cat"
    reopened = store.batch()[0]
    assert (reopened.status, reopened.claimed_by) == ("pending", "tab-1")
    assert store.claim_next("tab-1").image_id == a

    store.set_batch_status(b, "skipped")
    assert store.batch()[1].status == "skipped"
    with pytest.raises(StoreError, match="Unknown batch status"):
        store.set_batch_status(b, "done")
    with pytest.raises(StoreError, match="not in the current batch"):
        store.set_batch_status(c, "labeled")


def test_claim_next_gives_clients_different_images(store: ProjectStore) -> None:
    ids = add_images(store, 4)
    store.set_batch([(i, "margin", None) for i in ids[:3]])
    first = store.claim_next("alice")
    second = store.claim_next("bob")
    assert (first.image_id, first.claimed_by) == (ids[0], "alice")
    assert first.claimed_at is not None
    assert (second.image_id, second.claimed_by) == (ids[1], "bob")
    assert store.claim_next("alice").image_id == ids[0]  # same client resumes its own claim
    store.set_batch_status(ids[0], "skipped")
    assert store.claim_next("alice").image_id == ids[2]
    assert store.claim_next("carol") is None  # everything pending is claimed by others
    store.set_batch_status(ids[1], "labeled")
    store.set_batch_status(ids[2], "labeled")
    assert store.claim_next("alice") is None


def test_stale_claims_can_be_taken_over(store: ProjectStore) -> None:
    (image,) = add_images(store, 1)
    store.set_batch([(image, "random", None)])
    assert store.claim_next("old-tab").image_id == image
    assert store.claim_next("new-tab", stale_after=600) is None
    time.sleep(0.02)
    taken = store.claim_next("new-tab", stale_after=0.01)
    assert (taken.image_id, taken.claimed_by) == (image, "new-tab")
    assert store.claim_next("old-tab") is None


def test_numpy_values_are_stored_as_plain_python(store: ProjectStore) -> None:
    np = pytest.importorskip("numpy")
    store.add_label("cat")
    ids = np.array(add_images(store, 2), dtype=np.int64)
    store.set_batch([(ids[1], "margin", np.float32(0.25)), (ids[0], "margin", np.float64(0.5))])
    assert [(i.image_id, i.score) for i in store.batch()] == [(int(ids[1]), 0.25), (int(ids[0]), 0.5)]
    store.set_batch_status(ids[1], "skipped")
    ann = store.add_annotation(ids[0], "cat", round=np.int64(2), score=np.float32(0.5), seconds=np.float64(1.25))
    (h,) = store.history(ids[0])
    assert (h.id, h.round, h.score, h.seconds) == (ann, 2, 0.5, 1.25)
    assert type(h.score) is float
    assert store.label_of(ids[0]) == "cat"
    metrics = {"accuracy": np.float32(0.5), "confusion": np.array([[1, 0], [0, 1]]), "n": np.int64(2)}
    store.add_round(labeled=np.int64(2), strategy="margin", seconds=np.float32(0.5), metrics=metrics)
    (row,) = store.rounds()
    assert row.metrics == {"accuracy": 0.5, "confusion": [[1, 0], [0, 1]], "n": 2}
    assert (row.labeled, row.seconds) == (2, 0.5)


# ------------------------------------------------------------------------------------------------- persistence


def test_reopen_sees_everything(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p")
    store.update_settings(name="demo")
    store.ensure_labels(["1", "2", "10"])
    a, b, c = add_images(store, 3)
    store.set_batch([(c, "entropy", 0.5), (a, "entropy", 0.4)])
    store.add_annotation(a, "10", annotator="x", round=1, strategy="margin", score=0.3, seconds=2.0)
    store.add_annotation(b, "2")
    store.add_annotation(b, "1")
    store.undo_last()
    store.add_round(labeled=2, strategy="margin", seconds=1.0, metrics={"accuracy": 1.0})
    store.claim_next("tab")
    before = (store.settings(), store.labels(), store.images(), store.history(), store.rounds(), store.batch())
    store.close()

    again = ProjectStore(tmp_path / "p", create=False)
    after = (again.settings(), again.labels(), again.images(), again.history(), again.rounds(), again.batch())
    assert after == before
    assert again.current_labels() == {a: "10", b: "2"}
    assert again.batch()[1].status == "labeled"
    assert again.claim_next("tab").image_id == c
    again.close()


# ------------------------------------------------------------------------------------------------- concurrency


def test_many_threads_write_without_errors(store: ProjectStore) -> None:
    store.ensure_labels(["a", "b"])
    ids = add_images(store, 20)
    errors: list[BaseException] = []
    written: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            for i in range(200):
                ann = store.add_annotation(ids[(n * 7 + i) % len(ids)], "ab"[i % 2], annotator=f"t{n}")
                if i % 50 == 0:
                    store.current_labels()
                with lock:
                    written.append(ann)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    history = store.history()
    assert len(written) == len(set(written)) == len(history) == 800
    assert {h.id for h in history} == set(written)
    assert Counter(h.annotator for h in history) == {f"t{n}": 200 for n in range(4)}


WORKER = """
import sys
from app.core.store import ProjectStore

store = ProjectStore(sys.argv[1], create=False)
client, n = sys.argv[2], int(sys.argv[3])
free = [int(i) for i in sys.argv[4].split(",")]
for i in range(n):
    store.add_annotation(free[i % len(free)], "ab"[i % 2], annotator=client, strategy="bulk")
while (item := store.claim_next(client)) is not None:
    store.add_annotation(item.image_id, "a", annotator=client, strategy="batch")
store.close()
"""


def test_several_processes_write_and_claim_without_errors(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p")
    store.ensure_labels(["a", "b"])
    free = add_images(store, 10)
    queued = add_images(store, 60, start=100)
    store.set_batch([(i, "margin", None) for i in queued])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    args = [str(tmp_path / "p"), "", "150", ",".join(map(str, free))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, args[0], f"proc{n}", *args[2:]],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err

    history = store.history()
    bulk = [h for h in history if h.strategy == "bulk"]
    assert Counter(h.annotator for h in bulk) == {"proc0": 150, "proc1": 150, "proc2": 150}
    claimed = Counter(h.image_id for h in history if h.strategy == "batch")
    assert claimed == dict.fromkeys(queued, 1)  # every batch image labeled exactly once, by one process
    assert all(item.status == "labeled" for item in store.batch())
    store.close()


def test_extend_batch_appends_after_the_current_items(tmp_path):
    from app.core.store import ProjectStore

    store = ProjectStore(tmp_path / "p")
    ids = [
        store.add_image(sha256=f"{i:064x}", path=f"images/{i}.png", original_name=f"{i}.png", source="t",
                        size_bytes=1, width=1, height=1)
        for i in range(4)
    ]  # fmt: skip
    store.ensure_labels(["a", "b"])
    store.set_batch([(ids[0], "margin", 0.9), (ids[1], "margin", 0.8)])
    store.add_annotation(ids[0], "a")
    store.extend_batch([(ids[1], "random", None), (ids[2], "random", None), (ids[3], "margin", 0.5)])
    batch = store.batch()
    assert [b.image_id for b in batch] == ids
    assert [b.status for b in batch] == ["labeled", "pending", "pending", "pending"]
    assert batch[1].strategy == "margin"  # already present: unchanged
    assert [b.position for b in batch] == [0, 1, 2, 3]


def test_set_batch_keeps_images_on_screen_first_and_theirs(store: ProjectStore) -> None:
    """A new batch (a round ended) keeps the images tabs are showing: first, still claimed by those tabs."""
    ids = add_images(store, 6)
    store.set_batch([(ids[0], "random", None), (ids[1], "random", None), (ids[2], "random", None)])
    assert store.claim_next("alice").image_id == ids[0]
    assert store.claim_next("bob").image_id == ids[1]
    store.set_batch([(ids[4], "margin", 0.9), (ids[1], "margin", 0.5), (ids[5], "margin", 0.2)])
    batch = store.batch()
    # both stay first, in their order; bob's was picked again (the new pick's score), alice's was not
    assert [(b.image_id, b.claimed_by) for b in batch] == [
        (ids[0], "alice"),
        (ids[1], "bob"),
        (ids[4], None),
        (ids[5], None),
    ]
    assert (batch[1].strategy, batch[1].score, batch[0].strategy) == ("margin", 0.5, "random")
    assert store.claim_next("bob").image_id == ids[1]  # each tab keeps its image; a new tab gets a new one
    assert store.claim_next("carol").image_id == ids[4]
    # labeled images and claims older than the limit are not kept
    store.ensure_labels(["cat", "dog"])
    store.add_annotation(ids[1], "cat")
    store.set_batch([(ids[3], "margin", 0.1)])
    assert [(b.image_id, b.claimed_by) for b in store.batch()] == [(ids[0], "alice"), (ids[4], "carol"), (ids[3], None)]
    store.set_batch([(ids[3], "margin", 0.1)], keep_claims_after=-1.0)
    assert [(b.image_id, b.claimed_by) for b in store.batch()] == [(ids[3], None)]


def test_reserve_claims_only_a_free_pending_image(store: ProjectStore) -> None:
    ids = add_images(store, 3)
    store.set_batch([(i, "margin", None) for i in ids])
    assert store.reserve(ids[1], "alice")
    assert not store.reserve(ids[1], "bob")  # already alice's
    assert store.claim_next("bob").image_id == ids[0]  # bob is handed another image
    assert store.claim_next("alice").image_id == ids[1]  # alice gets the one kept for her
    store.ensure_labels(["cat", "dog"])
    store.add_annotation(ids[2], "cat")
    assert not store.reserve(ids[2], "alice")  # labeled: nothing to reserve
