"""The review grid in Chromium: a page of confident guesses, fixed with keys, accepted with Enter, undone at once;
the next page shown before the server's answer; more like a tile; the likely-wrong labels kept or fixed."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine import queues, suspect_cache
from app.engine.demo import write_digits
from app.engine.session import ActiveLearningSession
from app.ui import registry, review_handlers
from tests.browser_support import VIEWPORT, chromium, running_app, screenshot, visible
from tests.conftest import write_digits as write_class_folders
from tests.test_label_check import FLIPS, _pixel_embeddings
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
        expect(note).to_contain_text("most like the chosen one", timeout=TIMEOUT)
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


def _open(page, url: str, name: str) -> None:
    page.goto(url)
    visible(page.get_by_label("Open a project", exact=True)).click()
    visible(page.get_by_role("option", name=name, exact=True)).click()
    page.locator("#al-open").click()
    expect(page.locator("#al-image .al-frame")).to_have_attribute("data-id", re.compile(r"\d+"), timeout=TIMEOUT)
    visible(page.get_by_role("tab", name="Review")).click()


def _ids(page, where: str = "#al-review-grid .al-grid .al-tile") -> list[int]:
    return [int(i) for i in page.locator(where).evaluate_all("(ts) => ts.map((t) => t.dataset.id)")]


def test_the_next_page_shows_before_the_servers_answer_and_keeps_what_was_done_on_it(
    app: tuple[str, ActiveLearningSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, session = app
    slow = review_handlers.ReviewHandlers.commit

    def commit(self, *args, **kwargs):  # the server takes its time: the page must not wait for it
        time.sleep(2.0)
        return slow(self, *args, **kwargs)

    monkeypatch.setattr(review_handlers.ReviewHandlers, "commit", commit)
    monkeypatch.setattr(review_handlers, "PAGE_SIZE", 4)
    label = max(DIGITS, key=lambda d: len(_confident(session, d)))
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        _open(page, url, "grid")
        visible(page.locator("#al-review-labels").get_by_text(label, exact=True)).click()
        note = page.locator("#al-review-grid .al-grid-note")
        expect(note).to_contain_text(f"'{label}'", timeout=TIMEOUT)
        first, ahead = _ids(page), _ids(page, "#al-review-grid .al-grid-ahead .al-tile")
        assert len(first) == 4 and ahead and not set(first) & set(ahead)
        before = dict(session.store.current_labels())
        note.click()
        page.keyboard.press("Enter")
        expect(page.locator("#al-review-grid .al-grid")).to_have_attribute("data-page", re.compile("^ahead:"))
        assert _ids(page) == ahead  # on screen at once, while the server still works
        page.keyboard.press("Space")  # the first tile of the new page: deselected before the answer came
        expect(page.locator("#al-review-grid .al-grid")).not_to_have_attribute(
            "data-page", re.compile("^ahead:"), timeout=TIMEOUT
        )
        labeled = session.store.current_labels()
        assert all(labeled.get(i) == label for i in first)
        second = _ids(page)
        assert not set(second) & set(first)  # no tile shown twice
        assert second[0] == ahead[0]
        tile = page.locator("#al-review-grid .al-grid .al-tile").first
        expect(tile).not_to_have_class(re.compile("al-selected"))  # still deselected: carried over to the answer
        page.keyboard.press("Enter")
        expect(page.locator("#al-review-grid .al-grid, #al-review-grid .al-grid-empty").first).not_to_have_attribute(
            "data-page", re.compile("^ahead:"), timeout=TIMEOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and all(session.store.current_labels().get(i) != label for i in second[1:]):
            time.sleep(0.2)
        labeled = session.store.current_labels()
        assert second[0] not in labeled and all(labeled.get(i) == label for i in second[1:])
        for _ in range(2):  # both pages back, one Undo each
            session.undo(None)
        assert session.store.current_labels() == before
        assert not errors, errors


def test_more_like_this_from_a_tile(app: tuple[str, ActiveLearningSession]) -> None:
    url, session = app
    label = max(DIGITS, key=lambda d: len(_confident(session, d)))
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        _open(page, url, "grid")
        visible(page.locator("#al-review-labels").get_by_text(label, exact=True)).click()
        note = page.locator("#al-review-grid .al-grid-note")
        expect(note).to_contain_text(f"'{label}'", timeout=TIMEOUT)
        shown = _ids(page)
        note.click()
        page.keyboard.press("ArrowRight")
        page.keyboard.press("m")  # more like the focused (second) tile
        expect(note).to_contain_text("most like the chosen one", timeout=TIMEOUT)
        expect(page.get_by_role("radio", name="More like this image")).to_be_checked()
        assert _ids(page) == [t.image_id for t in queues.similar(session, shown[1], 24)]
        third = _ids(page)[2]
        page.locator("#al-review-grid .al-grid .al-tile").nth(2).locator(".al-tile-more").click()  # its ≈ button
        expect(page.locator("#al-review-grid .al-grid .al-tile").first).to_have_attribute(
            "data-id", str(queues.similar(session, third, 1)[0].image_id), timeout=TIMEOUT
        )
        assert third not in _ids(page)


@pytest.fixture(scope="module")
def flipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ActiveLearningSession, dict]]:
    """100 digits labeled from their folders, five of them given a wrong label, pixels as embeddings; served."""
    root = tmp_path_factory.mktemp("check")
    folders = root / "digits"
    write_class_folders(folders)
    projects = root / "projects"
    session = ActiveLearningSession.create(projects, "check", DIGITS, TINY)
    session.add_data([folders], labels_from_folders=True)
    session = registry.register(projects, session)
    _pixel_embeddings(session)
    by_file = {session.image(i).source: i for i in session.store.image_ids()}
    wrong = {by_file[str(folders / str(d) / f"{i}.png")]: (str(d), bad) for (d, i), bad in FLIPS.items()}
    for image_id, (_, bad) in wrong.items():
        session.label(image_id, bad)
    with running_app(projects, model_choices=MODELS, base_settings=TINY) as url:
        yield url, session, wrong


def test_likely_wrong_labels_are_kept_or_fixed_with_one_key(flipped) -> None:
    url, session, wrong = flipped
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        visible(page.get_by_label("Open a project", exact=True)).click()
        visible(page.get_by_role("option", name="check", exact=True)).click()
        page.locator("#al-open").click()
        visible(page.get_by_role("tab", name="Dashboard")).click()
        deadline = time.monotonic() + 300  # the dashboard started the checker in the background
        while suspect_cache.kept(session) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        count = len(suspect_cache.open_suspects(session))
        assert count >= 5 and registry.get(session.store.root.parent, "check") is session, count
        visible(page.get_by_role("button", name="Refresh", exact=True)).click()
        expect(page.get_by_text(f"{count} labels look wrong")).to_be_visible(timeout=TIMEOUT)

        visible(page.get_by_role("tab", name="Review")).click()
        page.get_by_text("Likely wrong labels", exact=True).click()
        note = page.locator("#al-review-grid .al-grid-note")
        expect(note).to_contain_text("Labels that look wrong", timeout=TIMEOUT)
        tiles = page.locator("#al-review-grid .al-grid .al-tile")
        shown = _ids(page)
        assert len(set(shown[:8]) & set(wrong)) >= 4  # the flipped labels come first
        keep, take = shown[0], shown[1]
        given = {i: session.store.label_of(i) for i in (keep, take)}
        suggested = {t.image_id: t.suggested for t in queues.likely_wrong(session, 24)}
        expect(tiles.nth(1)).to_contain_text(f"labeled {given[take]} · maybe {suggested[take]}")
        note.click()
        page.keyboard.press("k")  # the first: its label is right after all
        page.keyboard.press("ArrowRight")
        page.keyboard.press("a")  # the second: take the suggestion
        expect(tiles.nth(0)).to_contain_text(f"✓ keep {given[keep]}")
        expect(tiles.nth(1)).to_contain_text(f"→ {suggested[take]}")
        screenshot(page, "9-review-likely-wrong")
        page.keyboard.press("Enter")
        expect(page.get_by_text(re.compile(r"Labeled 2 images"))).to_be_visible(timeout=TIMEOUT)
        expect(page.locator("#al-review-grid [data-page]")).not_to_have_attribute(
            "data-page", re.compile("^ahead:"), timeout=TIMEOUT
        )
        assert session.store.label_of(keep) == given[keep] and session.store.label_of(take) == suggested[take]
        assert keep not in _ids(page) and take not in _ids(page)  # checked: they do not come back
        still = {s.image_id for s in suspect_cache.open_suspects(session)}
        assert keep not in still and take not in still
        assert not errors, errors


@pytest.mark.parametrize("size", [(1280, 800), (390, 844)], ids=["laptop", "phone"])
def test_the_grid_fits_a_laptop_and_a_phone(app: tuple[str, ActiveLearningSession], size: tuple[int, int]) -> None:
    url, session = app
    width, height = size
    label = max(DIGITS, key=lambda d: len(_confident(session, d)))
    with chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": height})
        if width > 700:
            _open(page, url, "grid")
        else:
            _open_on_phone(page, url)
        visible(page.locator("#al-review-labels").get_by_text(label, exact=True)).click()
        tiles = page.locator("#al-review-grid .al-grid .al-tile")
        expect(tiles.first).to_be_visible(timeout=TIMEOUT)
        tiles.first.scroll_into_view_if_needed()
        box = tiles.first.bounding_box()
        assert box["width"] >= 120 and box["x"] + box["width"] <= width  # large enough to judge, on the screen
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width  # no sideways scrolling
        path = screenshot(page, f"8b-review-grid-{width}x{height}")
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(path.with_name(path.stem + "-view.png")))  # what the screen shows first


def _open_on_phone(page, url: str) -> None:
    page.goto(url)
    visible(page.locator("#al-side-toggle")).click()
    _open_project_only(page)
    visible(page.locator("#al-side-toggle")).click()
    visible(page.get_by_role("tab", name="Review")).click()


def _open_project_only(page) -> None:
    visible(page.get_by_label("Open a project", exact=True)).click()
    visible(page.get_by_role("option", name="grid", exact=True)).click()
    page.locator("#al-open").click()
    expect(page.locator("#al-image .al-frame")).to_have_attribute("data-id", re.compile(r"\d+"), timeout=TIMEOUT)
