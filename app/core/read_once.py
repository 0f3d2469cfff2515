"""Reading an import's input once: the bytes that are hashed are the bytes that are checked and stored.

An input of up to `IN_MEMORY_BYTES` (nearly every image) is read whole into memory; a larger one is streamed
into the staging file, hashed as it is written. Reading is capped: an image file at one byte past its size (a file
that grows or shrinks while it is read is refused as changed), a zip entry by its `EntryReader`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.core.archives import MAX_FILE_BYTES, TOO_BIG, EntryReader
from app.core.sources import NOT_REGULAR

CHUNK_BYTES = 1 << 20
IN_MEMORY_BYTES = 32 << 20  # inputs up to this size are read whole into memory (one at a time)
# Opening never waits (a named pipe without a writer) and never makes a terminal the controlling one.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)

CHANGED = "The file changed while it was being imported; import it again when nothing is writing to it."


@dataclass(frozen=True)
class Read:
    """An input read once: its hash and size, and its bytes when small enough to hold (None: they were streamed
    into the staging file instead)."""

    sha256: str
    size: int
    data: bytes | None


def read_file(path: Path, temp: Path) -> Read | str:
    """Read an image file once; a rejection reason when it is not a regular file, is too large or changed.

    It is opened without waiting (a named pipe that replaced it since planning would otherwise block) and
    checked on the open descriptor, so what is checked is what is read. At most one byte more than its size is
    read; a size or modification time that differs after the read means something wrote to it meanwhile.
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        src = open(fd, "rb", buffering=0)  # noqa: SIM115 - closed by the block below
    except BaseException:
        os.close(fd)
        raise
    with src:
        before = os.fstat(src.fileno())
        if not stat.S_ISREG(before.st_mode):
            return NOT_REGULAR
        if before.st_size > MAX_FILE_BYTES:
            return TOO_BIG
        read = read_stream(src, temp, cap=before.st_size + 1)
        after = os.fstat(src.fileno())
    if read.size != before.st_size or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        return CHANGED
    return read


def read_stream(src: BinaryIO | EntryReader, temp: Path, cap: int | None = None) -> Read:
    """Read a stream (at most `cap` bytes): whole into memory up to `IN_MEMORY_BYTES`, beyond that into `temp`."""
    head = read_up_to(src, IN_MEMORY_BYTES + 1 if cap is None else min(cap, IN_MEMORY_BYTES + 1))
    if len(head) <= IN_MEMORY_BYTES:
        return Read(hashlib.sha256(head).hexdigest(), len(head), head)
    sha256, size = copy_hashing(src, temp, head, None if cap is None else cap - len(head))
    return Read(sha256, size, None)


def read_up_to(src: BinaryIO | EntryReader, count: int) -> bytes:
    """The next `count` bytes of a stream, fewer at its end."""
    chunks: list[bytes] = []
    while count > 0 and (chunk := src.read(min(count, CHUNK_BYTES))):
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def copy_hashing(src: BinaryIO | EntryReader, dest: Path, head: bytes, cap: int | None) -> tuple[str, int]:
    """Write `head`, then the rest of the stream (at most `cap` more bytes), into a new file in chunks; returns
    the sha256 hex digest and size of what was written."""
    digest, size = hashlib.sha256(head), len(head)
    with dest.open("wb") as out:
        out.write(head)
        while (cap is None or cap > 0) and (chunk := src.read(CHUNK_BYTES if cap is None else min(cap, CHUNK_BYTES))):
            digest.update(chunk)
            size += len(chunk)
            cap = None if cap is None else cap - len(chunk)
            out.write(chunk)
    return digest.hexdigest(), size


def write_staged(data: bytes, dest: Path) -> None:
    """Write a checked image's bytes into a new staging file."""
    with dest.open("wb") as out:
        out.write(data)
