"""Private workspaces: on a server strangers share (a Space), each visitor's projects live in a folder of their own.

``<root>/workspaces/<id>/`` holds one visitor's projects. The id is the random part of a token the server signed
(`app.core.tokens`), so it is 24 hex digits the server made: a visitor cannot name a folder. A new workspace
starts with a copy of each template project (the digits demo), so every visitor can change their copy while the
template itself stays as it was. Images are content-addressed and never modified, so the copy links them instead
of duplicating them where the file system allows.

A workspace not used for ``ALABEL_WORKSPACE_IDLE_HOURS`` hours is deleted; at most ``ALABEL_MAX_WORKSPACES`` are
kept, and a new visitor beyond that is told to come back later.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import AppError

FOLDER = "workspaces"
LAST_SEEN = ".last-seen"
ENV_MAX_WORKSPACES = "ALABEL_MAX_WORKSPACES"
ENV_IDLE_HOURS = "ALABEL_WORKSPACE_IDLE_HOURS"
DEFAULT_MAX_WORKSPACES = 200
DEFAULT_IDLE_HOURS = 48.0
TOUCH_EVERY = 60.0  # seconds: a workspace's last use is written at most this often
_ID = re.compile(r"^[0-9a-f]{24}$")


class WorkspaceError(AppError):
    """A workspace cannot be made or found (the server is full, or the id is not one it made)."""


@dataclass(frozen=True)
class WorkspaceLimits:
    """How many workspaces a server keeps, and how long an unused one lives.

    Attributes:
        max_workspaces: the most workspaces kept at once.
        idle_hours: hours without use after which a workspace is deleted.
    """

    max_workspaces: int = DEFAULT_MAX_WORKSPACES
    idle_hours: float = DEFAULT_IDLE_HOURS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkspaceLimits:
        """Limits from ``ALABEL_MAX_WORKSPACES`` and ``ALABEL_WORKSPACE_IDLE_HOURS``; defaults where unset.

        Raises:
            ValueError: a variable is not a positive number.
        """
        environ = os.environ if environ is None else environ
        count = (environ.get(ENV_MAX_WORKSPACES) or "").strip()
        hours = (environ.get(ENV_IDLE_HOURS) or "").strip()
        return cls(
            max_workspaces=int(_positive(count, ENV_MAX_WORKSPACES)) if count else DEFAULT_MAX_WORKSPACES,
            idle_hours=_positive(hours, ENV_IDLE_HOURS) if hours else DEFAULT_IDLE_HOURS,
        )


def _positive(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{name} must be a positive number (got '{text}').")
    return value


def copy_project(source: Path, target: Path) -> None:
    """Copy a project folder; its images are hard-linked (they are never modified), everything else copied."""
    images = source / "images"

    def copy(src: str, dst: str) -> None:
        if Path(src).is_relative_to(images):
            try:
                os.link(src, dst)
                return
            except OSError:
                pass
        shutil.copy2(src, dst)

    partial = target.with_name(f".copying-{target.name}")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, copy_function=copy, ignore=shutil.ignore_patterns(".incoming-*", "*.tmp*"))
    partial.rename(target)


class Workspaces:
    """The visitors' workspaces under one projects folder.

    Args:
        root: the projects folder; workspaces live in ``root/workspaces``.
        limits: how many are kept, and for how long without use.
        templates: project folders every new workspace starts with a copy of.
        on_remove: called with a workspace's folder before it is deleted (to close its open projects).
    """

    def __init__(
        self,
        root: Path,
        limits: WorkspaceLimits | None = None,
        templates: Sequence[Path] = (),
        on_remove: Callable[[Path], object] | None = None,
    ) -> None:
        self.base = Path(root) / FOLDER
        self.base.mkdir(parents=True, exist_ok=True)
        self.limits = limits or WorkspaceLimits()
        self.templates = [Path(t) for t in templates]
        self._on_remove = on_remove
        self._lock = threading.Lock()
        self._touched: dict[str, float] = {}

    def folder(self, workspace: str) -> Path:
        """The folder of workspace `workspace` (which must be an id the server made)."""
        if not _ID.match(workspace or ""):
            raise WorkspaceError("This page has no valid workspace: reload it.")
        return self.base / workspace

    def ids(self) -> list[str]:
        """The workspaces kept now."""
        return sorted(p.name for p in self.base.iterdir() if p.is_dir() and _ID.match(p.name))

    def exists(self, workspace: str) -> bool:
        return self.folder(workspace).is_dir()

    def open(self, workspace: str) -> Path:
        """The workspace's folder, made (with copies of the templates) on a visitor's first visit.

        Raises:
            WorkspaceError: the server keeps as many workspaces as it may; a new visitor has to wait.
        """
        folder = self.folder(workspace)
        with self._lock:
            if not folder.is_dir():
                self._sweep(time.time())
                if len(self.ids()) >= self.limits.max_workspaces:
                    raise WorkspaceError(
                        f"This server already keeps {self.limits.max_workspaces} visitors' workspaces, its limit. "
                        f"Come back later: a workspace unused for {self.limits.idle_hours:g} hours is removed."
                    )
                self._make(folder)
        self.touch(workspace, force=True)
        return folder

    def _make(self, folder: Path) -> None:
        partial = folder.with_name(f".new-{folder.name}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        for template in self.templates:
            if template.is_dir():
                copy_project(template, partial / template.name)
        partial.rename(folder)

    def touch(self, workspace: str, *, force: bool = False) -> None:
        """Note that the workspace is in use (written at most once a minute unless `force`)."""
        now = time.time()
        if not force and now - self._touched.get(workspace, 0.0) < TOUCH_EVERY:
            return
        folder = self.folder(workspace)
        if folder.is_dir():
            (folder / LAST_SEEN).write_text(f"{now:.0f}\n", encoding="ascii")
            self._touched[workspace] = now

    def last_seen(self, workspace: str) -> float:
        """When the workspace was last used (seconds since the epoch)."""
        folder = self.folder(workspace)
        marker = folder / LAST_SEEN
        return (marker if marker.exists() else folder).stat().st_mtime

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete the workspaces unused for longer than the limit; returns their ids."""
        with self._lock:
            return self._sweep(time.time() if now is None else now)

    def _sweep(self, now: float) -> list[str]:
        idle = [w for w in self.ids() if now - self.last_seen(w) > self.limits.idle_hours * 3600]
        for workspace in idle:
            folder = self.folder(workspace)
            if self._on_remove is not None:
                self._on_remove(folder)
            doomed = folder.with_name(f".removing-{workspace}")
            folder.rename(doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            self._touched.pop(workspace, None)
        return idle
