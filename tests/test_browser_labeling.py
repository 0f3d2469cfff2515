"""The labeling panel in headless Chromium: the accept key, the zoom, one toast per message, the Labels section,
and the page on a phone (390x844) and a laptop (1280x800).

One app serves a project whose first round has trained (the tiny random-weight model), so the model's guess shows
from the first image. Screenshots are kept in ``test-artifacts/screenshots/`` for a person to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.demo import DEMO_NAME, write_digits
from app.engine.session import ActiveLearningSession
from app.ui import registry
from tests.browser_support import (
    caption_name,
    choose,
    chromium,
    image_src,
    open_section,
    running_app,
    screenshot,
    visible,
)
from tests.ui_support import MODELS, TINY, digit_of, wait_round

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # the `browser` fixture skips (or fails) with the reason
    Browser = Page = expect = sync_playwright = None

pytestmark = pytest.mark.browser
LABELS = [str(d) for d in range(10)]  # ten label keys: the most a phone has to fit
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}
IDLE = "() => !document.body.classList.contains('al-pending')"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=20_000)
    with chromium() as b:
        yield b


def trained_project(projects: Path, name: str, files: list[Path]) -> ActiveLearningSession:
    """A project whose first batch is labeled and whose first round has trained: the guess shows at once."""
    session = ActiveLearningSession.create(projects, name, LABELS, TINY.replace(batch_size=5))
    session.add_data([str(f) for f in files])
    session.ensure_batch()
    for item in session.batch():
        session.label(item.image_id, digit_of(session.store.get_image(item.image_id).original_name))
    wait_round(session)
    return registry.register(projects, session)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, ActiveLearningSession]]]:
    projects = tmp_path_factory.mktemp("projects")
    files = write_digits(tmp_path_factory.mktemp("digits"), size=32, limit=40)
    sessions = {name: trained_project(projects, name, files) for name in ("keys", "labels", "screens")}
    with running_app(projects, model_choices=MODELS, base_settings=TINY) as url:
        yield url, sessions


def open_page(browser: Browser, url: str, project: str, viewport: dict) -> tuple[Page, list[str]]:
    """A new tab at `viewport` with `project` open and its first image and guess shown; and its JavaScript errors."""
    page = browser.new_context(viewport=viewport).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    expect(page.locator("#al-caption")).to_contain_text("Open a project or start a new one")
    page.get_by_role("button", name="Refresh list").click()
    choose(page, "Open a project", project)
    page.locator("#al-open").click()
    expect(page.locator("#al-image img")).to_have_attribute("src", re.compile(r"alabel/image/"), timeout=60_000)
    expect(page.locator("#al-predictions [data-testid=label-output-value]")).not_to_be_empty()
    return page, errors


def guess_of(page: Page) -> str:
    return page.locator("#al-predictions [data-testid=label-output-value]").inner_text().strip()


def test_a_and_space_accept_the_guess(browser: Browser, app) -> None:
    url, sessions = app
    session = sessions["keys"]
    page, errors = open_page(browser, url, "keys", LAPTOP)
    accepted = []
    for key in ("a", " "):
        name, guess = caption_name(page), guess_of(page)
        page.keyboard.press(key)
        page.wait_for_function(IDLE)
        expect(page.locator("#al-caption strong").first).not_to_have_text(name)
        accepted.append((name, guess))
    made = [a for a in session.store.history() if a.method == "accepted_guess"]
    assert [(session.store.get_image(a.image_id).original_name, a.label) for a in made] == accepted
    page.keyboard.press("u")  # undone like any label
    expect(page.locator("#al-caption strong").first).to_have_text(accepted[-1][0])
    assert session.store.history()[-1].undone
    assert not errors


def test_the_image_zooms_on_the_page_and_one_toast_says_a_warning_once(browser: Browser, app) -> None:
    url, _ = app
    page, errors = open_page(browser, url, "keys", LAPTOP)
    src = image_src(page)
    page.locator("#al-image img").click()
    zoom = page.locator("#al-zoom img")
    expect(zoom).to_be_visible()
    assert zoom.get_attribute("src") == src and len(page.context.pages) == 1  # no new tab
    box = zoom.bounding_box()
    assert box["width"] > 1000 and box["height"] > 700  # as large as the window
    screenshot(page, "10a-zoom")
    page.keyboard.press("Escape")
    expect(page.locator("#al-zoom")).to_have_count(0)
    page.locator("#al-image img").click()
    page.locator("#al-zoom").click()
    expect(page.locator("#al-zoom")).to_have_count(0)

    for _ in range(25):  # Enter with no label picked, faster than the server answers
        page.keyboard.press("Enter")
    page.wait_for_function(IDLE, timeout=60_000)
    warning = page.locator(".toast-message-item", has_text="Pick a label first")
    expect(warning.first).to_be_visible()
    page.wait_for_timeout(300)
    assert warning.count() > 1  # the server sent it for every Enter ...
    expect(warning.filter(visible=True)).to_have_count(1)  # ... and it is shown once
    expect(page.locator("[data-testid=toast-body]").filter(visible=True)).to_have_count(1)
    screenshot(page, "10b-one-warning")
    assert not errors


def test_rename_merge_and_delete_labels_in_an_open_project(browser: Browser, app) -> None:
    url, sessions = app
    session = sessions["labels"]
    page, errors = open_page(browser, url, "labels", LAPTOP)
    open_section(page, "Labels", page.locator("#al-label-rename"))
    expect(page.locator("#al-label-summary")).to_contain_text("Images per label")
    used = next(name for name, n in session.label_counts().items() if n)

    def pick(name: str) -> None:
        choose(page, "Label to change", name)

    def toast(text: str) -> None:
        expect(page.locator(".toast-message-item", has_text=text).filter(visible=True).first).to_be_visible()

    pick(used)
    page.locator("#al-label-new-name input").fill("1" if used != "1" else "2")
    page.locator("#al-label-rename").click()
    toast("already exists. Merge")  # a name that is taken: merge instead
    pick(used)
    page.locator("#al-label-new-name input").fill("digit " + used)
    page.locator("#al-label-rename").click()
    expect(page.locator("#al-labels")).to_contain_text("digit " + used)
    assert session.labels[LABELS.index(used)] == "digit " + used
    pick("digit " + used)
    page.locator("#al-label-delete").click()
    toast("merge it into another label instead of deleting it")  # a used label is not deleted
    unused = next(name for name, n in session.label_counts().items() if not n)
    pick(unused)
    page.locator("#al-label-delete").click()
    expect(page.locator("#al-labels label", has_text=re.compile(rf"^\s*{unused}\s*$"))).to_have_count(0)
    pick("digit " + used)
    choose(page, "Merge into", "9" if unused != "9" else "8")
    page.locator("#al-label-merge").click()
    expect(page.locator("#al-labels")).not_to_contain_text("digit " + used)
    assert "digit " + used not in session.labels and unused not in session.labels
    screenshot(page, "10c-labels-edited")
    assert not errors


def test_a_phone_shows_the_image_the_label_keys_and_the_guess_on_one_screen(browser: Browser, app) -> None:
    url, _ = app
    page, errors = open_page(browser, url, "screens", PHONE)
    expect(page.locator("#al-side")).to_be_hidden()  # the project column folded away once the image is there
    for part in ("#al-image", "#al-labels", "#al-predictions", "#al-accept"):
        box = page.locator(part).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], (part, box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (part, box)
    screenshot(page, "11a-phone-390x844")
    page.locator("#al-side-toggle").click()  # the project column comes back on request
    expect(visible(page.get_by_label("Open a project", exact=True))).to_be_in_viewport()
    page.locator("#al-side-toggle").click()
    expect(page.locator("#al-side")).to_be_hidden()
    assert not errors

    page, errors = open_page(browser, url, "screens", LAPTOP)
    heights = {b: page.locator(b).bounding_box()["height"] for b in ("#al-skip", "#al-prev", "#al-next")}
    assert len(set(heights.values())) == 1, heights  # "← Previous" does not wrap onto a second line
    for part in ("#al-image", "#al-labels", "#al-predictions", "#al-accept"):
        box = page.locator(part).bounding_box()
        assert box["y"] + box["height"] <= LAPTOP["height"], (part, box)
    title = page.locator("#al-upload-files label[data-testid=block-label]").bounding_box()
    drop = page.locator("#al-upload-files button").first.bounding_box()
    assert title["y"] + title["height"] <= drop["y"], (title, drop)  # the "Files" title is above its drop zone
    screenshot(page, "11b-laptop-1280x800")
    assert not errors


def test_the_first_image_of_a_project_opened_as_the_page_loads_is_shown(browser: Browser, tmp_path: Path) -> None:
    """The demo opens as the page loads, before the tab's image cookie is set: its images still show."""
    projects = tmp_path / "projects"
    trained_project(projects, DEMO_NAME, write_digits(tmp_path / "digits", size=32, limit=20))
    with running_app(projects, demo=True, model_choices=MODELS, base_settings=TINY) as url:
        page = browser.new_context(viewport=LAPTOP).new_page()
        page.goto(url)
        expect(page.locator("#al-image img")).to_have_attribute("src", re.compile(r"alabel/image/"), timeout=60_000)
        page.wait_for_function(
            "() => { const i = document.querySelector('#al-image img'); return i && i.complete && i.naturalWidth; }",
            timeout=20_000,
        )
        page.context.close()
