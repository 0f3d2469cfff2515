"""Ids the server hands out and can recognise again: a random part and its HMAC signature.

A browser keeps its tab id across reloads, but it cannot make one up: an id is accepted back only when its
signature matches, so nobody can take another tab's id (and with it the right to undo that tab's labels). The key
comes from the ``ALABEL_SECRET`` environment variable, so ids survive a restart; without it a random key is made
for this process.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from functools import cache

SECRET_ENV = "ALABEL_SECRET"
_TOKEN = re.compile(r"^([0-9a-f]{24})-([0-9a-f]{24})$")


@cache
def _key() -> bytes:
    secret = os.environ.get(SECRET_ENV, "")
    return secret.encode("utf-8") if secret else secrets.token_bytes(32)


def _signature(value: str, key: bytes) -> str:
    return hmac.new(key, value.encode("ascii"), hashlib.sha256).hexdigest()[:24]


def new_token(key: bytes | None = None) -> str:
    """A fresh signed id, e.g. ``"3f9a...-b41c..."`` (49 characters, letters, digits and one dash)."""
    value = secrets.token_hex(12)
    return f"{value}-{_signature(value, key or _key())}"


def verify(candidate: str | None, key: bytes | None = None) -> bool:
    """True when `candidate` is an id this server (with this key) handed out."""
    match = _TOKEN.match(candidate or "")
    if match is None:
        return False
    return hmac.compare_digest(match.group(2), _signature(match.group(1), key or _key()))


def token_id(token: str) -> str:
    """The random part of a token (24 hex digits): safe as a folder name, and says nothing of the signature."""
    return token.partition("-")[0]


def join_client(workspace: str, tab: str) -> str:
    """A tab id inside a workspace: the workspace's token and the tab's own, e.g. ``"<token>.<token>"``."""
    return f"{workspace}.{tab}"


def verify_client(candidate: str | None, key: bytes | None = None) -> bool:
    """True for a tab id this server handed out: a token, or a workspace token and a tab token joined."""
    parts = (candidate or "").split(".")
    return 1 <= len(parts) <= 2 and all(verify(part, key) for part in parts)


def workspace_of(client: str | None, key: bytes | None = None) -> str | None:
    """The workspace id of a tab id the server handed out (None for a tab id without one, or a forged id)."""
    parts = (client or "").split(".")
    if len(parts) != 2 or not verify_client(client, key):
        return None
    return token_id(parts[0])


def browser_secret() -> str:
    """A key for the browser's own storage of tokens: fixed while ``ALABEL_SECRET`` is, and not that secret.

    Browsers see this key (it scrambles what they keep, it does not protect it): the tokens' signatures do.
    """
    return hmac.new(_key(), b"browser-storage", hashlib.sha256).hexdigest()[:32]
