"""Staging folders: where an import writes each image's bytes before they are checked and moved into ``images/``.

Each import stages its files in its own ``<project>/.incoming-*`` folder: beside ``images/`` (the same file system,
so the final move is atomic) but not in it, since ``images/`` is served to the browser and staged bytes may be
unchecked. `clean_staging` removes the staging folders that killed imports left behind (also those older versions
left inside ``images/``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # Windows: staging folders are recognised as stale by age alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["STAGING_PREFIX", "clean_staging", "lock_staging", "new_staging"]

IMAGES_DIR = "images"
STAGING_PREFIX = ".incoming-"
STAGING_LOCK = "owner.lock"
STALE_SECONDS = 3600.0


def new_staging(project_root: Path) -> tuple[Path, BinaryIO | None]:
    """A new, locked staging folder in `project_root`, and the open lock file that keeps it locked (None where
    locks are not available)."""
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=project_root))
    return staging, lock_staging(staging)


def clean_staging(project_root: Path, *, max_age: float = STALE_SECONDS) -> list[Path]:
    """Remove the ``.incoming-*`` staging folders that killed imports left in `project_root` (and in its ``images/``
    folder, where older versions staged).

    Other processes, and other imports of this process, may be importing into the same project, so a folder is
    removed only when its owner is gone. Each import holds an exclusive `fcntl.flock` on the ``owner.lock`` file in
    its folder, which the system releases when the process ends (even by ``kill -9``): a folder whose lock can be
    taken is stale at once. Process ids are reused and ages alone would wait long after a kill, so neither is the
    rule; only a folder without a lock file (an import starting up, an older version, no ``flock`` on this
    system) falls back to age: it is removed after `max_age` seconds without a change in it.

    Args:
        project_root: the project folder.
        max_age: seconds without a change after which a folder without a lock file counts as stale.

    Returns:
        The folders removed.
    """
    folders: list[Path] = []
    for parent in (project_root, project_root / IMAGES_DIR):
        try:
            folders += sorted(p for p in parent.iterdir() if p.name.startswith(STAGING_PREFIX) and not p.is_symlink())
        except OSError:  # no such folder yet, or unreadable: nothing to clean there
            continue
    return [folder for folder in folders if folder.is_dir() and _remove_if_stale(folder, max_age)]


def _remove_if_stale(folder: Path, max_age: float) -> bool:
    lock = folder / STAGING_LOCK
    handle: BinaryIO | None = None
    try:
        if fcntl is not None and lock.exists():
            handle = lock.open("rb")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: its import is running
        elif time.time() - _last_change(folder) < max_age:
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True
    except OSError:
        return False
    finally:
        if handle is not None:
            handle.close()


def _last_change(folder: Path) -> float:
    return max([folder.lstat().st_mtime] + [entry.lstat().st_mtime for entry in folder.iterdir()])


def lock_staging(staging: Path) -> BinaryIO | None:
    """Lock ``owner.lock`` in a new staging folder for as long as the returned file stays open.

    The file is locked under a temporary name and then renamed, so a cleaner never finds it unlocked while its
    import runs. None where locks are not available (the folder is then recognised as stale by age).
    """
    if fcntl is None:
        return None
    fd, temp = tempfile.mkstemp(prefix=".lock-", dir=staging)
    handle = os.fdopen(fd, "wb")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(temp, staging / STAGING_LOCK)
    except OSError:
        handle.close()
        return None
    return handle
