"""The app in headless Chromium: create a project from a folder, label with the keyboard, save and export a model.

The app runs in this process on a free port over a temporary projects folder with the tiny random-weight model,
so a whole round trains in seconds on a laptop CPU. Screenshots of the key moments and the measured key-to-image
latency are kept in ``test-artifacts/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.engine.demo import write_digits
from app.engine.session import ActiveLearningSession
from app.ui import registry
from tests.browser_support import (
    ARTIFACTS,
    LATENCY_PROBE,
    VIEWPORT,
    caption_name,
    choose,
    chromium,
    image_src,
    open_section,
    running_app,
    screenshot,
    visible,
)
from tests.ui_support import DIGITS, MODELS, TINY, TINY_MODEL, digit_of, wait_round

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # the `browser` fixture skips (or fails) with the reason
    Browser = Page = expect = sync_playwright = None

TIMEOUT = 90_000  # ms; rounds train in a background thread and the first batch needs embeddings
IMAGE_SRC = re.compile(r"alabel/image/.+\.png")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=20_000)
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URL, projects folder) of the app with the tiny model."""
    projects = tmp_path_factory.mktemp("projects")
    with running_app(projects, model_choices=MODELS, base_settings=TINY) as url:
        yield url, projects


@pytest.fixture
def page(browser: Browser, app: tuple[str, Path]) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(app[0])
    # the page's load event has run (it lists the projects, which may have been made after the page was built)
    expect(pg.locator("#al-caption")).to_contain_text("Open a project or start a new one")
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def engine_project(
    projects: Path, name: str, files: list[Path], labels: list[str], **settings
) -> ActiveLearningSession:
    """A project with images, made through the engine (and shared with the app) so a test starts where it matters."""
    session = ActiveLearningSession.create(projects, name, labels, TINY.replace(**settings))
    session.add_data([str(f) for f in files])
    return registry.register(projects, session)


def open_project(page: Page, name: str) -> None:
    """Open a project made after the page loaded: Refresh list, pick it, Open; wait for its first image."""
    page.get_by_role("button", name="Refresh list").click()
    choose(page, "Open a project", name)
    page.locator("#al-open").click()
    expect(visible(page.locator("#al-image img"))).to_have_attribute("src", IMAGE_SRC, timeout=TIMEOUT)


@pytest.mark.browser
@pytest.mark.slow
def test_create_a_project_from_a_folder_upload(page: Page, tmp_path: Path) -> None:
    folder = tmp_path / "my digits"
    files = write_digits(folder, size=32, limit=30)

    open_section(page, "New project", page.locator("#al-start"))
    visible(page.get_by_label("Project name", exact=True)).fill("browser-upload")
    expect(visible(page.get_by_label("Model type", exact=True))).to_have_value(TINY_MODEL)
    visible(page.get_by_role("textbox", name=re.compile(r"^Labels\b"))).fill(", ".join(DIGITS))
    screenshot(page, "1a-new-project-form")
    page.locator("#al-start").click()

    expect(page.locator("#al-caption")).to_contain_text("Add images", timeout=TIMEOUT)
    expect(visible(page.get_by_label("Open a project", exact=True))).to_have_value("browser-upload")
    for digit in DIGITS:
        expect(page.locator("#al-labels")).to_contain_text(digit)
    expect(page.locator("#al-status")).to_contain_text("No images yet")

    # The Add images section opens by itself for a project without images; upload the folder.
    folder_input = page.locator("input[type=file][webkitdirectory]")
    expect(folder_input).to_have_count(1)
    folder_input.set_input_files(folder)
    uploaded = page.get_by_role("row", name=re.compile(r"^digit_\d{4}\.png\b"))
    expect(uploaded).to_have_count(len(files), timeout=TIMEOUT)  # every file of the folder is uploaded
    screenshot(page, "1b-folder-uploaded")
    page.get_by_role("button", name="Import images").click()

    report = page.locator("#al-report")
    expect(report).to_contain_text(f"Imported {len(files)}", timeout=TIMEOUT)
    expect(report).to_contain_text("duplicates 0")
    expect(report).to_contain_text("rejected 0")
    image = visible(page.locator("#al-image img"))
    expect(image).to_have_attribute("src", IMAGE_SRC, timeout=TIMEOUT)
    expect(page.locator("#al-caption")).to_contain_text(re.compile(r"digit_\d{4}\.png · 32×32"))
    expect(page.locator("#al-progress")).to_contain_text(f"Image 1 of {TINY.batch_size} in this batch")
    expect(page.locator("#al-progress")).to_contain_text(f"0 of {len(files)} labeled")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert caption_name(page) in {f.name for f in files}
    screenshot(page, "1c-imported-first-image")


