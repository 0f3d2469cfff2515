"""Honest checkpoints in Chromium: loading one names the model that becomes active and keeps the labels, and a
restart of the server brings back the same model, not the newest round's."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.demo import write_digits
from app.engine.session import ActiveLearningSession
from tests.browser_support import VIEWPORT, choose, chromium, running_app, screenshot, visible
from tests.ui_support import DIGITS, MODELS, TINY, true_label, wait_round

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:  # the `browser` fixture skips (or fails) with the reason
    Browser = Page = expect = None

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TIMEOUT = 90_000
BATCH = TINY.batch_size


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=20_000)
    with chromium() as b:
        yield b


def _two_rounds(projects: Path, images: Path) -> None:
    """A project whose round 1 model is saved as checkpoint 'first', then labeled on to round 2."""
    session = ActiveLearningSession.create(projects, "digits", DIGITS, TINY)
    session.add_data(write_digits(images, size=32, limit=40))
    session.ensure_batch()
    for _ in range(2):
        while (item := session.store.claim_next("tester")) is not None:
            session.label(item.image_id, true_label(session, item.image_id), annotator="tester")
        wait_round(session)
        if session.current_round() == 1:
            assert session.save_checkpoint("first") == "first"
    assert session.current_round() == 2
    session.close()


def _open(browser: Browser, url: str) -> tuple[Page, list[str]]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    expect(page.locator("#al-caption")).to_contain_text("Open a project or start a new one")
    choose(page, "Open a project", "digits")
    page.locator("#al-open").click()
    expect(visible(page.locator("#al-image img"))).to_have_attribute(
        "src", re.compile("alabel/image/"), timeout=TIMEOUT
    )
    return page, errors


def test_a_loaded_checkpoint_is_named_active_and_survives_a_restart(browser: Browser, tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    _two_rounds(projects, tmp_path / "images")
    loaded = f"The model of round 1 ({BATCH} labels, loaded from checkpoint 'first') is active"
    status_before = ""
    with running_app(projects, model_choices=MODELS, base_settings=TINY) as url:
        page, errors = _open(browser, url)
        status = page.locator("#al-status")
        expect(status).to_contain_text(re.compile(r"round 2"), timeout=TIMEOUT)
        expect(status).not_to_contain_text("loaded from checkpoint")
        choose(page, "Saved checkpoints", f"first · round 1 · {BATCH} labels")
        page.get_by_role("button", name="Load Checkpoint").click()
        toast = page.get_by_text(re.compile(r"is now active; your \d+ labels are kept"))
        expect(toast.first).to_be_visible(timeout=TIMEOUT)
        expect(toast.first).to_contain_text("never rolls labels back")
        expect(status).to_contain_text(loaded, timeout=TIMEOUT)
        expect(status).to_contain_text(f"your {2 * BATCH} labels are kept")
        status_before = html.unescape(status.inner_text())
        screenshot(page, "5a-checkpoint-loaded")
        page.context.close()
        assert not errors, errors

    # a restart: a new server and new sessions on the same projects folder
    with running_app(projects, model_choices=MODELS, base_settings=TINY) as url:
        page, errors = _open(browser, url)
        status = page.locator("#al-status")
        expect(status).to_contain_text(loaded, timeout=TIMEOUT)
        expect(status).to_contain_text(f"{2 * BATCH} labels")
        screenshot(page, "5b-after-restart")
        assert "round 2" not in status_before
        page.context.close()
        assert not errors, errors
