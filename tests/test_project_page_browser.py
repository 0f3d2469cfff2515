"""In Chromium: Export project downloads the open project as one zip; Import project uploads it, opens it under a
free name with its first image; a crafted zip is refused on the page with what to do, and nothing is created.
Screenshots of the Project panel on a laptop (1280x800) and a phone (390x844)."""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch

from app.engine.project_import import import_project
from app.engine.session import ActiveLearningSession
from app.ui import registry
from tests.browser_support import (
    SCREENSHOTS,
    caption_name,
    choose,
    chromium,
    open_section,
    running_app,
    screenshot,
    visible,
)
from tests.test_project_page import make_trained_project
from tests.ui_support import MODELS, TINY

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:  # chromium() skips (or fails under ALABEL_REQUIRE_BROWSER=1) without Playwright
    Browser = Page = expect = None

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
IMAGE_SRC = re.compile(r"alabel/image/.+\.png")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        expect.set_options(timeout=30_000)
        yield b


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """(URL, projects folder, a zip of the trained project 'digits' made elsewhere)."""
    root = tmp_path_factory.mktemp("browser-zip")
    make_trained_project(root / "laptop", root / "images")
    session = ActiveLearningSession.open(root / "laptop", "digits")
    archive = Path(shutil.copy(session.export("project_zip"), root / "digits.zip"))
    session.close()
    with running_app(root / "projects", model_choices=MODELS, base_settings=TINY) as url:
        yield url, root / "projects", archive


def _page(browser: Browser, url: str, viewport: dict) -> tuple[Page, list[str]]:
    page = browser.new_context(viewport=viewport, accept_downloads=True).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    expect(page.locator("#al-caption")).to_contain_text("Open a project or start a new one")
    return page, errors


