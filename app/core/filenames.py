"""File and folder names made from labels and original file names: safe on every file system, short, unique."""

from __future__ import annotations

import os
import re

MAX_PART_BYTES = 100  # of UTF-8 per path part; file systems allow 255, and zip tools need room for their own
MAX_EXTENSION_BYTES = 16
_UNSAFE = re.compile(r"[^\w.\- ]+")


def cap_utf8(text: str, limit: int) -> str:
    """The longest start of `text` that is at most `limit` bytes of UTF-8 (never a cut character)."""
    return text.encode("utf-8")[: max(limit, 0)].decode("utf-8", errors="ignore")


def _clean(name: str) -> str:
    return _UNSAFE.sub("_", name).strip(" .")


def safe_part(name: str, limit: int = MAX_PART_BYTES, *, tag: str = "", keep_extension: bool = False) -> str:
    """One path part made from `name`: runs of unsafe characters become ``_``, no leading or trailing dots or
    spaces, never empty, at most `limit` bytes of UTF-8.

    Args:
        name: a label or an original file name (its folders are the caller's to drop).
        limit: the byte budget of the whole part, `tag` and extension included.
        tag: appended to the (shortened) name, before the extension, e.g. ``"_12"`` to tell names apart.
        keep_extension: a file name: its extension (up to 16 bytes) survives the shortening.
    """
    cleaned = _clean(name)
    stem, ext = os.path.splitext(cleaned) if keep_extension else (cleaned, "")
    if len(ext.encode("utf-8")) > MAX_EXTENSION_BYTES:
        stem, ext = cleaned, ""
    room = limit - len((tag + ext).encode("utf-8"))
    stem = _clean(cap_utf8(stem, room)) or cap_utf8("unnamed", room)
    return stem + tag + ext


class UniqueNames:
    """Hands out the parts of one folder: each is a `safe_part` and differs from the others, ignoring case
    (case-insensitive file systems would merge ``Cat`` and ``cat``)."""

    def __init__(self, limit: int = MAX_PART_BYTES, *, keep_extension: bool = False) -> None:
        self.limit = limit
        self.keep_extension = keep_extension
        self._used: set[str] = set()

    def claim(self, name: str, *, tag: str) -> str:
        """The part for `name`; when it is taken, `tag` (then `tag` and a counter) is appended to tell it apart."""
        part = safe_part(name, self.limit, keep_extension=self.keep_extension)
        count = 1
        while part.casefold() in self._used:
            suffix = tag if count == 1 else f"{tag}_{count}"
            part = safe_part(name, self.limit, tag=suffix, keep_extension=self.keep_extension)
            count += 1
        self._used.add(part.casefold())
        return part
