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
