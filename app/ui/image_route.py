"""The one way project images reach a browser: ``/alabel/image/...``, for the pages this server handed a tab id.

An image's address names the projects folder (by number), the workspace, the project and the image file under its
``images/`` folder, never a path on the server. A request is answered only when it carries the ``alabel_client``
cookie the page sets from its server-signed tab id (`app.ui.hotkeys.REMEMBER_CLIENT_JS`), and, in a private
workspace, only when that id belongs to the same workspace: a visitor cannot fetch another visitor's images even
with their address. Nothing but files under a project's ``images/`` folder is ever served.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse

from app.core import tokens
from app.core.errors import AppError
from app.engine.session import check_project_name
from app.engine.workspaces import FOLDER
from app.ui.host_guard import ASGIApp, Scope

PREFIX = "/alabel/image/"
COOKIE = "alabel_client"
NO_WORKSPACE = "-"
_PART = re.compile(r"^[\w][\w.-]*$")
_ID = re.compile(r"^[0-9a-f]{24}$")
_roots: list[tuple[Path, bool]] = []  # projects folder, private workspaces: by number in the address
REFUSED = "This image is not yours to see: open it from your own page of this app."


def register_root(root: Path, private: bool) -> None:
    """Serve the images of the projects under `root` (in its visitors' workspaces when `private`)."""
    entry = (Path(root).resolve(), private)
    if entry not in _roots:
        _roots.append(entry)


def image_url(path: str | Path) -> str:
    """The address (relative to the page) the browser fetches a project image from."""
    target = Path(path).resolve()
    for number, (root, private) in enumerate(_roots):
        base = root / FOLDER if private else root
        if not target.is_relative_to(base):
            continue
        parts = target.relative_to(base).parts
        workspace, parts = (parts[0], parts[1:]) if private else (NO_WORKSPACE, parts)
        if len(parts) >= 3 and parts[1] == "images":
            rest = "/".join(quote(p) for p in parts[2:])
            return f"alabel/image/{number}/{workspace}/{quote(parts[0])}/{rest}"
    raise ValueError("The image is not in a projects folder this server shows.")


def _client_ids(request: Request) -> list[str]:
    """The tab ids the request's cookies carry (one per app address the browser has used on this host)."""
    return [v for k, v in request.cookies.items() if k == COOKIE or k.startswith(f"{COOKIE}_")]


def file_of(address: str) -> tuple[Path, str | None] | None:
    """The image file an address names and its workspace (None outside workspaces), or None for a bad address.

    Args:
        address: the address as `image_url` makes it, with or without a leading "/" (already percent-decoded,
            as the server hands it over).
    """
    parts = address.lstrip("/")[len(PREFIX) - 1 :].split("/")
    if not address.lstrip("/").startswith(PREFIX[1:]) or len(parts) < 4:
        return None
    if not parts[0].isdigit() or int(parts[0]) >= len(_roots):
        return None
    root, private = _roots[int(parts[0])]
    workspace, project, rest = parts[1], parts[2], parts[3:]
    if not all(_PART.match(p) for p in rest) or not _project_name(project):
        return None
    if private and not _ID.match(workspace) or not private and workspace != NO_WORKSPACE:
        return None
    folder = (root / FOLDER / workspace if private else root) / project / "images"
    target = folder.joinpath(*rest).resolve()
    if not target.is_relative_to(folder.resolve()) or not target.is_file():
        return None
    return target, workspace if private else None


def _project_name(name: str) -> bool:
    try:
        return check_project_name(name) == name
    except AppError:
        return False


def resolve(path: str, client_ids: list[str]) -> Path | None:
    """The image file a request path names, when one of `client_ids` may see it; None otherwise."""
    found = file_of(path)
    if found is None:
        return None
    target, workspace = found
    if workspace is None:
        return target if any(tokens.verify_client(c) for c in client_ids) else None
    return target if workspace in {tokens.workspace_of(c) for c in client_ids} else None


class ImageRoute:
    """ASGI middleware answering ``/alabel/image/...`` (see the module); every other request passes through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: Callable[..., Awaitable[Any]], send: Callable[..., Awaitable[Any]]
    ) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        target = resolve(scope["path"], _client_ids(request)) if request.method in ("GET", "HEAD") else None
        response: Any
        if target is None:
            response = PlainTextResponse(REFUSED, status_code=403)
        else:
            response = FileResponse(target, headers={"Cache-Control": "private, max-age=86400"})
        await response(scope, receive, send)
