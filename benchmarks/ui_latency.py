"""Label-to-next-image latency of the running app, measured through gradio_client.

Starts the app in a child process on a free local port, creates a project, imports digit images, then submits
labels one by one (the true digit, as a person would) and times each `/submit_label` call plus the download
of the image it names: the label is committed and the next image comes back in the same response. Rounds train
in the background meanwhile, as in real use; the latencies while a round was running are also reported apart,
to show that labeling never waits for training.

    python -m benchmarks.ui_latency                       # 200 labels, tiny random-weight model
    python -m benchmarks.ui_latency --model bundled --image-size 96 --labels 200

gradio_client adds its own overhead (an HTTP request plus a server-sent-event stream per call), so a browser
sees less. Target (docs/benchmarks.md): p95 <= 150 ms over 200 labels.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TINY_MODEL = "Tiny test model"


def serve(projects: str, port: int, batch_size: int, model: str, image_size: int | None) -> None:
    """The child process: the app, with the tiny model or the bundled one as the only choice."""
    from app.core.settings import ProjectSettings
    from app.ui.layout import build_demo
    from app.ui.server import launch_kwargs

    if model == "tiny":
        settings = ProjectSettings(
            backbone="test_efficientnet", backbone_source="random", image_size=32, batch_size=batch_size, min_val=2
        )
        choices = {TINY_MODEL: ("test_efficientnet", "random")}
    else:
        settings = ProjectSettings(batch_size=batch_size, image_size=image_size, min_val=2)
        choices = None
    kwargs = {"model_choices": choices} if choices else {}
    demo = build_demo(projects, base_settings=settings, **kwargs)
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True, **launch_kwargs())


def handler_latency(root: Path, files: list[Path], targets, labels: int, batch_size: int) -> np.ndarray:
    """Milliseconds of the server-side Submit Label handler alone (no HTTP, no Gradio), same tiny model."""
    from app.core.settings import ProjectSettings
    from app.core.strategies import DEFAULT_STRATEGY
    from app.ui import registry
    from app.ui.handlers import Handlers

    settings = ProjectSettings(
        backbone="test_efficientnet", backbone_source="random", image_size=32, batch_size=batch_size, min_val=2,
        strategy=DEFAULT_STRATEGY,
    )  # fmt: skip
    projects = root / "projects-in-process"
    h = Handlers(projects, model_choices={TINY_MODEL: ("test_efficientnet", "random")}, base_settings=settings)
    digits = "\n".join(str(d) for d in range(10))
    project, view = h.start_project("bench", digits, settings)
    _, view = h.import_images(project, "c1", [str(f) for f in files], [str(files[0].parent)], False)
    while view.image_id is None:
        time.sleep(0.2)
        view = h.current(project, "c1")
    times = []
    try:
        for _ in range(labels):
            session = h.session(project)
            name = session.store.get_image(view.image_id).original_name
            label = str(targets[int(re.search(r"digit_(\d+)", name).group(1))])
            t = time.perf_counter()
            view = h.submit(project, "c1", view.cursor, label)
            times.append(time.perf_counter() - t)
    finally:
        registry.close_all(projects)
    return np.array(times) * 1000


def noop_latency(calls: int = 100) -> np.ndarray:
    """Milliseconds of a gradio_client call to an endpoint that does nothing: the client's and Gradio's own cost."""
    import gradio as gr
    from gradio_client import Client

    with gr.Blocks() as demo:
        box = gr.Textbox()
        gr.Button().click(lambda x: x, box, box, api_name="echo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True, prevent_thread_lock=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            client.predict("x", api_name="/echo")
            times.append(time.perf_counter() - t)
        client.close()
    finally:
        demo.close()
    return np.array(times) * 1000


def raw_latency(client, port: int, targets, labels: int, first_caption: str) -> np.ndarray:
    """Milliseconds of the same Submit Label call over one kept-alive connection, without gradio_client.

    Speaks Gradio's queue protocol directly, in the gradio_client session (so the same project, tab and image):
    POST `queue/join`, then read the server-sent events of `queue/data` until the call's `process_completed`
    (pooled connections, as a browser keeps them), then fetch the image it names. gradio_client instead makes a
    new connection per call and polls its message queue every 50 ms, which is most of its own floor.
    """
    import httpx

    fn_index = client._infer_fn_index("/submit_label", None)  # the endpoint's index in the page's config
    session = client.session_hash
    caption, times = first_caption, []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/gradio_api/", timeout=60) as http:
        for _ in range(labels):
            name = re.match(r"\*\*(.+?)\*\*", caption).group(1)
            label = str(targets[int(re.search(r"digit_(\d+)", name).group(1))])
            t = time.perf_counter()
            body = {"data": [None, None, None, label], "fn_index": fn_index, "session_hash": session}
            event_id = http.post("queue/join", json={**body, "event_data": None, "trigger_id": None}).json()
            with http.stream("GET", "queue/data", params={"session_hash": session}) as stream:
                output = _completed(stream.iter_lines(), event_id["event_id"])
            src = re.search(r'<img src="gradio_api/([^"]+)"', _value(output[0]) or "")
            http.get(html.unescape(src.group(1))).raise_for_status()
            times.append(time.perf_counter() - t)
            caption = _value(output[1])
    return np.array(times) * 1000


def _completed(events, event_id: str) -> list:
    """The outputs of `event_id` from the server-sent events (other events' messages are skipped)."""
    for line in events:
        if not line.startswith("data:"):
            continue
        msg = json.loads(line[5:])
        if msg.get("event_id") == event_id and msg.get("msg") == "process_completed":
            if not msg.get("success"):
                raise SystemExit(f"the call failed: {msg.get('output')}")
            return msg["output"]["data"]
    raise SystemExit("the event stream ended")


def _value(update):
    return update.get("value") if isinstance(update, dict) else update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--model", choices=("tiny", "bundled"), default="tiny")
    parser.add_argument("--image-size", type=int, default=None, help="bundled model input size (default 224)")
    parser.add_argument("--out", help="write the latencies as JSON here")
    parser.add_argument("--serve", metavar="PROJECTS_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.batch_size, args.model, args.image_size)
        return

    import httpx
    from gradio_client import Client, handle_file
    from sklearn.datasets import load_digits

    from app.core.strategies import DEFAULT_STRATEGY
    from app.engine.demo import write_digits

    targets = load_digits().target
    root = Path(tempfile.mkdtemp(prefix="ui-latency-"))
    files = write_digits(root / "digits", size=64, limit=args.images)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "benchmarks.ui_latency", "--serve", str(root / "projects"), "--port", str(port)]
    cmd += ["--batch-size", str(args.batch_size), "--model", args.model]
    if args.image_size:
        cmd += ["--image-size", str(args.image_size)]
    child = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        client = None
        for _ in range(240):
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:
                time.sleep(0.5)
        if client is None:
            raise SystemExit("the app did not start")
        client.predict(api_name="/init")
        digits = "\n".join(str(d) for d in range(10))
        model = TINY_MODEL if args.model == "tiny" else "EfficientNet-Lite0 (bundled, offline)"
        form = ("bench", model, "", digits, DEFAULT_STRATEGY, args.batch_size, 0.2, "fast", "Model default")
        client.predict(*form, api_name="/start_project")
        start = time.perf_counter()
        client.predict([handle_file(str(f)) for f in files], None, "", False, api_name="/import_images")
        view = None
        while view is None:
            polled = client.predict(api_name="/poll")
            view = polled[1:] if "<img" in (_value(polled[1]) or "") else None
            time.sleep(0.2)
        first_image = time.perf_counter() - start
        times, training = [], []
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}/")
        for _ in range(args.labels):
            status = client.predict(api_name="/poll")[0]
            training.append("al-running" in status)  # the status line's class while a round runs
            name = re.match(r"\*\*(.+?)\*\*", view[1]).group(1)
            label = str(targets[int(re.search(r"digit_(\d+)", name).group(1))])
            t = time.perf_counter()
            view = client.predict(label, api_name="/submit_label")
            src = re.search(r'<img src="([^"]+)"', _value(view[0]) or "")
            if src is None:
                raise SystemExit(f"no next image after {len(times)} labels")
            http.get(html.unescape(src.group(1))).raise_for_status()  # the image itself, as a browser fetches it
            times.append(time.perf_counter() - t)
        raw = raw_latency(client, port, targets, min(args.labels, 100), view[1])
        status = client.predict(api_name="/poll")[0]
        for _ in range(120):  # let the last round finish, to report how many trained
            if "al-running" not in status:
                break
            time.sleep(0.5)
            status = client.predict(api_name="/poll")[0]
        rounds = re.findall(r"round (\d+)", status)
        ms, busy = np.array(times) * 1000, np.array(training)
        print(f"import + first image: {first_image:.1f} s; load {os.getloadavg()[0]:.2f}")
        print(f"{len(times)} labels; model of round {rounds[-1] if rounds else '?'} at the end")
        p50, p95 = np.percentile(ms, 50), np.percentile(ms, 95)
        print(f"submit -> next image (gradio_client): p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {ms.max():.0f} ms")
        result = {"labels": len(times), "p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "max_ms": round(ms.max(), 1)}
        for name, part in (("while idle", ms[~busy]), ("while a round trains", ms[busy])):
            if len(part):
                q50, q95 = np.percentile(part, 50), np.percentile(part, 95)
                print(f"  {name:<22} n={len(part):>3}: p50 {q50:.0f} ms, p95 {q95:.0f} ms")
                result[name] = {"n": len(part), "p50_ms": round(q50, 1), "p95_ms": round(q95, 1)}
        q50, q95 = np.percentile(raw, 50), np.percentile(raw, 95)
        print(f"the same, {len(raw)} more labels over one kept-alive connection (no gradio_client): p50 {q50:.0f} ms, "
              f"p95 {q95:.0f} ms, max {raw.max():.0f} ms")  # fmt: skip
        result["kept_alive"] = {"n": len(raw), "p50_ms": round(q50, 1), "p95_ms": round(q95, 1)}
        client.close()
    finally:
        child.terminate()
        child.wait(timeout=30)
    noop = noop_latency()
    print(f"gradio_client no-op call (its own floor): p50 {np.percentile(noop, 50):.0f} ms, "
          f"p95 {np.percentile(noop, 95):.0f} ms")  # fmt: skip
    result["noop"] = {"p50_ms": round(np.percentile(noop, 50), 1), "p95_ms": round(np.percentile(noop, 95), 1)}
    if args.model == "tiny":
        handler = handler_latency(root, files, targets, args.labels, args.batch_size)
        q50, q95 = np.percentile(handler, 50), np.percentile(handler, 95)
        top = handler.max()
        print(f"Submit Label handler alone (in process): p50 {q50:.0f} ms, p95 {q95:.0f} ms, max {top:.0f} ms")
        result["handler"] = {"p50_ms": round(q50, 1), "p95_ms": round(q95, 1), "max_ms": round(handler.max(), 1)}
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "ms": ms.round(1).tolist()}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
