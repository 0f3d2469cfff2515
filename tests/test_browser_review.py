"""The review grid in Chromium: a page of confident guesses, fixed with keys, accepted with Enter, undone at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.demo import write_digits
from app.engine.session import ActiveLearningSession
from app.ui import registry
from tests.browser_support import VIEWPORT, chromium, running_app, screenshot, visible
from tests.ui_support import DIGITS, MODELS, TINY, digit_of, wait_round

try:
    from playwright.sync_api import Browser, expect, sync_playwright
except ImportError:  # pragma: no cover - require_browser() reports it
    Browser = expect = sync_playwright = None

TIMEOUT = 30_000
pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ActiveLearningSession]]:
    """A digits project whose first batch is labeled and whose model is trained, served in this process."""
    root = tmp_path_factory.mktemp("grid")
    projects = root / "projects"
    session = ActiveLearningSession.create(projects, "grid", DIGITS, TINY.replace(batch_size=10))
    session.add_data([str(f) for f in write_digits(root / "digits", size=32, limit=120)])
    session = registry.register(projects, session)
    session.ensure_batch()
    for item in session.batch():
        session.label(item.image_id, digit_of(session.image(item.image_id).original_name), annotator="ann")
    wait_round(session)
    with running_app(projects, model_choices=MODELS, base_settings=TINY) as url:
        yield url, session


def test_a_page_of_guesses_is_fixed_with_keys_accepted_with_enter_and_undone_at_once(
    app: tuple[str, ActiveLearningSession], tmp_path: Path
) -> None:
    url, session = app
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        visible(page.get_by_label("Open a project", exact=True)).click()
        visible(page.get_by_role("option", name="grid", exact=True)).click()
        page.locator("#al-open").click()
        expect(page.locator("#al-image img")).to_be_visible(timeout=TIMEOUT)
        visible(page.get_by_role("tab", name="Review")).click()
        label = max(DIGITS, key=lambda d: sum(1 for _ in _confident(session, d)))
        visible(page.locator("#al-review-labels").get_by_text(label, exact=True)).click()
        tiles = page.locator("#al-review-grid .al-tile")
        note = page.locator("#al-review-grid .al-grid-note")
        expect(note).to_contain_text(f"The model thinks these are '{label}'", timeout=TIMEOUT)
        expect(tiles.first).to_be_visible(timeout=TIMEOUT)
        expect(page.locator("#al-review-grid img").first).to_have_js_property("complete", True)
        shown = [int(t.get_attribute("data-id")) for t in tiles.all()]
        assert shown and page.locator("#al-review-grid .al-tile.al-selected").count() == len(shown)
        note.click()  # the focus leaves the label radio
        page.keyboard.press("Space")  # the first tile: deselected, stays unlabeled
        page.keyboard.press("ArrowRight")
        other = DIGITS[(DIGITS.index(label) + 1) % len(DIGITS)]
        page.keyboard.press(str((DIGITS.index(other) + 1) % 10))  # the second tile: another label (keys 1-9, 0)
        expect(tiles.nth(1)).to_contain_text(f"→ {other}")
        screenshot(page, "8-review-grid")
        before = dict(session.store.current_labels())
        page.keyboard.press("Enter")
        expect(page.get_by_text(re.compile(r"Labeled \d+ images"))).to_be_visible(timeout=TIMEOUT)
        current = session.store.current_labels()
        assert shown[0] not in current and current[shown[1]] == other
        assert all(current[i] == label for i in shown[2:])
        visible(page.get_by_role("button", name="Undo page")).click()
        expect(page.get_by_text(re.compile(r"Took back"))).to_be_visible(timeout=TIMEOUT)
        assert session.store.current_labels() == before
        assert not errors, errors


def _confident(session: ActiveLearningSession, label: str) -> list:
    from app.engine import queues

    return queues.confident(session, label, 100)


def test_more_like_this_and_fixing_a_labeled_image_in_the_grid(app: tuple[str, ActiveLearningSession]) -> None:
    url, session = app
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url)
        visible(page.get_by_label("Open a project", exact=True)).click()
        visible(page.get_by_role("option", name="grid", exact=True)).click()
        page.locator("#al-open").click()
        frame = page.locator("#al-image .al-frame")
        expect(frame).to_have_attribute("data-id", re.compile(r"\d+"), timeout=TIMEOUT)
        anchor = int(frame.get_attribute("data-id"))
        visible(page.get_by_role("tab", name="Review")).click()
        page.get_by_text("More like this image", exact=True).click()
        note = page.locator("#al-review-grid .al-grid-note")
        expect(note).to_contain_text("most like the one in the Label tab", timeout=TIMEOUT)
        shown = [int(t.get_attribute("data-id")) for t in page.locator("#al-review-grid .al-tile").all()]
        nearest = [t.image_id for t in _similar(session, anchor)]
        assert shown == nearest[: len(shown)] and anchor not in shown

        # Labeled as ...: the newest labeled image first; a number key on it relabels it, Enter commits.
        page.get_by_text("Labeled as ...", exact=True).click()
        expect(note).to_contain_text("Labeled images, newest first", timeout=TIMEOUT)
        first = page.locator("#al-review-grid .al-tile").first
        target = int(first.get_attribute("data-id"))
        old = session.store.label_of(target)
        new = DIGITS[(DIGITS.index(old) + 1) % len(DIGITS)]
        note.click()
        page.keyboard.press(str((DIGITS.index(new) + 1) % 10))
        page.keyboard.press("Enter")
        expect(page.get_by_text(re.compile(r"Labeled 1 image\."))).to_be_visible(timeout=TIMEOUT)
        assert session.store.label_of(target) == new
        session.undo(None)  # leave the project as it was for the other tests
        assert session.store.label_of(target) == old


def _similar(session: ActiveLearningSession, anchor: int) -> list:
    from app.engine import queues

    return queues.similar(session, anchor, 48)
