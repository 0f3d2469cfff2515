"""Start the app: build the page over a projects folder and launch it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from app.ui import registry, style
from app.ui.host_guard import guard_lifespan, is_loopback
from app.ui.hotkeys import HEAD
from app.ui.layout import build_demo

log = logging.getLogger(__name__)


def launch_kwargs(*, local_only: bool = True) -> dict[str, Any]:
    """The app-level `launch()` options (theme, CSS, hotkeys, what is served) shared by `serve` and tests.

    No folder is opened to the file route: the images folder of each open project is served on its own (see
    `registry`), and exports reach the browser only as the file a handler returns. In local mode every request
    must name a loopback host and come from a loopback page (`host_guard`).

    Args:
        local_only: the app listens on loopback without a share link.
    """
    options: dict[str, Any] = {
        "theme": style.theme(),
        "css": style.CSS,
        "head": HEAD,
        "allowed_paths": [],
        "footer_links": ["settings"],
    }
    if local_only:
        options["app_kwargs"] = {"lifespan": guard_lifespan}
    return options


def _prepare_demo(projects_dir: Path) -> None:
    """Open (or create on first run) the digits demo project before the page is served."""
    from app.engine.demo import open_or_create_demo

    last = [-1]

    def report(fraction: float, message: str) -> None:
        step = int(fraction * 10)
        if step != last[0]:
            last[0] = step
            print(f"Preparing the demo project: {message} ({fraction:.0%})", flush=True)

    session = open_or_create_demo(projects_dir, progress=report)
    registry.register(projects_dir, session)


def serve(
    projects_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    auth: Sequence[tuple[str, str]] | None = None,
    demo: bool = False,
    behind_proxy: bool = False,
) -> None:
    """Build and launch the app; blocks until the server stops (Ctrl+C).

    Args:
        projects_dir: where projects live (created if missing).
        host: address to listen on; anything but loopback makes the app reachable from other machines.
        port: port to listen on.
        share: also open a public share link (the command line requires `auth` or an explicit --public).
        auth: the (user, password) pairs that may sign in; the signed-in name is recorded as the annotator.
        demo: open the digits demo project (created on first use; works offline).
        behind_proxy: other people reach the page through a proxy in front of `host` (a Space), so the app is
            not local even on a loopback address: no server paths, no loopback-only guard.
    """
    root = Path(projects_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    if demo:
        _prepare_demo(root)
    local_only = is_loopback(host.lower()) and not share and not behind_proxy
    blocks = build_demo(root, demo=demo, allow_local_paths=local_only)
    try:
        blocks.launch(
            server_name=host,
            server_port=port,
            share=share,
            auth=list(auth) if auth else None,
            max_file_size=gr.FileSize.GB,
            **launch_kwargs(local_only=local_only),
        )
    finally:
        registry.close_all(root)
