"""Start the app: build the page over a projects folder and launch it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr

from app.core.errors import AppError
from app.ui import registry, style
from app.ui.grid_keys import GRID_HEAD
from app.ui.gridbox import GRID_CSS
from app.ui.host_guard import LoopbackGuard, is_loopback
from app.ui.hosting import Hosting
from app.ui.hotkeys import HEAD
from app.ui.image_route import ImageRoute
from app.ui.layout import build_demo

log = logging.getLogger(__name__)


def serving_lifespan(local_only: bool) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that wraps the app's whole middleware stack before it serves: the image route
    (`image_route`) around it, and in local mode the loopback guard (`host_guard`) outermost.

    The stack is built when the first (lifespan) message arrives, so wrapping it here places these outside every
    middleware the app adds for itself (a refused request gets no CORS header).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if app.middleware_stack is None:
            app.middleware_stack = app.build_middleware_stack()
        stack: Any = ImageRoute(app.middleware_stack)
        app.middleware_stack = LoopbackGuard(stack) if local_only else stack
        yield

    return lifespan


def launch_kwargs(*, local_only: bool = True) -> dict[str, Any]:
    """The app-level `launch()` options (theme, CSS, hotkeys, what is served) shared by `serve` and tests.

    No folder is opened to Gradio's file route: project images reach the browser through `image_route` only,
    and exports only as the file a handler returns. In local mode every request must name a loopback host and
    come from a loopback page (`host_guard`).

    Args:
        local_only: the app listens on loopback without a share link.
    """
    options: dict[str, Any] = {
        "theme": style.theme(),
        "css": style.CSS + GRID_CSS,
        "head": HEAD + GRID_HEAD,
        "allowed_paths": [],
        "footer_links": ["settings"],
    }
    options["app_kwargs"] = {"lifespan": serving_lifespan(local_only)}
    return options


def _prepare_demo(projects_dir: Path, keep_open: bool = True) -> Path:
    """Open (or create on first run) the digits demo project before the page is served; returns its folder."""
    from app.engine.demo import open_or_create_demo

    last = [-1]

    def report(fraction: float, message: str) -> None:
        step = int(fraction * 10)
        if step != last[0]:
            last[0] = step
            print(f"Preparing the demo project: {message} ({fraction:.0%})", flush=True)

    session = open_or_create_demo(projects_dir, progress=report)
    folder = session.images_dir.parent
    if keep_open:
        registry.register(projects_dir, session)
    else:
        session.close()
    return folder


def prepare_hosting(root: Path, hosting: Hosting, demo: bool) -> Hosting:
    """Make what the way of sharing needs before the page is served.

    Private workspaces start from a template copy of the demo (kept in ``root/templates``, never opened by a
    page); a shared project must exist (the demo is made when it is the one named).

    Raises:
        AppError: the shared project does not exist.
    """
    from app.engine.demo import DEMO_NAME
    from app.engine.session import ActiveLearningSession, check_project_name

    if hosting.crowd:
        name = check_project_name(str(hosting.shared_project))
        if name == DEMO_NAME:
            _prepare_demo(root)
        elif name not in ActiveLearningSession.list_projects(root):
            raise AppError(
                f"The shared project '{name}' is not in the projects folder. Make it first (start the app "
                f"without --shared-project, create it and add its images), or name {DEMO_NAME}."
            )
        return hosting
    if hosting.private:
        templates = [_prepare_demo(root / "templates", keep_open=False)] if demo else []
        return replace(hosting, templates=templates)
    if demo:
        _prepare_demo(root)
    return hosting


def serve(
    projects_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    auth: Sequence[tuple[str, str]] | None = None,
    demo: bool = False,
    behind_proxy: bool = False,
    hosting: Hosting | None = None,
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
        hosting: private workspaces or one shared project (`app.ui.hosting`); the default is one folder.
    """
    root = Path(projects_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    hosting = prepare_hosting(root, hosting or Hosting(), demo)
    local_only = is_loopback(host.lower()) and not share and not behind_proxy
    blocks = build_demo(root, demo=demo, allow_local_paths=local_only, hosting=hosting)
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
        registry.close_all()