@pytest.mark.browser
@pytest.mark.slow
def test_label_a_batch_with_the_keyboard_then_see_predictions_and_the_curve(
    page: Page, app: tuple[str, Path], tmp_path: Path
) -> None:
    labels = ["0", "1", "2"]  # every label has a number key; half of each batch random checks: enough to measure
    files = [f for f in write_digits(tmp_path / "digits", size=32, limit=60) if digit_of(f.name) in labels]
    batch = 6
    engine_project(app[1], "browser-keys", files, labels, batch_size=batch, audit_share=0.5)
    open_project(page, "browser-keys")
    expect(page.locator("#al-progress")).to_contain_text(f"Image 1 of {batch} in this batch")
    page.evaluate(LATENCY_PROBE)
    expect(page.get_by_label("Auto-submit when a label is picked")).to_be_checked()
    samples: list[dict] = []

    def key_of(name: str) -> str:
        return str(labels.index(digit_of(name)) + 1)

    def press(key: str, action: str, *, expect_name: str | None = None) -> str:
        """Press `key`, wait for the image to change, record the latency; returns the new image's file name."""
        before = image_src(page)
        count = page.evaluate("() => window.__alLatency.changes.length")
        page.keyboard.press(key)
        page.wait_for_function("n => window.__alLatency.changes.length > n", arg=count, timeout=TIMEOUT)
        change = page.evaluate("n => window.__alLatency.changes[n]", count)
        if change["src"]:
            page.wait_for_function("n => window.__alLatency.changes[n].loadedAt !== null", arg=count)
            change = page.evaluate("n => window.__alLatency.changes[n]", count)
            samples.append(
                {
                    "action": action,
                    "key": key,
                    "src_changed_ms": round(change["at"] - change["keyAt"], 1),
                    "image_loaded_ms": round(change["loadedAt"] - change["keyAt"], 1),
                }
            )
        assert change["src"] != before
        # the server's answer (caption, progress, the model's guess) follows the image the page showed at once
        page.wait_for_function("() => !document.body.classList.contains('al-pending')", timeout=TIMEOUT)
        if expect_name is not None:
            expect(page.locator("#al-caption strong").first).to_have_text(expect_name)
        return caption_name(page) if change["src"] else ""

    first = caption_name(page)
    second = press(key_of(first), "label (auto-submit)")
    assert second != first
    expect(page.locator("#al-progress")).to_contain_text(f"Image 2 of {batch}")
    press("u", "undo", expect_name=first)  # undo takes the label back and shows that image again
    expect(page.locator("#al-progress")).to_contain_text(f"0 of {len(files)} labeled")
    press(key_of(first), "label (auto-submit)", expect_name=second)
    third = press("s", "skip")
    assert third not in {first, second}
    press("ArrowLeft", "previous", expect_name=second)  # back to the skipped image: label it after all
    press(key_of(second), "label (auto-submit)", expect_name=third)
    press("ArrowLeft", "previous", expect_name=second)  # a labeled image shows its label, Enter submits it again
    expect(page.locator("#al-labels input:checked")).to_have_value(digit_of(second))
    press("Enter", "submit (Enter)", expect_name=third)
    screenshot(page, "2a-labeling-with-keys")
    current = third
    seen = {first, second}
    for position in range(3, batch + 1):
        expect(page.locator("#al-progress")).to_contain_text(f"Image {position} of {batch}")
        assert current not in seen
        seen.add(current)
        current = press(key_of(current), "label (auto-submit)")
    # Labeling never waits for training: the next image (picked at random while there is no model) is shown at
    # once, and the model's guess for every label appears under it when the round, trained in the background, ends.
    assert current and current not in seen
    expect(page.locator("#al-status")).to_contain_text("Model of round 1 ready", timeout=TIMEOUT)
    predictions = page.locator("#al-predictions")
    expect(predictions).to_contain_text("Model's guess")
    # Three random checks so far, too few to calibrate on: the top label shows without a percentage, and why.
    expect(predictions.locator("[data-testid$='-confidence-set']")).to_have_count(0)
    expect(page.locator("#al-progress")).to_contain_text("Round 1")
    expect(page.locator("#al-progress")).to_contain_text(f"{batch} of {len(files)} labeled")
    screenshot(page, "2b-predictions-after-round-1")
    current = press(key_of(current), "label (auto-submit)")
    expect(page.locator("#al-caption")).to_contain_text(re.compile("without a percentage|not sure yet"))

    # A second batch, picked by the model of round 1, gives the learning curve its second point.
    for _ in range(2 * batch):
        position = re.search(r"Image (\d+) of (\d+)", page.locator("#al-progress").inner_text())
        last = position is not None and position.group(1) == position.group(2)
        current = press(key_of(current), "label (auto-submit)")
        if last:
            break
    else:
        pytest.fail("The second batch never reached its last image.")
    expect(page.locator("#al-status")).to_contain_text("Model of round 2 ready", timeout=TIMEOUT)
    # six random checks by now: the status line shows the estimate with its range and count, and the stop advice
    expect(page.locator("#al-status")).to_contain_text(re.compile(r"Accuracy about \d+% \(95% range \d+%–\d+%, from 6"))
    expect(page.locator("#al-status")).to_contain_text("Keep going:")
    # Calibrated on six random checks, the guess panel now gives every label its probability.
    expect(predictions.locator("[data-testid$='-confidence-set']")).to_have_count(len(labels), timeout=TIMEOUT)
    expect(predictions.locator("meter")).to_have_count(len(labels))

    visible(page.get_by_role("tab", name="Dashboard")).click()
    expect(page.get_by_text("2 round(s)")).to_be_visible(timeout=TIMEOUT)
    rounds = visible(page.get_by_role("grid", name="Dataframe"))
    expect(rounds.get_by_role("row", name=re.compile(r"^1 Margin \+ diversity 6\b"))).to_have_count(1)
    row = re.compile(r"^2 Margin \+ diversity \d+ [\d.]+ [\d.]+–[\d.]+ 6 [\d.]+$")
    expect(rounds.get_by_role("row", name=row)).to_have_count(1)
    expect(page.get_by_text("Keep going:").first).to_be_visible()
    # Vega labels every point of the curve for assistive technology: round 2 only (round 1 had 3 random checks,
    # too few to measure), as the estimate and both ends of its range.
    for metric in ("accuracy (estimate)", "95% range: low end", "95% range: high end"):
        points = page.locator(f'[aria-roledescription="point"][aria-label$="; metric: {metric}"]')
        expect(points).to_have_count(1)
        expect(points.first).to_have_attribute("aria-label", re.compile(r"^labeled images: \d+; accuracy: [\d.]+;"))
    expect(page.get_by_role("table", name=re.compile("random checks: rows are the true label"))).to_be_visible()
    expect(page.get_by_role("table", name=re.compile("Accuracy per label"))).to_be_visible()
    screenshot(page, "2c-dashboard")
    _record_latency(samples)


