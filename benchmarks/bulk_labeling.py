"""One image at a time against the review grid, in Chromium, on the digits demo, by an honest scripted labeler.

Two copies of one starting project (the digits demo with its first batch labeled and its first model trained)
are served in this process. On the first, the labeler labels `--labels` images one at a time with the number
keys (auto-submit: one key per label). On the second, it pages through the Review tab's confident guesses, label
after label: a tile whose guess is wrong is clicked (deselected: it stays unlabeled), then Enter accepts the page.
Actions are key presses and clicks. Reported per way: actions per label, label accuracy (against the true
digits), wall time, and the app's own model accuracy on the images still unlabeled once its round is done;
for the grid also the time from Enter to the next page on screen (the page fetched ahead, shown by the page's
script), to all its images loaded, and to the server's answer (its own next page in place). Then pages of 48 tiles
(`--render-pages` of them, the grid's page size set to 48 in this process): from the click on a label to 48
tiles on screen with their images loaded and painted (also timed in the page), and the same for the 48-tile page
fetched ahead on Enter.

    python -m benchmarks.bulk_labeling                    # 300 labels each way
    python -m benchmarks.bulk_labeling --labels 120 --out bulk.json

Targets (issue): <= 0.3 actions per label at >= 99 % label accuracy; Enter to next page <= 150 ms p95; a 48-tile
page renders in <= 300 ms p95.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from app.core.store import ProjectStore
from app.engine.demo import DEMO_NAME, open_or_create_demo
from app.engine.session import ActiveLearningSession
from app.engine.workspaces import copy_project
from app.ui import registry, review_handlers
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, running_app

TARGETS = load_digits().target
PAGE = "#al-review-grid [data-page]"
ANSWERED = (
    "() => !(document.querySelector('#al-review-grid [data-page]')?.dataset.page || 'ahead:').startsWith('ahead:')"
)
# In the page: from Enter going down (window, capture: before the grid's own listener) to the frame after the
# next page is in the grid (its `data-page` changed), free of the round trips of Playwright's polling.
# Also from a click on a label to the frame after the page it asked for is in the grid with every image of it
# loaded (`fresh`).
GRID_PROBE = """() => {
  if (window.__alGridProbe) return;
  const probe = (window.__alGridProbe = { key: 0, shown: [], click: 0, fresh: [] });
  let last = null;
  window.addEventListener("keydown", (e) => { if (e.key === "Enter") probe.key = performance.now(); }, true);
  window.addEventListener("click", (e) => {
    if (e.target.closest && e.target.closest("#al-review-labels label")) probe.click = performance.now();
  }, true);
  const whenLoaded = (at) => {
    const imgs = Array.from(document.querySelectorAll("#al-review-grid .al-grid .al-tile img"));
    if (!imgs.every((i) => i.complete && i.naturalWidth)) { setTimeout(() => whenLoaded(at), 2); return; }
    requestAnimationFrame(() => probe.fresh.push(performance.now() - at));
  };
  new MutationObserver(() => {
    const now = document.querySelector("#al-review-grid [data-page]")?.dataset.page;
    if (!now || now === last) return;
    last = now;
    if (probe.key) {
      const at = probe.key;
      probe.key = 0;
      requestAnimationFrame(() => probe.shown.push(performance.now() - at));
    } else if (probe.click) {
      const at = probe.click;
      probe.click = 0;
      whenLoaded(at);
    }
  }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-page"] });
}"""
LOADED = """() => new Promise((done) => {
  const imgs = Array.from(document.querySelectorAll('#al-review-grid .al-grid .al-tile img'));
  const check = () => imgs.every((i) => i.complete && i.naturalWidth)
    ? requestAnimationFrame(() => requestAnimationFrame(() => done(imgs.length))) : setTimeout(check, 5);
  check();
})"""


def truth(session: ActiveLearningSession, image_id: int) -> str:
    return str(int(TARGETS[int(re.search(r"digit_(\d+)", session.image(image_id).original_name).group(1))]))


def wait_round(session: ActiveLearningSession, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = session.round_status()
        if status is None or not status.active:
            return
        time.sleep(0.2)


def starting_project(root: Path) -> Path:
    """The demo with its first batch labeled (the true digits) and its first model trained."""
    session = open_or_create_demo(root / "base")
    for item in session.batch():
        session.label(item.image_id, truth(session, item.image_id), annotator="seed")
    wait_round(session)
    folder = session.images_dir.parent
    session.close()
    return folder


def rename_copy(folder: Path) -> None:
    """A copied project takes its folder's name: the app keeps open projects by the name they store, so a copy
    still named after its source would be opened again on every request (and the timings with it)."""
    store = ProjectStore(folder, create=False)
    store.update_settings(name=folder.name)
    store.close()


def model_accuracy(session: ActiveLearningSession) -> float:
    """The app's model on every image still unlabeled (the true digits), once its round is done."""
    session.maybe_start_round()
    time.sleep(0.5)
    wait_round(session)
    labeled = set(session.store.current_labels())
    rest = [i for i in session.store.image_ids() if i not in labeled]
    right = 0
    for i in rest:
        p = session.predictions(i) or {}
        right += bool(p) and max(p, key=p.get) == truth(session, i)
    return right / max(1, len(rest))


def summary(session: ActiveLearningSession, before: set[int], actions: int, seconds: float) -> dict:
    labels = {i: lab for i, lab in session.store.current_labels().items() if i not in before}
    correct = sum(lab == truth(session, i) for i, lab in labels.items())
    return {
        "labels": len(labels),
        "actions": actions,
        "actions_per_label": round(actions / max(1, len(labels)), 3),
        "label_accuracy": round(correct / max(1, len(labels)), 4),
        "wall_seconds": round(seconds, 1),
        "model_accuracy_on_unlabeled": round(model_accuracy(session), 4),
    }


def open_project(page, name: str) -> None:
    page.get_by_label("Open a project", exact=True).first.click()
    page.get_by_role("option", name=name, exact=True).first.click()
    page.locator("#al-open").click()
    page.locator("#al-image img").first.wait_for(timeout=60_000)


def one_at_a_time(page, session: ActiveLearningSession, count: int) -> dict:
    open_project(page, "single")
    before, actions, start = set(session.store.current_labels()), 0, time.perf_counter()
    while len(session.store.current_labels()) - len(before) < count:
        frame = page.locator("#al-image .al-frame")
        image_id = int(frame.get_attribute("data-id", timeout=60_000))
        page.keyboard.press(str((int(truth(session, image_id)) + 1) % 10))
        actions += 1
        page.wait_for_function(
            f"() => document.querySelector('#al-image .al-frame')?.dataset.id !== '{image_id}'", timeout=60_000
        )
    page.wait_for_timeout(500)
    return summary(session, before, actions, time.perf_counter() - start)


def with_the_grid(page, session: ActiveLearningSession, count: int) -> dict:
    open_project(page, "grid")
    page.evaluate(GRID_PROBE)
    page.get_by_role("tab", name="Review").click()
    before, actions, start = set(session.store.current_labels()), 0, time.perf_counter()
    to_next, loaded, answered, label_index, empty = [], [], [], 0, 0
    while len(session.store.current_labels()) - len(before) < count and empty < 10:
        label = session.labels[label_index % len(session.labels)]
        label_index += 1
        page.locator("#al-review-labels").get_by_text(label, exact=True).first.click()
        actions += 1
        note = page.locator("#al-review-grid .al-grid-note, #al-review-grid .al-grid-empty").first
        page.wait_for_function(
            f"() => (document.querySelector('#al-review-grid')?.innerText || '').includes(\"'{label}'\")",
            timeout=60_000,
        )
        tiles = page.locator("#al-review-grid .al-grid .al-tile").all()  # not the next page, hidden
        if not tiles:
            empty += 1
            continue
        empty = 0
        for tile in tiles:
            if truth(session, int(tile.get_attribute("data-id"))) != label:
                tile.click()
                actions += 1
        note.click()
        marker = page.evaluate(f"() => document.querySelector('{PAGE}').dataset.page")
        t0 = time.perf_counter()
        page.keyboard.press("Enter")
        actions += 1
        page.wait_for_function(f"() => document.querySelector('{PAGE}')?.dataset.page !== '{marker}'", timeout=60_000)
        to_next.append((time.perf_counter() - t0) * 1000)
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('#al-review-grid .al-tile img')).every((i) => i.complete)",
            timeout=60_000,
        )
        loaded.append((time.perf_counter() - t0) * 1000)
        page.wait_for_function(ANSWERED, timeout=60_000)
        answered.append((time.perf_counter() - t0) * 1000)
    result = summary(session, before, actions, time.perf_counter() - start)
    shown = page.evaluate("() => window.__alGridProbe.shown")
    result["in_page_enter_to_next_page_painted_ms_p50"] = round(float(np.percentile(shown, 50)), 1) if shown else None
    result["in_page_enter_to_next_page_painted_ms_p95"] = round(float(np.percentile(shown, 95)), 1) if shown else None
    result["enter_to_server_page_ms_p95"] = round(float(np.percentile(answered, 95)), 1) if answered else None
    result["enter_to_next_page_ms_p50"] = round(float(np.percentile(to_next, 50)), 1) if to_next else None
    result["enter_to_next_page_ms_p95"] = round(float(np.percentile(to_next, 95)), 1) if to_next else None
    result["enter_to_images_loaded_ms_p95"] = round(float(np.percentile(loaded, 95)), 1) if loaded else None
    return result


