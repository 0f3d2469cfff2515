"""The handlers' way to a project: the tab's id and the project the page holds -> the open session.

Three ways a server keeps projects:
- one projects folder (on your computer, or shared by the people you give a link and a password);
- private workspaces (the default on a Space): each visitor's projects in a folder of their own
  (`app.engine.workspaces`), found from the workspace part of the tab's server-signed id;
- one shared project everyone labels (crowd mode): the only project any page can open.

The page keeps a *reference* to its project in `gr.State` (which never leaves the server): the project's name, or
``"<workspace>/<name>"`` in a private workspace. A reference is made only from a tab's own id, so a page can
reach only its own workspace's projects. One `Sessions` per page, shared by every handler object; the sessions
themselves live in `app.ui.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from app.core import tokens
from app.core.errors import AppError
from app.engine.session import ActiveLearningSession
from app.engine.workspaces import WorkspaceError, Workspaces
from app.ui import registry

NO_PROJECT = "Open a project or start a new one (left column)."
RELOAD = "This tab has no valid id: reload the page, then try again."


@dataclass(frozen=True)
class Sessions:
    """The projects a page may reach.

    Attributes:
        projects_dir: the projects folder, resolved.
        workspaces: each visitor's own workspace under the projects folder (None: the folder is everyone's).
        shared: the one project every visitor labels (crowd mode), else None.
    """

    projects_dir: Path
    workspaces: Workspaces | None = None
    shared: str | None = None

    @classmethod
    def at(cls, projects_dir: str | Path, workspaces: Workspaces | None = None, shared: str | None = None) -> Sessions:
        """The projects of `projects_dir` (created if missing)."""
        root = Path(projects_dir).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, workspaces, shared)

    @property
    def private(self) -> bool:
        """Each visitor has a workspace of their own."""
        return self.workspaces is not None

    # ------------------------------------------------------------------------------------- where, for whom
    def folder(self, client: str | None) -> Path:
        """The projects folder of this tab: its workspace's, or the server's."""
        if self.workspaces is None:
            return self.projects_dir
        workspace = tokens.workspace_of(client)
        if workspace is None:
            raise gr.Error(RELOAD)
        return self.workspaces.folder(workspace)

    def writable(self, client: str | None) -> Path:
        """The projects folder a new project of this tab goes into: in private workspaces the visitor's own, made
        again (within the server's limit of workspaces) if it was removed while unused."""
        if self.workspaces is None:
            return self.projects_dir
        workspace = tokens.workspace_of(client)
        if workspace is None:
            raise gr.Error(RELOAD)
        try:
            return self.workspaces.open(workspace)
        except WorkspaceError as exc:
            raise gr.Error(str(exc)) from None

    def ref(self, client: str | None, name: str) -> str:
        """The reference the page keeps for project `name` of this tab's projects."""
        if self.workspaces is None:
            return name
        return f"{self.folder(client).name}/{name}"

    @staticmethod
    def name_of(ref: str | None) -> str:
        """The project name a reference points at (what the page shows)."""
        return (ref or "").rpartition("/")[2]

    def _locate(self, ref: str) -> tuple[Path, str]:
        if self.workspaces is None:
            return self.projects_dir, ref
        workspace, sep, name = ref.partition("/")
        if not sep:
            raise gr.Error(NO_PROJECT)
        try:
            folder = self.workspaces.folder(workspace)
            self.workspaces.touch(workspace)
        except WorkspaceError as exc:
            raise gr.Error(str(exc)) from None
        return folder, name

    # ------------------------------------------------------------------------------------- the sessions
    def get(self, project: str | None) -> ActiveLearningSession:
        """The session of the referenced project, opened on first use; `gr.Error` when no project is open."""
        if not project:
            raise gr.Error(NO_PROJECT)
        return registry.get(*self._locate(project))

    def maybe(self, project: str | None) -> ActiveLearningSession | None:
        """The open project, or None (a project that vanished is reported once by the caller)."""
        if not project:
            return None
        try:
            return registry.get(*self._locate(project))
        except (AppError, gr.Error):
            return None

    def register(self, session: ActiveLearningSession, client: str | None = None) -> ActiveLearningSession:
        """Keep a freshly created session of this tab's projects; returns the one kept (`registry.register`)."""
        return registry.register(self.folder(client), session)

    def first_visit(self, project: str) -> bool:
        """True once per opening of a project (see `registry.first_visit`)."""
        return registry.first_visit(*self._locate(project))

    def names(self, client: str | None = None) -> list[str]:
        """The projects this tab may open."""
        if self.shared is not None:
            return [self.shared]
        try:
            folder = self.folder(client)
        except gr.Error:
            return []
        return ActiveLearningSession.list_projects(folder)
