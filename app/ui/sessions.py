"""The handlers' way to a project: the name the page holds -> the open session of this projects folder.

One `Sessions` per page, shared by every handler object (see `app.ui.handlers`, `app.ui.model_handlers`); the
sessions themselves live in `app.ui.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from app.core.errors import AppError
from app.engine.session import ActiveLearningSession
from app.ui import registry

NO_PROJECT = "Open a project or start a new one (left column)."


@dataclass(frozen=True)
class Sessions:
    """The open projects of one projects folder.

    Attributes:
        projects_dir: the projects folder, resolved; one folder per project.
    """

    projects_dir: Path

    @classmethod
    def at(cls, projects_dir: str | Path) -> Sessions:
        """The projects of `projects_dir` (created if missing)."""
        root = Path(projects_dir).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    def get(self, project: str | None) -> ActiveLearningSession:
        """The session of `project`, opened on first use; `gr.Error` when no project is open."""
        if not project:
            raise gr.Error(NO_PROJECT)
        return registry.get(self.projects_dir, project)

    def maybe(self, project: str | None) -> ActiveLearningSession | None:
        """The open project, or None (a project that vanished is reported once by the caller)."""
        if not project:
            return None
        try:
            return registry.get(self.projects_dir, project)
        except AppError:
            return None

    def register(self, session: ActiveLearningSession) -> ActiveLearningSession:
        """Keep a freshly created session; returns the one kept (see `registry.register`)."""
        return registry.register(self.projects_dir, session)

    def first_visit(self, name: str) -> bool:
        """True once per opening of a project (see `registry.first_visit`)."""
        return registry.first_visit(self.projects_dir, name)

    def names(self) -> list[str]:
        """The projects in the folder."""
        return ActiveLearningSession.list_projects(self.projects_dir)
