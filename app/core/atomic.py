"""Replacing files and folders whole: a crash, a kill or an error mid-write leaves the previous version in place.

Every writer goes to a temporary path beside the target (same file system, so the final rename is atomic),
the data is flushed to disk, then the temporary path is renamed onto the target and the folder entry is flushed
too. Temporary names start with a dot and end with ``.tmp``, so no glob of real files (``*.ckpt``,
``*.json``) ever picks one up; `clean_temp_files` removes the ones a killed writer left behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"
STALE_TEMP_SECONDS = 3600.0
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}[\w-]*\.tmp$")  # what temp_sibling makes: .<name>.<random><kind>.tmp


def temp_sibling(path: str | os.PathLike[str], kind: str = "") -> Path:
    """A fresh hidden path beside `path` (``.<name>.<random><kind>.tmp``) that nothing else uses."""
    target = Path(path)
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{kind}{TEMP_SUFFIX}")


def clean_temp_files(folders: Iterable[Path], *, max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove the temporary files and folders (named as `temp_sibling` names them) that killed writers left in
    `folders` or below.

    A writer in another process may still be busy with its temporary path, so only those unchanged for `max_age`
    seconds (a folder: nothing in it changed either) are removed. Links are neither followed nor removed.

    Returns:
        The paths removed.
    """
    removed: list[Path] = []
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in [*dirnames, *filenames]:
                path = Path(dirpath) / name
                if _TEMP_NAME.match(name) and not path.is_symlink() and _idle_for(path, max_age):
                    try:
                        if path.is_dir():
                            shutil.rmtree(path)
                        else:
                            path.unlink()
                    except OSError:  # gone meanwhile, or not ours to remove
                        continue
                    removed.append(path)
            dirnames[:] = [name for name in dirnames if not _TEMP_NAME.match(name)]
    return removed


def _idle_for(path: Path, max_age: float) -> bool:
    """True when neither `path` nor anything under it changed in the last `max_age` seconds."""
    try:
        changes = [path.lstat().st_mtime]
        for dirpath, dirnames, filenames in os.walk(path):
            changes += [(Path(dirpath) / name).lstat().st_mtime for name in [*dirnames, *filenames]]
    except OSError:
        return False
    return time.time() - max(changes) >= max_age


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a written file's data to the disk."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def fsync_folder(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (renames, new files) to the disk where the system allows it (not on Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse to sync a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write the new version of `path` to; on success it replaces `path` at once.

    The writer must have closed the file when the block ends. If the block raises, the temporary file is removed
    and `path` keeps its previous content (or stays absent). The parent folder is created when missing.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(target)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace `path` with `data` in one step (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", newline: str | None = None
) -> Path:
    """Replace `path` with `text` in one step (see `atomic_path`); `newline` as for `open` ("" writes it as is)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding, newline=newline)
    return Path(path)


@contextlib.contextmanager
def atomic_files(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder to write files to; on success each one replaces its namesake in `folder`.

    Every file is written in full and flushed before the first one is renamed into place, so an interrupted
    writer leaves every file of `folder` complete (old or new). Files of `folder` the block did not write are
    left alone. If the block raises, `folder` is untouched (created when missing). The temporary folder is always
    removed.
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(target)
    tmp.mkdir()
    try:
        yield tmp
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        for file in files:
            fsync_file(file)
        for file in files:
            dest = target / file.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, dest)
        for parent in sorted({(target / f.relative_to(tmp)).parent for f in files} | {target}):
            fsync_folder(parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
