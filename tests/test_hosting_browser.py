"""Strangers on one server, in Chromium: private workspaces on a Space, and one project labeled by a crowd."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.session import ActiveLearningSession
from app.ui.hosting import Hosting
from tests.browser_support import (
    REPO,
    VIEWPORT,
    chromium,
    free_port,
    open_section,
    running_app,
    screenshot,
    visible,
)
from tests.image_files import noise, save
from tests.ui_support import MODELS, TINY

try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - require_browser() reports it
    Browser = BrowserContext = Page = expect = sync_playwright = None

TIMEOUT = 120_000  # ms: a first visit may wait for the backbone to load and the first batch to embed
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def _wait_up(url: str, proc: subprocess.Popen, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the Space did not start (exit code {proc.poll()})")


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The entry file started as a Space starts it (its environment, no sign-in): private workspaces."""
    projects = tmp_path_factory.mktemp("space") / "projects"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALABEL_", "GRADIO_"))}
    env |= {
        "SYSTEM": "spaces",
        "SPACE_ID": "someone/labeler",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "ALABEL_PROJECTS_DIR": str(projects),
        "ALABEL_SECRET": "a fixed secret, so tokens outlive a restart",
    }
    proc = subprocess.Popen([sys.executable, "space.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    try:
        _wait_up(f"http://127.0.0.1:{port}/", proc)
        yield f"http://127.0.0.1:{port}/", projects
    finally:
        proc.terminate()
        proc.wait(30)


ERRORS: list[str] = []


def _visit(browser: Browser, url: str) -> tuple[BrowserContext, Page]:
    """A new visitor (a browser context of their own) on the page, once its image is on screen."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.on("pageerror", lambda exc: ERRORS.append(str(exc)))
    page.goto(url)
    image = page.locator("#al-image img")
    expect(image).to_have_attribute("src", re.compile(r"alabel/image/"), timeout=TIMEOUT)
    page.wait_for_function(
        "() => { const i = document.querySelector('#al-image img'); return i && i.complete && i.naturalWidth > 0; }",
        timeout=TIMEOUT,
    )
    return context, page


def _projects_offered(page: Page) -> list[str]:
    visible(page.get_by_label("Open a project", exact=True)).click()
    names = [o.inner_text().replace("✓", "").strip() for o in page.get_by_role("option").all()]
    page.keyboard.press("Escape")
    page.locator("#al-header").click()  # the list closes and the field lets go of the focus
    return names


def test_each_visitor_of_a_space_has_a_private_workspace(browser: Browser, space: tuple[str, Path]) -> None:
    url, projects = space
    a, page_a = _visit(browser, url)
    b, page_b = _visit(browser, url)
    try:
        # Each visitor starts from their own copy of the demo; A starts a project of their own.
        assert _projects_offered(page_a) == ["digits-demo"]
        open_section(page_a, "New project", page_a.get_by_label("Project name"))
        visible(page_a.get_by_label("Project name")).fill("a-secret")
        visible(page_a.get_by_role("textbox", name=re.compile(r"^Labels\b"))).fill("cat, dog")
        visible(page_a.get_by_role("button", name="Start Project")).click()
        expect(visible(page_a.get_by_label("Open a project", exact=True))).to_have_value("a-secret", timeout=TIMEOUT)
        page_a.reload()
        expect(visible(page_a.get_by_label("Open a project", exact=True))).to_have_value("a-secret", timeout=TIMEOUT)
        assert sorted(_projects_offered(page_a)) == ["a-secret", "digits-demo"]  # kept after a reload

        # B's page never offers it, and opening it by name through the API is refused.
        page_b.reload()
        expect(page_b.locator("#al-image img")).to_be_visible(timeout=TIMEOUT)
        assert _projects_offered(page_b) == ["digits-demo"]
        from gradio_client import Client

        stranger = Client(url, verbose=False)
        try:
            stranger.predict(api_name="/init")
            with pytest.raises(Exception, match="a-secret"):  # not one of its projects
                stranger.predict("a-secret", api_name="/open_project")
        finally:
            stranger.close()

        # A's images answer A and nobody else, even with their address.
        visible(page_a.get_by_label("Open a project", exact=True)).click()
        visible(page_a.get_by_role("option", name="digits-demo", exact=True)).click()
        visible(page_a.get_by_role("button", name="Open", exact=True)).click()
        expect(page_a.locator("#al-image img")).to_be_visible(timeout=TIMEOUT)
        src = page_a.locator("#al-image img").get_attribute("src")
        assert src and src != page_b.locator("#al-image img").get_attribute("src")
        assert a.request.get(url + src).status == 200
        assert b.request.get(url + src).status == 403
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(url + src)  # no page's cookie at all

        # No server path anywhere in what either page holds.
        for page in (page_a, page_b):
            html = page.content()
            assert str(projects) not in html and str(projects.parent) not in html and "/tmp/" not in html
        screenshot(page_b, "6-space-visitor-b")
        assert not ERRORS, f"JavaScript errors on the page: {ERRORS}"
        workspaces = [p for p in (projects / "workspaces").iterdir() if not p.name.startswith(".")]
        assert len(workspaces) == 3  # A, B, and the API visitor
    finally:
        a.close()
        b.close()


@pytest.fixture
def crowd(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """One shared project with a second opinion on half the images, served to everyone; the host has a password."""
    projects = tmp_path / "projects"
    session = ActiveLearningSession.create(projects, "crowd", ["red", "blue"], TINY.replace(overlap=0.5))
    session.add_data([save(noise(seed=i), tmp_path / "images" / f"img_{i:02d}.png") for i in range(16)])
    session.close()
    hosting = Hosting(shared_project="crowd", host_password="host-pw")
    with running_app(projects, model_choices=MODELS, base_settings=TINY, hosting=hosting) as url:
        yield url, projects


def test_a_crowd_labels_one_project_under_their_names(browser: Browser, crowd: tuple[str, Path]) -> None:
    url, projects = crowd
    a, page_a = _visit(browser, url)
    b, page_b = _visit(browser, url)
    try:
        names = [
            re.search(r"label as (\S+)\.", p.locator("#al-whoami").inner_text()).group(1) for p in (page_a, page_b)
        ]
        assert names[0] != names[1] and all(n.startswith("user#") for n in names)
        seen: dict[int, list[str]] = {}
        for _ in range(6):  # A and B take turns; each labels the image on their own screen
            for page, name in ((page_a, names[0]), (page_b, names[1])):
                frame = page.locator("#al-image .al-frame")
                expect(frame).to_have_attribute("data-id", re.compile(r"\d+"), timeout=TIMEOUT)
                image_id = int(frame.get_attribute("data-id"))
                assert name not in seen.get(image_id, []), "an annotator was given the same image twice"
                seen.setdefault(image_id, []).append(name)
                page.keyboard.press("1" if image_id % 2 else "2")  # both see the same colour in an image
                expect(page.locator("#al-image .al-frame")).not_to_have_attribute(
                    "data-id", str(image_id), timeout=TIMEOUT
                )
        twice = [i for i, who in seen.items() if len(who) == 2]
        assert twice, "no image reached both annotators"
        assert any(len(who) == 1 for who in seen.values())  # the others went to one annotator each

        history = ActiveLearningSession.open(projects, "crowd")
        try:
            recorded = {a.annotator for a in history.store.history()}
        finally:
            history.close()
        assert set(names) <= recorded

        # The dashboard shows each annotator and their agreement on the images both labeled.
        visible(page_a.get_by_role("tab", name="Dashboard")).click()
        visible(page_a.get_by_role("button", name="Refresh")).click()
        expect(page_a.locator("#al-annotators")).to_contain_text("Agreement (Cohen's kappa)", timeout=TIMEOUT)
        for name in names:
            expect(page_a.locator("#al-annotators")).to_contain_text(name)
        screenshot(page_a, "7-crowd-dashboard")

        # A visitor cannot export: no export on the page, and the API refuses it; the host password unlocks it.
        expect(page_b.get_by_text("Export", exact=True)).to_have_count(0)
        expect(page_b.locator("#al-host-tools")).to_be_hidden()
        from gradio_client import Client

        visitor = Client(url, verbose=False)
        try:
            visitor.predict(api_name="/init")
            with pytest.raises(Exception, match="Only the host"):
                visitor.predict("labels_csv", api_name="/export")
        finally:
            visitor.close()
        page_b.get_by_text("Host", exact=True).click()
        visible(page_b.get_by_label("Host password")).fill("host-pw")
        visible(page_b.get_by_role("button", name="Sign in as host")).click()
        expect(page_b.locator("#al-host-tools")).to_be_visible(timeout=TIMEOUT)
        expect(page_b.locator("#al-whoami")).to_contain_text("You are the host")
        assert not ERRORS, f"JavaScript errors on the page: {ERRORS}"
    finally:
        a.close()
        b.close()