def render_48(page, session: ActiveLearningSession, count: int) -> dict:
    """Pages of 48 tiles: a label clicked -> 48 tiles painted with their images; Enter -> the next 48 painted."""
    review_handlers.PAGE_SIZE = 48
    clicked, entered, index = [], [], 0
    page.evaluate("() => { window.__alGridProbe.shown = []; window.__alGridProbe.fresh = []; }")
    try:
        while len(clicked) < count and index < count * 3:
            label = session.labels[index % len(session.labels)]
            index += 1
            marker = page.evaluate(f"() => document.querySelector('{PAGE}')?.dataset.page || ''")
            t0 = time.perf_counter()
            page.locator("#al-review-labels").get_by_text(label, exact=True).first.click()
            page.wait_for_function(
                f"() => (document.querySelector('{PAGE}')?.dataset.page || '') !== '{marker}'", timeout=60_000
            )
            if page.evaluate(LOADED) < 48:
                continue
            clicked.append((time.perf_counter() - t0) * 1000)
            if page.locator("#al-review-grid .al-grid-ahead .al-tile").count() < 48:
                continue
            page.locator("#al-review-grid .al-grid-note").click()
            page.evaluate(  # every tile deselected (as 48 Space presses would): Enter labels nothing
                "() => document.querySelectorAll('#al-review-grid .al-grid .al-tile')"
                ".forEach((t) => t.classList.remove('al-selected'))"
            )
            marker = page.evaluate(f"() => document.querySelector('{PAGE}').dataset.page")
            t0 = time.perf_counter()
            page.keyboard.press("Enter")  # nothing labeled, the next 48 shown
            page.wait_for_function(f"() => document.querySelector('{PAGE}')?.dataset.page !== '{marker}'")
            page.evaluate(LOADED)
            entered.append((time.perf_counter() - t0) * 1000)
            page.wait_for_function(ANSWERED, timeout=60_000)
    finally:
        review_handlers.PAGE_SIZE = 24

    def p(values: list[float], q: int) -> float | None:
        return round(float(np.percentile(values, q)), 1) if values else None

    in_page = page.evaluate("() => window.__alGridProbe.shown")
    fresh = page.evaluate("() => window.__alGridProbe.fresh")
    return {
        "pages": len(clicked),
        "in_page_label_click_to_48_loaded_ms_p50": p(fresh, 50),
        "in_page_label_click_to_48_loaded_ms_p95": p(fresh, 95),
        "in_page_enter_to_48_painted_ms_p50": p(in_page, 50),
        "in_page_enter_to_48_painted_ms_p95": p(in_page, 95),
        "label_click_to_48_painted_ms_p50": p(clicked, 50),
        "label_click_to_48_painted_ms_p95": p(clicked, 95),
        "enter_to_48_ahead_painted_ms_p50": p(entered, 50),
        "enter_to_48_ahead_painted_ms_p95": p(entered, 95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=300)
    parser.add_argument("--ways", nargs="+", default=["single", "grid"], choices=["single", "grid"])
    parser.add_argument("--render-pages", type=int, default=20, help="48-tile pages timed after the grid run")
    parser.add_argument("--out")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bulk-") as tmp:
        root = Path(tmp)
        base = starting_project(root)
        projects = root / "projects"
        projects.mkdir()
        for name in ("single", "grid"):
            copy_project(base, projects / name)
            rename_copy(projects / name)
        sessions = {n: registry.get(projects, n) for n in ("single", "grid")}
        results = {}
        with running_app(projects) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            for name, run in (("single", one_at_a_time), ("grid", with_the_grid)):
                if name not in args.ways:
                    continue
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(url)
                results[name] = run(page, sessions[name], args.labels)
                print(name, json.dumps(results[name]), flush=True)
                if name == "grid" and args.render_pages:
                    results["pages_of_48"] = render_48(page, sessions[name], args.render_pages)
                    print("pages_of_48", json.dumps(results["pages_of_48"]), flush=True)
                page.close()
            browser.close()
        registry.close_all()
    results["setup"] = {"project": DEMO_NAME, "labels_each_way": args.labels, "viewport": VIEWPORT}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
