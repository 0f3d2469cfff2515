"""Start the app: build the page over a projects folder and launch it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from app.ui import registry, style
from app.ui.hotkeys import HEAD
from app.ui.layout import build_demo

log = logging.getLogger(__name__)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def launch_kwargs(projects_dir: str | Path) -> dict[str, Any]:
    """The app-level `launch()` options (theme, CSS, hotkeys, file access) shared by `serve` and tests."""
    return {
        "theme": style.theme(),
        "css": style.CSS,
        "head": HEAD,
        "allowed_paths": [str(Path(projects_dir).expanduser().resolve())],
        "footer_links": ["settings"],
    }


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
    auth: tuple[str, str] | None = None,
    demo: bool = False,
) -> None:
    """Build and launch the app; blocks until the server stops (Ctrl+C).

    Args:
        projects_dir: where projects live (created if missing); the only folder the page may read files from.
        host: address to listen on; anything but loopback makes the app reachable from other machines.
        port: port to listen on.
        share: also open a public share link (use with `auth`).
        auth: (user, password) required to open the page.
        demo: open the digits demo project (created on first use; works offline).
    """
    root = Path(projects_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    if demo:
        _prepare_demo(root)
    local_only = host in LOOPBACK and not share
    blocks = build_demo(root, demo=demo, allow_local_paths=local_only)
    try:
        blocks.launch(
            server_name=host,
            server_port=port,
            share=share,
            auth=auth,
            max_file_size=gr.FileSize.GB,
            **launch_kwargs(root),
        )
    finally:
        registry.close_all(root)
