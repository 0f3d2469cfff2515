"""No image is labeled twice because a round ended while people were labeling."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from app.core.store import ProjectStore
from app.engine.demo import write_digits
from app.engine.session import ActiveLearningSession
from tests.test_session import TINY
from tests.test_store import add_images


def test_a_pick_labeled_while_the_round_ran_is_not_put_back(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p")
    store.ensure_labels(["a", "b"])
    ids = add_images(store, 6)
    store.set_batch([(ids[0], "margin", 0.9)])
    snapshot = store.current_labels()  # what the round saw when it started: nothing labeled
    assert snapshot == {}
    store.add_annotation(ids[1], "a", annotator="alice")  # labeled after the snapshot (e.g. an extension)
    picks = [(i, "margin", 0.5) for i in ids[1:5]]  # the round picked it: it was unlabeled then
    store.set_batch(picks, size=2)
    batch = [b.image_id for b in store.batch()]
    assert ids[1] not in batch
    assert batch == [ids[2], ids[3]]  # the spare pick fills the place of the dropped one
    store.extend_batch([(ids[1], "random", None), (ids[5], "random", None)])
    assert [b.image_id for b in store.batch()] == [ids[2], ids[3], ids[5]]
    store.close()


def test_undoing_a_label_someone_relabeled_since_does_not_hand_the_image_out_again(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p")
    store.ensure_labels(["a", "b"])
    ids = add_images(store, 3)
    store.set_batch([(i, "margin", 0.5) for i in ids])
    x = store.claim_next("tab-a").image_id
    store.add_annotation(x, "a", annotator="alice")
    store.add_annotation(x, "b", annotator="bob")  # bob browsed back and relabeled it
    assert store.undo_last("alice").image_id == x
    assert store.label_of(x) == "b"
    assert next(b for b in store.batch() if b.image_id == x).status == "labeled"
    handed = [store.claim_next(c) for c in ("tab-a", "tab-b", "tab-c")]
    assert x not in [h.image_id for h in handed if h is not None]
    store.close()


@pytest.mark.slow
def test_threads_labeling_through_rounds_never_label_an_image_twice(tmp_path: Path) -> None:
    paths = write_digits(tmp_path / "imgs", size=32, limit=400)
    labels = [str(d) for d in range(10)]
    session = ActiveLearningSession.create(tmp_path / "projects", "race", labels, TINY.replace(batch_size=6))
    session.add_data(paths)
    session.ensure_batch()
    stop = threading.Event()
    errors: list[BaseException] = []

    def annotate(name: str) -> None:
        try:
            for _ in range(60):
                if stop.is_set():
                    return
                item = session.next_item(name)
                if item is None:
                    session.jobs.wait("round", 30)
                    continue
                session.label(item.image_id, labels[item.image_id % 10], annotator=name)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def rounds() -> None:
        try:
            while not stop.is_set():
                session.run_round()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    workers = [threading.Thread(target=annotate, args=(f"tab{n}",)) for n in range(4)]
    trainer = threading.Thread(target=rounds)
    trainer.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    stop.set()
    trainer.join(120)
    session.jobs.wait("round", 60)
    history = [a for a in session.store.history() if a.annotator.startswith("tab")]
    twice = {image: n for image, n in Counter(a.image_id for a in history).items() if n > 1}
    session.close()
    assert not errors, errors
    assert len(history) >= 60
    assert twice == {}
