"""The review grid: pages from each source, a page committed in one step with its provenance, undone in one step."""

from __future__ import annotations

import json
import re

import pytest

from app.engine import queues
from app.engine.demo import write_digits
from app.ui import registry
from app.ui.gridbox import tile_html
from app.ui.handlers import Handlers
from app.ui.review_handlers import CONFIDENT, LABELED, SIMILAR, ReviewHandlers
from app.ui.views import display_path
from tests.ui_support import DIGITS, MODELS, TINY, TINY_MODEL, digit_of, wait_round


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A digits project whose first batch is labeled right and whose first model is trained (each test leaves it
    as it found it)."""
    tmp_path = tmp_path_factory.mktemp("review")
    ui = Handlers(tmp_path / "projects", model_choices=MODELS, base_settings=TINY)
    files = write_digits(tmp_path / "digits", size=32, limit=60)
    settings = ui.form_settings(TINY_MODEL, "", "margin", 8, 0.1, "fast", "Model default")
    ref, _ = ui.start_project("review", ", ".join(DIGITS), settings)
    ui.import_images(ref, "tab", [str(f) for f in files], [], False)
    session = registry.get(ui.projects_dir, "review")
    wait_round(session)
    for item in session.batch():
        session.label(item.image_id, digit_of(session.image(item.image_id).original_name), annotator="ann")
    wait_round(session)
    yield ui, ref, session
    registry.close_all(ui.projects_dir)


def test_confident_guesses_are_unlabeled_images_of_that_label_most_confident_first(trained) -> None:
    _ui, _ref, session = trained
    label = max(session.labels, key=lambda name: len(queues.confident(session, name, 100)))
    tiles = queues.confident(session, label, 100)
    labeled = set(session.store.current_labels())
    assert tiles and all(t.guess == label and t.image_id not in labeled for t in tiles)
    confidences = [t.confidence for t in tiles]
    assert confidences == sorted(confidences, reverse=True)
    audits = {b.image_id for b in session.batch() if b.strategy == "audit" and b.status == "pending"}
    assert not audits & {t.image_id for t in tiles}  # random checks are never taken from the grid


def test_more_like_this_gives_the_nearest_unlabeled_images(trained) -> None:
    _ui, _ref, session = trained
    anchor = session.batch()[0].image_id
    near = queues.similar(session, anchor, 5)
    assert len(near) == 5 and anchor not in {t.image_id for t in near}
    assert not set(session.store.current_labels()) & {t.image_id for t in near}


def test_a_page_is_labeled_in_one_step_with_its_provenance_and_undone_in_one_step(trained) -> None:
    ui, ref, session = trained
    review = ReviewHandlers(ui.sessions, ui.who)
    label = session.labels[0]
    page = review.page(ref, CONFIDENT, label, None)
    ids = page.state["ids"]
    assert ids and page.html.count('class="al-tile al-selected"') == len(ids)
    before = len(session.store.current_labels())
    wrong, rest = ids[0], ids[1:]
    action = json.dumps({"accept": rest, "relabel": {str(wrong): session.labels[1]}, "shown": ids})
    review.commit(ref, "tab", page.state, action, "ann")
    current = session.store.current_labels()
    assert current[wrong] == session.labels[1] and all(current[i] == label for i in rest)
    made = [a for a in session.store.history() if a.image_id in ids and not a.undone]
    assert {a.method for a in made} == {"grid_page"} and len({a.page for a in made}) == 1
    session.undo("ann")
    assert len(session.store.current_labels()) == before  # the whole page taken back


def test_images_deselected_on_a_page_do_not_come_back_on_the_next(trained) -> None:
    ui, ref, session = trained
    review = ReviewHandlers(ui.sessions, ui.who)
    label = max(session.labels, key=lambda name: len(queues.confident(session, name, 100)))
    page = review.page(ref, CONFIDENT, label, None)
    ids = page.state["ids"]
    assert len(ids) >= 2
    nxt = review.commit(ref, "tab", page.state, json.dumps({"accept": ids[1:], "relabel": {}}), "ann")
    assert ids[0] not in nxt.state["ids"] and ids[0] not in session.store.current_labels()
    assert ids[0] in nxt.state["passed"]
    session.undo("ann")


def test_a_commit_labels_only_images_of_its_page_with_labels_of_the_project(trained) -> None:
    ui, ref, session = trained
    review = ReviewHandlers(ui.sessions, ui.who)
    page = review.page(ref, CONFIDENT, session.labels[0], None)
    outsider = next(i for i in session.store.image_ids() if i not in page.state["ids"])
    before = session.store.current_labels()
    action = json.dumps({"accept": [outsider], "relabel": {str(page.state["ids"][0]): "not-a-label"}})
    review.commit(ref, "tab", page.state, action, "ann")
    assert session.store.current_labels() == before


def test_labeled_images_can_be_browsed_and_fixed(trained) -> None:
    ui, ref, session = trained
    review = ReviewHandlers(ui.sessions, ui.who)
    page = review.page(ref, LABELED, None, None)
    labeled = session.store.current_labels()
    assert set(page.state["ids"]) <= set(labeled) and page.state["ids"]
    assert 'class="al-tile al-selected"' not in page.html  # nothing is accepted by Enter alone
    similar = review.page(ref, SIMILAR, None, None)
    assert "Open an image in the Label tab first" in similar.html


def test_the_batch_extension_holds_random_checks_like_any_batch(trained) -> None:
    from app.engine.extension import pick_extension

    _ui, _ref, session = trained
    labeled = set(session.store.current_labels())
    pool = [i for i in session.store.image_ids() if i not in labeled]
    settings = session.settings.replace(audit_share=0.25, batch_size=8)
    picks = pick_extension(session.store, session.model, settings, pool)
    strategies = [s for _, s, _ in picks]
    assert len(picks) == 8 and strategies.count("audit") == 2
    assert len({i for i, _, _ in picks}) == 8 and {i for i, _, _ in picks} <= set(pool)
    again = pick_extension(session.store, session.model, settings, pool)
    assert [(i, s) for i, s, _ in again] == [(i, s) for i, s, _ in picks]  # a peek and the extension agree


def test_tiles_show_no_percentage_before_random_checks_calibrate_the_model(trained) -> None:
    ui, ref, session = trained
    assert session.latest_round().metrics.get("ece") is None  # one batch: too few random checks to calibrate on
    review = ReviewHandlers(ui.sessions, ui.who)
    label = max(session.labels, key=lambda name: len(queues.confident(session, name, 100)))
    page = review.page(ref, CONFIDENT, label, None)
    captions = re.findall(r'<span class="al-tile-caption">([^<]*)</span>', page.html)
    assert captions and all(c == label for c in captions)
    assert "%" not in "".join(captions)
    first = page.state["ids"][0]
    assert f"{label} · 97%" in tile_html(queues.Tile(first, label, 0.97), display_path(session, first), True)