@pytest.mark.browser
@pytest.mark.slow
def test_fast_keys_double_clicks_and_held_keys_label_each_image_once(
    page: Page, app: tuple[str, Path], tmp_path: Path
) -> None:
    """Keys typed faster than the server answers apply, in order, to the images they were typed for."""
    labels = ["0", "1", "2"]
    files = [f for f in write_digits(tmp_path / "digits", size=32, limit=90) if digit_of(f.name) in labels]
    session = engine_project(app[1], "browser-fast", files, labels, batch_size=20)  # no round ends meanwhile
    open_project(page, "browser-fast")
    idle = "() => !document.body.classList.contains('al-pending')"

    def on_screen() -> list[str]:
        """The image's file name, then those fetched ahead, in the order the server hands them out."""
        names = page.evaluate("() => [...document.querySelectorAll('#al-prefetch img')].map(i => i.alt)")
        return [caption_name(page), *names]

    def key_of(name: str) -> str:
        return str(labels.index(digit_of(name)) + 1)

    typed: list[str] = []
    for _ in range(4):  # three keys at once, four times
        page.wait_for_function(idle)
        names = on_screen()[:3]
        for name in names:
            page.keyboard.press(key_of(name))
        typed += names
        page.wait_for_function(idle, timeout=TIMEOUT)
        expect(page.locator("#al-caption strong").first).not_to_have_text(names[-1])
    page.wait_for_function(idle)
    clicked = caption_name(page)  # a double click on a label labels the image on screen only
    visible(page.locator("#al-labels label").filter(has_text=re.compile(rf"^\s*{digit_of(clicked)}\s*$"))).dblclick()
    page.wait_for_function(idle, timeout=TIMEOUT)
    page.wait_for_timeout(300)
    page.wait_for_function(idle, timeout=TIMEOUT)
    held = caption_name(page)  # a key held down labels once
    page.keyboard.down(key_of(held))
    page.wait_for_timeout(600)
    page.keyboard.up(key_of(held))
    page.wait_for_function(idle, timeout=TIMEOUT)
    page.wait_for_timeout(300)

    history = [(session.store.get_image(a.image_id).original_name, a.label) for a in session.store.history()]
    names = [name for name, _ in history]
    assert names == [*typed, clicked, held]  # every key once, in order, none lost, none twice
    assert all(label == digit_of(name) for name, label in history)  # each label for the image it was typed for


