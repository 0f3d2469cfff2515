"""In local mode, answer only this computer: refuse other Host names and cross-origin browser requests.

A page on another site can make the browser send requests to 127.0.0.1 (cross-site requests), or make its own
name resolve to 127.0.0.1 (DNS rebinding); both would reach an app that trusts loopback. Requests that name a
host other than a loopback name, or that come from a page whose origin is not a loopback name, get 403 before any
of the app sees them. The guard wraps the whole app (outside Gradio's own CORS handling), so even a refused
request gets no CORS header.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_HOST_HEADER = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
REFUSED = (
    b"This app only answers http://127.0.0.1 or http://localhost on the computer it runs on. "
    b"To reach it from elsewhere, start it with --host, or --share with --auth."
)

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]


def host_name(value: str) -> str:
    """The bare host name of a Host header or an origin ("127.0.0.1:7860" -> "127.0.0.1", "[::1]:80" -> "::1")."""
    return _address(value)[0]


def _address(value: str) -> tuple[str, int | None]:
    """(host name, port) of a Host header or an origin; the scheme's port when none is written."""
    text = value.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        return (parts.hostname or "").lower(), port
    except ValueError:
        return "", None


def is_loopback(name: str) -> bool:
    """True for localhost, *.localhost, ::1 and 127.x.y.z."""
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    parts = name.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) < 256 for p in parts)


def allowed(headers: dict[str, str]) -> bool:
    """Whether a request with these (lower-case) headers names a loopback host and, when it comes from a page,
    from a page of this very server (same host and port: another local server's page is refused too)."""
    raw = headers.get("host", "")
    host = _address(raw)
    if not _HOST_HEADER.match(raw) or not is_loopback(host[0]):
        return False
    origin = headers.get("origin")
    return origin is None or _address(origin) == host


class LoopbackGuard:
    """ASGI middleware that lets through only requests `allowed` accepts (lifespan messages always pass)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: Callable[..., Awaitable[Any]], send: Callable[..., Awaitable[Any]]
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if not allowed(headers):
                await _refuse(scope, send)
                return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Callable[..., Awaitable[Any]]) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    length = str(len(REFUSED)).encode("ascii")
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", length)]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": REFUSED})
