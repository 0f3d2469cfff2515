"""A batch has the size the person set, also when a tab holds images of the old batch (on screen, fetched ahead)."""

from __future__ import annotations

from pathlib import Path

from app.core.store import ProjectStore
from app.engine.demo import write_digits
from app.engine.session import ActiveLearningSession
from tests.test_store import add_images
from tests.ui_support import TINY, digit_of, wait_round


def test_images_kept_on_screen_count_toward_the_batch_size(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p")
    ids = add_images(store, 10)
    store.set_batch([(i, "random", None) for i in ids[:4]])
    assert store.claim_next("tab").image_id == ids[0]  # on screen
    assert store.reserve(ids[1], "tab")  # fetched ahead
    store.set_batch([(i, "margin", 0.5) for i in ids[4:]], size=5)
    batch = store.batch()
    assert [b.image_id for b in batch] == [ids[0], ids[1], ids[4], ids[5], ids[6]]  # 2 kept + 3 new picks
    assert [b.claimed_by for b in batch[:2]] == ["tab", "tab"]
    store.close()


def test_the_random_checks_keep_their_places_when_kept_images_take_some(tmp_path: Path) -> None:
    """The spare picks and the model's picks make room first: the batch's share of random checks stays."""
    store = ProjectStore(tmp_path / "p")
    ids = add_images(store, 12)
    store.set_batch([(ids[0], "random", None)])
    assert store.claim_next("tab").image_id == ids[0]
    picks = [(ids[1], "margin", 0.9), (ids[2], "audit", None), (ids[3], "margin", 0.8), (ids[4], "audit", None)]
    store.set_batch(picks + [(i, "margin", 0.1) for i in ids[5:]], size=4)  # spares after the first 4
    assert [(b.image_id, b.strategy) for b in store.batch()] == [
        (ids[0], "random"),  # kept on screen
        (ids[1], "margin"),
        (ids[2], "audit"),
        (ids[4], "audit"),  # the model's second pick made room, not a random check
    ]
    store.close()


def test_every_batch_a_tab_labels_has_the_set_size(tmp_path: Path) -> None:
    """The tab labels as the page does: it claims the image it shows and reserves the next one to fetch it ahead,
    also while a round trains (the batch grows by the extension meanwhile)."""
    files = write_digits(tmp_path / "digits", size=32, limit=60)
    session = ActiveLearningSession.create(tmp_path / "projects", "sizes", [str(d) for d in range(10)], TINY)
    session.add_data([str(f) for f in files])
    session.ensure_batch()
    size = TINY.batch_size
    sizes = [len(session.batch())]
    for _ in range(3):
        labeled = 0
        while labeled < size:
            item = session.next_item("tab")
            assert item is not None
            session.labeling.upcoming(session.batch(), item.image_id, "tab", 3)  # reserves the next one
            name = session.store.get_image(item.image_id).original_name
            session.label(item.image_id, digit_of(name), annotator="tab")
            labeled += 1
        item = session.next_item("tab")  # the next image is on screen while the round trains
        session.labeling.upcoming(session.batch(), item.image_id, "tab", 3)
        wait_round(session)
        sizes.append(len(session.batch()))
    session.close()
    assert sizes == [size] * 4