def _side(page: Page, name: str) -> Path:
    """A PNG of the left column (Project and the sections under it), as a test artifact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.locator("#al-side").screenshot(path=str(path))
    return path


def _upload(page: Page, archive: Path) -> None:
    open_section(page, "Whole project (zip)", page.locator("#al-import-project"))
    page.locator("#al-project-upload input[type=file]").set_input_files(archive)
    expect(visible(page.get_by_role("row", name=re.compile(rf"^{re.escape(archive.name)}\b")))).to_be_visible()
    page.locator("#al-import-project").click()


@pytest.mark.browser
@pytest.mark.slow
def test_import_a_project_zip_in_the_page_then_export_it(
    browser: Browser, app: tuple[str, Path, Path], tmp_path: Path
) -> None:
    url, projects, archive = app
    page, errors = _page(browser, url, LAPTOP)

    _upload(page, archive)

    report = page.locator("#al-project-zip-report")
    expect(report).to_contain_text("Imported 'digits': 30 images, 5 labeled, with its history and models.")
    expect(visible(page.get_by_label("Open a project", exact=True))).to_have_value("digits")
    expect(visible(page.locator("#al-image img"))).to_have_attribute("src", IMAGE_SRC)
    expect(page.locator("#al-status")).to_contain_text("round 1")
    expect(page.locator("#al-predictions [data-testid=label-output-value]")).not_to_be_empty()
    assert ActiveLearningSession.list_projects(projects) == ["digits"]
    _side(page, "20a-project-zip-imported")
    screenshot(page, "20a-project-zip-imported-page")

    page.locator("#al-export-project").click()
    link = visible(page.locator("#al-project-download").get_by_role("link"))
    expect(link).to_be_visible()
    with page.expect_download() as info:
        link.click()
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert saved.name == "digits.zip" and "manifest.json" in zipfile.ZipFile(saved).namelist()

    _upload(page, saved)  # the same project again: a free name
    expect(report).to_contain_text("Imported 'digits 2' (the name 'digits' was taken, so it is renamed)")
    expect(visible(page.get_by_label("Open a project", exact=True))).to_have_value("digits 2")
    assert ActiveLearningSession.list_projects(projects) == ["digits", "digits 2"]
    assert not errors, errors


@pytest.mark.browser
@pytest.mark.slow
def test_a_crafted_zip_is_refused_in_the_page_and_nothing_is_created(
    browser: Browser, app: tuple[str, Path, Path], tmp_path: Path
) -> None:
    url, projects, archive = app
    crafted = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(crafted, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("images/../../evil.png", b"x")
    before = sorted(p.name for p in projects.iterdir())
    page, errors = _page(browser, url, LAPTOP)

    _upload(page, crafted)

    report = page.locator("#al-project-zip-report")
    expect(report).to_contain_text("The project zip was not imported: its entry")
    expect(report).to_contain_text("goes up with '..'")
    expect(report).to_contain_text("Export the project again with this app.")
    expect(page.locator("#al-caption")).to_contain_text("Open a project or start a new one")  # nothing opened
    assert sorted(p.name for p in projects.iterdir()) == before and not (tmp_path.parent / "evil.png").exists()
    _side(page, "20b-project-zip-refused")
    assert not errors, errors


@pytest.mark.browser
@pytest.mark.slow
def test_the_project_panel_on_a_phone(browser: Browser, app: tuple[str, Path, Path]) -> None:
    url, _, _ = app
    page, errors = _page(browser, url, PHONE)
    open_section(page, "Whole project (zip)", page.locator("#al-import-project"))
    for selector in ("#al-export-project", "#al-project-upload", "#al-import-project"):
        box = visible(page.locator(selector)).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1, selector
    _side(page, "20c-project-panel-phone")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    assert not errors, errors


@pytest.mark.browser
@pytest.mark.slow
def test_a_model_imported_into_the_open_project_guesses_from_the_first_image(
    browser: Browser, app: tuple[str, Path, Path], tmp_path: Path
) -> None:
    url, projects, archive = app
    name = import_project(archive, projects).name  # a copy of the trained project, made beside the page
    weights = tmp_path / "digits10.safetensors"
    torch.manual_seed(3)
    safetensors.torch.save_file(timm.create_model("test_efficientnet", num_classes=10).state_dict(), str(weights))
    page, errors = _page(browser, url, LAPTOP)
    page.get_by_role("button", name="Refresh list").click()
    choose(page, "Open a project", name)
    page.locator("#al-open").click()
    expect(visible(page.locator("#al-image img"))).to_have_attribute("src", IMAGE_SRC)

    open_section(page, "Start from your own model", page.locator("#al-pm-verify"))
    page.locator("#al-pm-target").get_by_label("The open project: its labels stay").check()
    expect(page.locator("#al-pm-name")).to_be_hidden()
    expect(page.locator("#al-pm-import")).to_be_hidden()
    arch = page.locator("#al-pm-arch input")
    arch.fill("test_efficientnet")
    arch.press("Enter")
    page.locator("#al-pm-file input[type=file]").set_input_files(weights)
    expect(visible(page.get_by_role("row", name=re.compile(r"^digits10\.safetensors\b")))).to_be_visible()
    page.locator("#al-pm-verify").click()
    report = page.locator("#al-model-report")
    expect(report).to_contain_text("Model check passed", timeout=60_000)
    expect(report).to_contain_text("10: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9")  # the open project's labels
    shown = caption_name(page)

    page.locator("#al-pm-into").click()

    expect(report).to_contain_text("Your 5 labels stay", timeout=60_000)
    expect(report).to_contain_text("Classifier: kept")
    expect(page.locator("#al-status")).to_contain_text("The imported model is active; your 5 labels are kept")
    expect(page.locator("#al-predictions [data-testid=label-output-value]")).not_to_be_empty()
    session = registry.get(projects, name)
    image_id = next(i for i in session.store.image_ids() if session.store.get_image(i).original_name == shown)
    guess = session.predictions(image_id)
    assert guess is not None and caption_name(page) == shown  # the same image, now with the imported model's guess
    assert session.model.active().describe() == "the imported model"
    _side(page, "20d-model-into-open-project")
    screenshot(page, "20d-model-into-open-project-page")
    assert not errors, errors
