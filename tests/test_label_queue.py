"""The "Likely wrong labels" queue of the review grid: flipped labels come first, computed in the background once
per round, and a check (keep, or take the suggestion) takes an image off the queue until Undo gives it back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.engine import queues, suspect_cache
from app.engine.session import ActiveLearningSession
from app.ui import registry
from app.ui.dashboard import suspects_text
from app.ui.handlers import Handlers
from app.ui.review_handlers import CHECK, ReviewHandlers
from tests.test_label_check import FLIPS, _pixel_embeddings
from tests.ui_support import DIGITS, MODELS, TINY


@pytest.fixture
def flipped(tmp_path: Path, digits_dir: Path):
    """The 100 digits labeled from their folders, five of them then given a wrong label; pixels as embeddings."""
    ui = Handlers(tmp_path / "projects", model_choices=MODELS, base_settings=TINY)
    session = ActiveLearningSession.create(tmp_path / "projects", "check", DIGITS, TINY)
    session.add_data([digits_dir], labels_from_folders=True)
    session = registry.register(tmp_path / "projects", session)
    _pixel_embeddings(session)
    by_file = {session.image(i).source: i for i in session.store.image_ids()}
    wrong = {by_file[str(digits_dir / str(d) / f"{i}.png")]: (str(d), bad) for (d, i), bad in FLIPS.items()}
    for image_id, (_, bad) in wrong.items():
        session.label(image_id, bad)
    yield ui, session, wrong
    registry.close_all(tmp_path / "projects")


def test_the_queue_puts_the_flipped_labels_first_and_is_computed_once_per_round(flipped) -> None:
    _ui, session, wrong = flipped
    assert queues.likely_wrong(session, 24) == []  # not known yet: the checker started in the background
    kept = suspect_cache.wait(session, timeout=300)
    assert kept is not None and kept.round == session.current_round() and not kept.failed

    tiles = queues.likely_wrong(session, 24)
    top = {t.image_id: t for t in tiles[:8]}
    found = set(top) & set(wrong)
    assert len(found) >= 4, [(t.image_id, t.label, t.suggested) for t in tiles[:8]]
    assert all(top[i].label == wrong[i][1] for i in found)  # the label given, beside the suggestion
    assert sum(top[i].suggested == wrong[i][0] for i in found) >= len(found) - 1
    assert suspect_cache.refresh(session) is False  # kept for this round: not computed again
    count = len(suspect_cache.open_suspects(session))
    assert f"**{count} labels look wrong**" in suspects_text(session)


def test_keeping_a_label_or_taking_the_suggestion_takes_it_off_the_queue_until_undo(flipped) -> None:
    ui, session, wrong = flipped
    suspect_cache.refresh(session)
    suspect_cache.wait(session, timeout=300)
    review = ReviewHandlers(ui.sessions, ui.who)
    page = review.page("check", CHECK, None, None)
    tiles = queues.likely_wrong(session, 24)
    assert page.state["ids"] == [t.image_id for t in tiles]
    assert f'data-given="{tiles[0].label}"' in page.html and f"maybe {tiles[0].suggested}" in page.html
    keep, take = tiles[0], tiles[1]
    action = {"accept": [take.image_id], "relabel": {str(keep.image_id): keep.label}}

    after = review.commit("check", "tab", page.state, json.dumps(action), "ann")

    current = session.store.current_labels()
    assert current[keep.image_id] == keep.label and current[take.image_id] == take.suggested
    assert current[tiles[2].image_id] == tiles[2].label  # neither kept nor selected: left as it was
    still = {s.image_id for s in suspect_cache.open_suspects(session)}
    assert keep.image_id not in still and take.image_id not in still and tiles[2].image_id in still
    assert keep.image_id not in after.state["ids"] and take.image_id not in after.state["ids"]
    made = [a for a in session.store.history() if a.image_id in (keep.image_id, take.image_id) and not a.undone]
    assert {a.page for a in made[-2:]} == {page.state["page"]} and page.state["page"].startswith("check-")

    session.undo("ann")  # the whole page back: both labels as they were, both on the queue again
    current = session.store.current_labels()
    assert current[keep.image_id] == keep.label and current[take.image_id] == take.label
    still = {s.image_id for s in suspect_cache.open_suspects(session)}
    assert {keep.image_id, take.image_id} <= still


def test_more_like_this_is_only_asked_for_an_image_of_the_page(flipped) -> None:
    ui, session, _wrong = flipped
    suspect_cache.refresh(session)
    suspect_cache.wait(session, timeout=300)
    review = ReviewHandlers(ui.sessions, ui.who)
    page = review.page("check", CHECK, None, None)
    outsider = next(i for i in session.store.image_ids() if i not in page.state["ids"])
    with pytest.raises(Exception, match="Pick an image of this page first"):
        review.more_like("check", page.state, str(outsider))
    near = review.more_like("check", page.state, str(page.state["ids"][0]))
    assert near.state["anchor"] == page.state["ids"][0] and near.state["source"] == "More like this image"
