"""Helpers for the browser tests: Chromium or a clear skip, the app on a free port, and page actions.

The tests drive Debian's Chromium (``/usr/bin/chromium``) through Playwright's sync API; `playwright install` is
never needed. Without Chromium the tests are skipped, unless ``ALABEL_REQUIRE_BROWSER=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
NO_CHROMIUM = "Chromium is not installed (apt-get install -y chromium chromium-driver)"
NO_PLAYWRIGHT = "Playwright is not installed (pip install -r requirements-dev.txt)"
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
VIEWPORT = {"width": 1400, "height": 1000}

# Records when a key goes down and when the labeling image's src changes (and when the new image has loaded).
LATENCY_PROBE = """
() => {
  if (window.__alLatency) return;
  const state = (window.__alLatency = { key: null, keyAt: 0, changes: [] });
  document.addEventListener("keydown", (e) => { state.key = e.key; state.keyAt = performance.now(); }, true);
  const root = document.getElementById("al-image");
  let last = root.querySelector("img")?.getAttribute("src") || "";
  new MutationObserver(() => {
    const img = root.querySelector("img");
    const src = img?.getAttribute("src") || "";
    if (src === last) return;
    last = src;
    const change = { src, key: state.key, keyAt: state.keyAt, at: performance.now(), loadedAt: null };
    state.changes.push(change);
    if (!img) return;
    const loaded = () => { if (change.loadedAt === null) change.loadedAt = performance.now(); };
    if (img.complete && img.naturalWidth) loaded(); else img.addEventListener("load", loaded, { once: true });
  }).observe(root, { subtree: true, childList: true, attributes: true, attributeFilter: ["src"] });
}
"""


def require_browser() -> None:
    """Skip (or fail, when ``ALABEL_REQUIRE_BROWSER=1``) unless Chromium and Playwright are available."""
    reason = None
    if not CHROMIUM.exists():
        reason = NO_CHROMIUM
    elif importlib.util.find_spec("playwright") is None:
        reason = NO_PLAYWRIGHT
    if reason is None:
        return
    if os.environ.get("ALABEL_REQUIRE_BROWSER") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator:
    """Debian's Chromium through Playwright (skips, or fails under ``ALABEL_REQUIRE_BROWSER=1``, without it)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(projects_dir: Path, **build_kwargs) -> Iterator[str]:
    """The app launched in this process on a free local port; yields its URL and closes it afterwards."""
    from app.ui import registry
    from app.ui.layout import build_demo
    from app.ui.server import launch_kwargs

    blocks = build_demo(projects_dir, **build_kwargs)
    try:
        _, url, _ = blocks.launch(
            prevent_thread_lock=True,
            server_name="127.0.0.1",
            server_port=free_port(),
            quiet=True,
            **launch_kwargs(),
        )
        yield url
    finally:
        blocks.close()
        registry.close_all(projects_dir)


def screenshot(page: Page, name: str) -> Path:
    """Keep a full-page PNG of the moment as a test artifact (``test-artifacts/screenshots/<name>.png``)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def visible(locator: Locator) -> Locator:
    """The first visible match (closed accordions and hidden twins of a label are passed over)."""
    return locator.filter(visible=True).first


def open_section(page: Page, title: str, content: Locator) -> None:
    """Open the accordion `title` (unless it is open) and wait for `content`, something inside it."""
    from playwright.sync_api import expect

    header = visible(page.locator("button.label-wrap", has_text=re.compile(rf"^\s*{re.escape(title)}\s*▼?\s*$")))
    expect(header).to_be_visible()
    if "open" not in (header.get_attribute("class") or "").split():
        header.click()
    expect(visible(content)).to_be_visible()


def choose(page: Page, label: str, option: str) -> None:
    """Pick `option` in the dropdown labelled `label`."""
    visible(page.get_by_label(label, exact=True)).click()
    visible(page.get_by_role("option", name=option, exact=True)).click()


def caption_name(page: Page) -> str:
    """The file name in bold at the start of the caption under the image."""
    return visible(page.locator("#al-caption strong")).inner_text().strip()


def image_src(page: Page) -> str:
    """The ``src`` of the image being labeled ('' when none is shown)."""
    return page.evaluate("() => document.querySelector('#al-image img')?.getAttribute('src') || ''")
