"""Label-to-next-image latency of the running app, measured through gradio_client.

Starts the app in a child process on a free local port with a tiny random-weight model, imports digit images,
then submits labels one by one and times each `/submit_label` call until the next image (downloaded by the
client) is back. Rounds train in the background meanwhile, as in real use, and are reported apart.

    python -m benchmarks.ui_latency --labels 50

gradio_client polls its event stream every 50 ms, so its numbers sit above what a browser sees.
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TINY = {"backbone": "test_efficientnet", "backbone_source": "random", "image_size": 32, "min_val": 2}


def serve(projects: str, port: int, batch_size: int) -> None:
    """The child process: the app with a tiny model."""
    from app.core.settings import ProjectSettings
    from app.ui.layout import build_demo
    from app.ui.server import launch_kwargs

    settings = ProjectSettings(batch_size=batch_size, **TINY)
    demo = build_demo(projects, model_choices={"tiny": ("test_efficientnet", "random")}, base_settings=settings)
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True, **launch_kwargs(projects))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--serve", metavar="PROJECTS_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.batch_size)
        return

    from gradio_client import Client, handle_file
    from sklearn.datasets import load_digits

    from app.engine.demo import write_digits

    targets = load_digits().target
    root = Path(tempfile.mkdtemp(prefix="ui-latency-"))
    files = write_digits(root / "digits", size=64, limit=args.images)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "benchmarks.ui_latency", "--serve", str(root / "projects"), "--port", str(port)]
    child = subprocess.Popen([*cmd, "--batch-size", str(args.batch_size)], stderr=subprocess.DEVNULL)
    try:
        client = None
        for _ in range(240):
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:
                time.sleep(0.5)
        assert client is not None, "the app did not start"
        client.predict(api_name="/init")
        digits = "\n".join(str(d) for d in range(10))
        form = ("bench", "tiny", "", digits, "margin", args.batch_size, 0.2, "fast", "Model default")
        client.predict(*form, api_name="/start_project")
        client.predict([handle_file(str(f)) for f in files], None, None, None, "", False, api_name="/import_images")
        view = None
        while view is None:
            polled = client.predict(api_name="/poll")
            view = polled[1:] if polled[1].get("value") else None
            time.sleep(0.2)
        times, training = [], []
        for _ in range(args.labels):
            status = client.predict(api_name="/poll")[0]
            training.append("al-running" in status)
            name = re.match(r"\*\*(.+?)\*\*", view[1]).group(1)
            label = str(targets[int(re.search(r"digit_(\d+)", name).group(1))])
            start = time.perf_counter()
            view = client.predict(label, api_name="/submit_label")
            times.append(time.perf_counter() - start)
            assert view[0].get("value"), "no next image"
        rounds = re.findall(r"round (\d+)", client.predict(api_name="/poll")[0])
        ms, busy = np.array(times) * 1000, np.array(training)
        print(f"{len(times)} labels; model of round {rounds[-1] if rounds else '?'} at the end")
        print(f"gradio_client round trip: p50 {np.percentile(ms, 50):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms")
        for name, part in (("while idle", ms[~busy]), ("while a round trains", ms[busy])):
            if len(part):
                p50, p95 = np.percentile(part, 50), np.percentile(part, 95)
                print(f"  {name:<22} n={len(part):>3}: p50 {p50:.0f} ms, p95 {p95:.0f} ms")
        client.close()
    finally:
        child.terminate()
        child.wait(timeout=30)


if __name__ == "__main__":
    main()
