"""The one way project images reach a browser: ``/alabel/image/...``, for the pages this server handed a tab id.

An image's address names the projects folder (by number), the workspace, the project and the image file under its
``images/`` folder, never a path on the server. A request is answered only when it carries the ``alabel_client``
cookie the page sets from its server-signed tab id (`app.ui.hotkeys.REMEMBER_CLIENT_JS`), and, in a private
workspace, only when that id belongs to the same workspace: a visitor cannot fetch another visitor's images even
with their address. Nothing but files under a project's ``images/`` folder is ever served, or the small copy
the server made of one of them (``?thumb=256``, `app.ui.thumbnails`), found from the original, never named by the
client.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Awaitable, Callable
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from PIL import Image
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from app.core import tokens
from app.core.errors import AppError
from app.engine.session import check_project_name
from app.engine.workspaces import FOLDER
from app.ui import thumbnails
from app.ui.host_guard import ASGIApp, Scope

PREFIX = "/alabel/image/"
COOKIE = "alabel_client"
NO_WORKSPACE = "-"
THUMB_QUERY = f"thumb={thumbnails.SIZE}"  # asks for the image's small copy (`app.ui.thumbnails`)
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


@lru_cache(maxsize=65536)
def _thumb_address(path: str, roots: int) -> str:
    return f"{image_url(path)}?{THUMB_QUERY}"


def thumb_url(path: str | Path) -> str:
    """The address of a project image's small copy (`app.ui.thumbnails`), for the review grid's tiles; made once
    per image (`roots`: the addresses stay right if more projects folders are registered)."""
    return _thumb_address(str(path), len(_roots))


def _client_ids(request: Request) -> list[str]:
    """The tab ids the request's cookies carry (one per app address the browser has used on this host)."""
    return [v for k, v in request.cookies.items() if k == COOKIE or k.startswith(f"{COOKIE}_")]


def file_of(address: str) -> tuple[Path, str | None] | None:
    """The image file an address names and its workspace (None outside workspaces), or None for a bad address.

    Args:
        address: the address as `image_url` makes it, with or without a leading "/" (already percent-decoded,
            as the server hands it over).
    """
    found = _locate(address)
    return None if found is None else (found[0], found[1])


def _locate(address: str) -> tuple[Path, str | None, Path] | None:
    """`file_of`, with the project's ``images`` folder the file is in."""
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
    folder = ((root / FOLDER / workspace if private else root) / project / "images").resolve()
    target = folder.joinpath(*rest).resolve()
    if not target.is_relative_to(folder) or not target.is_file():
        return None
    return target, workspace if private else None, folder


def _project_name(name: str) -> bool:
    try:
        return check_project_name(name) == name
    except AppError:
        return False


def resolve(path: str, client_ids: list[str]) -> Path | None:
    """The image file a request path names, when one of `client_ids` may see it; None otherwise."""
    found = _allowed(path, client_ids)
    return None if found is None else found[0]


def _allowed(path: str, client_ids: list[str]) -> tuple[Path, Path] | None:
    """`resolve`, with the project's ``images`` folder."""
    found = _locate(path)
    if found is None:
        return None
    target, workspace, images = found
    if workspace is None:
        return (target, images) if any(tokens.verify_client(c) for c in client_ids) else None
    return (target, images) if workspace in {tokens.workspace_of(c) for c in client_ids} else None


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
        found = _allowed(scope["path"], _client_ids(request)) if request.method in ("GET", "HEAD") else None
        response: Any
        if found is None:
            response = PlainTextResponse(REFUSED, status_code=403)
        elif request.query_params.get(THUMB_QUERY.partition("=")[0]) == THUMB_QUERY.partition("=")[2]:
            response = await _small_copy(*found)
        else:
            response = FileResponse(found[0], headers={"Cache-Control": "private, max-age=86400"})
        await response(scope, receive, send)


async def _small_copy(target: Path, images: Path) -> Any:
    """The thumbnail of `target` (made in a worker thread the first time), read at once: a small file needs no
    streaming, and each hop to a thread costs more than the read under load."""
    small = thumbnails.ready(target, images)
    if small is None:
        small = await anyio.to_thread.run_sync(_thumbnail_or_original, target, images)
    data = thumbnails.read_small(small)
    headers = {"Cache-Control": thumbnails.CACHE_CONTROL}
    if data is None:  # an original PIL could not shrink
        return FileResponse(small, headers=headers)
    kind = mimetypes.guess_type(small.name)[0] or "application/octet-stream"
    return Response(data, media_type=kind, headers=headers)


def _thumbnail_or_original(target: Path, images: Path) -> Path:
    try:
        return thumbnails.thumbnail(target, images)
    except (OSError, ValueError, Image.DecompressionBombError):  # not an image PIL reads: the original, as before
        return target
