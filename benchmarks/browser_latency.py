"""Key press to next image in a real browser: the digits demo labeled with the keyboard alone.

Starts `python -m app --demo` in a child process (the bundled EfficientNet-Lite0 at 96 px, batches of 10; the
first start embeds the 1,797 digits), opens it in headless Chromium (Debian's, through Playwright), then labels
images one by one with the number keys as a person would (the true digit), timing from the key going down until
the labeling image's `src` changes and until the new image has loaded. Rounds train in the background meanwhile
in the server process, as in real use; presses made while a round was running are also reported apart.

    python -m benchmarks.browser_latency                  # 200 labels
    python -m benchmarks.browser_latency --labels 60 --out latency.json

Target (docs/benchmarks.md): the next image shows within 150 ms of the key press (p95).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, LATENCY_PROBE, VIEWPORT

NOT_PENDING = "() => !document.body.classList.contains('al-pending')"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, child: subprocess.Popen, timeout: float = 900.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if child.poll() is not None:
            raise SystemExit(f"the app exited with code {child.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(1.0)
    raise SystemExit("the app did not start")


def key_for(name: str, targets: np.ndarray) -> str:
    """The number key of the true digit of `digit_0042.png` (labels 0-9 sit on keys 1-9 and 0)."""
    digit = int(targets[int(re.search(r"digit_(\d+)", name).group(1))])
    return str((digit + 1) % 10)


def summary(values: list[float]) -> dict[str, float]:
    a = np.array(values)
    p50, p95 = (round(float(np.percentile(a, q)), 1) for q in (50, 95))
    return {"n": len(a), "p50_ms": p50, "p95_ms": p95, "max_ms": round(float(a.max()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--projects-dir", help="reuse a projects folder (its demo keeps its embeddings)")
    parser.add_argument("--out", help="write every sample as JSON here")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit("Chromium is not installed (apt-get install -y chromium chromium-driver)")

    from playwright.sync_api import sync_playwright
    from sklearn.datasets import load_digits

    targets = load_digits().target
    projects = args.projects_dir or tempfile.mkdtemp(prefix="browser-latency-")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "app", "--demo", "--projects-dir", projects, "--port", str(port)]
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples: list[dict] = []
    try:
        started = time.perf_counter()
        wait_for_server(url, child)
        print(f"demo served after {time.perf_counter() - started:.0f} s", flush=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url)
            page.wait_for_selector("#al-image img[src*='gradio_api/file=']", timeout=120_000)
            page.evaluate(LATENCY_PROBE)
            for _ in range(args.labels):
                page.wait_for_function(NOT_PENDING, timeout=60_000)
                name = page.locator("#al-caption strong").first.inner_text().strip()
                training = "al-running" in (page.locator("#al-status .al-status").get_attribute("class") or "")
                count = page.evaluate("() => window.__alLatency.changes.length")
                page.keyboard.press(key_for(name, targets))
                page.wait_for_function("n => window.__alLatency.changes.length > n", arg=count, timeout=60_000)
                page.wait_for_function("n => window.__alLatency.changes[n].loadedAt !== null", arg=count)
                change = page.evaluate("n => window.__alLatency.changes[n]", count)
                samples.append({
                    "image": name,
                    "shown_ms": round(change["at"] - change["keyAt"], 1),
                    "loaded_ms": round(change["loadedAt"] - change["keyAt"], 1),
                    "training": training,
                })  # fmt: skip
            progress = page.locator("#al-progress").inner_text()
            browser.close()
    finally:
        child.terminate()
        child.wait(timeout=30)
    shown = [s["shown_ms"] for s in samples]
    loaded = [s["loaded_ms"] for s in samples]
    result = {"labels": len(samples), "shown": summary(shown), "loaded": summary(loaded), "load": os.getloadavg()[0]}
    busy = [s["loaded_ms"] for s in samples if s["training"]]
    if busy:
        result["loaded while a round trains"] = summary(busy)
    print(f"{len(samples)} labels with the keyboard; at the end: {progress}")
    for what in ("shown", "loaded", "loaded while a round trains"):
        if what in result:
            r = result[what]
            print(f"key -> image {what:<28} n={r['n']:>3}: p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms, "
                  f"max {r['max_ms']:.0f} ms")  # fmt: skip
    print(f"load average {result['load']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "samples": samples}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