@pytest.mark.browser
def test_a_reload_keeps_the_tabs_image_and_its_undo(page: Page, app: tuple[str, Path], tmp_path: Path) -> None:
    """The tab's id survives a reload: it resumes at its own image and can still take back its label."""
    labels = ["0", "1"]
    files = [f for f in write_digits(tmp_path / "digits", size=32, limit=40) if digit_of(f.name) in labels]
    session = engine_project(app[1], "browser-reload", files, labels, batch_size=10)
    open_project(page, "browser-reload")
    idle = "() => !document.body.classList.contains('al-pending')"
    first = caption_name(page)
    page.keyboard.press(str(labels.index(digit_of(first)) + 1))
    page.wait_for_function(idle, timeout=TIMEOUT)
    expect(page.locator("#al-caption strong").first).not_to_have_text(first)
    second = caption_name(page)
    page.reload()
    expect(page.locator("#al-caption strong").first).to_have_text(second, timeout=TIMEOUT)
    page.keyboard.press("u")
    expect(page.locator("#al-caption strong").first).to_have_text(first, timeout=TIMEOUT)
    assert [(a.undone, session.store.get_image(a.image_id).original_name) for a in session.store.history()] == [
        (True, first)
    ]


def _record_latency(samples: list[dict]) -> None:
    """Write the key-to-image latencies to ``test-artifacts/keyboard_latency.json`` (a measurement, not a test)."""
    src = [s["src_changed_ms"] for s in samples]
    loaded = [s["image_loaded_ms"] for s in samples]
    summary = {
        "what": "ms from keydown until the labeling image's src changed, and until the new image had loaded",
        "samples": samples,
        "src_changed_ms": {"median": statistics.median(src), "max": max(src)},
        "image_loaded_ms": {"median": statistics.median(loaded), "max": max(loaded)},
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "keyboard_latency.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\nkey-to-image latency over {len(samples)} key presses: src changed after median "
        f"{summary['src_changed_ms']['median']} ms (max {summary['src_changed_ms']['max']}), image loaded after "
        f"median {summary['image_loaded_ms']['median']} ms (max {summary['image_loaded_ms']['max']})"
    )


@pytest.mark.browser
@pytest.mark.slow
def test_save_a_checkpoint_and_download_the_onnx_model(page: Page, app: tuple[str, Path], tmp_path: Path) -> None:
    import onnxruntime as ort

    files = write_digits(tmp_path / "digits", size=32, limit=30)
    session = engine_project(app[1], "browser-export", files, DIGITS)
    session.ensure_batch()
    for item in session.batch():
        session.label(item.image_id, digit_of(session.store.get_image(item.image_id).original_name))
    wait_round(session)
    open_project(page, "browser-export")
    expect(page.locator("#al-status")).to_contain_text("Model of round 1 ready")

    visible(page.get_by_label("Name (optional)", exact=True)).fill("from-the-browser")
    page.get_by_role("button", name="Save Checkpoint").click()
    saved = visible(page.get_by_label("Saved checkpoints", exact=True))
    expect(saved).to_have_value(f"from-the-browser · round 1 · {TINY.batch_size} labels", timeout=TIMEOUT)
    expect(visible(page.get_by_label("Name (optional)", exact=True))).to_have_value("")
    saved.click()
    expect(visible(page.get_by_role("option", name=re.compile(r"^from-the-browser · round 1")))).to_be_visible()
    assert "from-the-browser" in [c["name"] for c in session.list_checkpoints()]
    screenshot(page, "3a-checkpoint-saved")
    page.keyboard.press("Escape")

    export_kind = page.get_by_label("What to export", exact=True)
    open_section(page, "Export", export_kind)
    choose(page, "What to export", "Model: ONNX")
    visible(page.get_by_role("button", name="Export", exact=True)).click()
    link = visible(page.get_by_role("row", name=re.compile(r"^model\.onnx\b")).get_by_role("link"))
    expect(link).to_be_visible(timeout=TIMEOUT)
    screenshot(page, "3b-onnx-exported")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename.endswith(".onnx")
    path = tmp_path / "downloaded.onnx"
    download.save_as(path)

    model = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = model.get_inputs()
    channels, height, width = inp.shape[1:]
    assert (channels, height, width) == (3, TINY.image_size, TINY.image_size)
    rng = np.random.default_rng(0)
    for n in (1, 3):
        x = rng.standard_normal((n, channels, height, width)).astype(np.float32)
        (logits,) = model.run(None, {inp.name: x})
        assert logits.shape == (n, len(DIGITS))
        assert np.isfinite(logits).all()
