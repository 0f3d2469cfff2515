"""Files handed to the browser for one download: a private copy outside the projects folder.

Gradio only sends files that a handler returns and that sit in its temporary or working folders; the projects
folder is not one of them, so nothing in it can be fetched by address. Copies older than an hour are removed when
the next one is made.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

KEEP_SECONDS = 3600.0


def downloads_dir() -> Path:
    """The folder of this computer's temporary files that holds the download copies."""
    folder = Path(tempfile.gettempdir()) / "alabel-downloads"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def hand_out(path: str | Path) -> Path:
    """A copy of `path` (same file name) in a fresh private folder, for the handler to return."""
    root = downloads_dir()
    _prune(root)
    target = Path(tempfile.mkdtemp(dir=root)) / Path(path).name
    shutil.copyfile(path, target)
    return target


def _prune(root: Path, keep_seconds: float = KEEP_SECONDS) -> None:
    cutoff = time.time() - keep_seconds
    for folder in root.iterdir():
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue
