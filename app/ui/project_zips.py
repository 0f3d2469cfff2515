"""Handlers for a whole project as one zip on the page: import one into this tab's projects, export the open one.

The import runs the checks of ``python -m app import-project`` (`app.engine.project_import`: zip slip, the zip
limits, only project files, the schema version, every image's sha256, nothing that points outside the project) and
lands the project, under a free name, where this tab's projects are: the visitor's own workspace in private
workspaces (which must still be kept, and within the server's limit of workspaces), else the projects folder. On a
shared project only the host imports or exports; the imported project waits in the projects folder until the host
makes it the shared one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr

from app.core.markup import escape_inline
from app.engine.project_import import ImportedProject, import_project
from app.ui.downloads import hand_out
from app.ui.errors import friendly, plain
from app.ui.handlers import Handlers
from app.ui.views import LabelView

NO_ZIP = "Choose a project zip first: one made with 'Export project' here or on another computer."
NOT_A_ZIP_NAME = "'{name}' is not a .zip file. Choose the zip that 'Export project' made."
NO_OPEN = "Open the project to export first (Open a project, above)."


@friendly
def import_zip(h: Handlers, file: str | None, client: str) -> tuple[str | None, LabelView | None, str]:
    """Import a project zip (Import project): check it, land it in this tab's projects and open it there.

    Returns:
        The new project's reference and labeling view (both None on a shared project, where it is not opened), and
        a sentence for the page saying what came in.

    Raises:
        gr.Error: the zip was refused (the message says why and what to do); nothing was kept.
    """
    h.visitors.require_host(client)
    if not file:
        raise gr.Error(NO_ZIP)
    path = Path(file)
    if path.suffix.lower() != ".zip":
        raise gr.Error(plain(NOT_A_ZIP_NAME.format(name=path.name)))
    found = import_project(path, h.sessions.writable(client), allow_local_paths=h.allow_local_paths)
    if h.hosting.crowd:
        shared = h.hosting.shared_project
        note = f" Everyone here labels '{shared}'; to have them label '{found.name}', make it the shared project."
        return None, None, _report(found, note)
    ref, view = h.open_project(found.name, client)
    return ref, view, _report(found)


def _report(found: ImportedProject, note: str = "") -> str:
    """What came in, as Markdown (names escaped)."""
    renamed = (
        "" if found.name == found.original_name else f" (the name '{found.original_name}' was taken, so it is renamed)"
    )
    return escape_inline(
        f"Imported '{found.name}'{renamed}: {found.images:,} images, {found.labeled:,} labeled, with its history "
        f"and models.{note}"
    )


@friendly
def export_zip(h: Handlers, project: str | None, client: str | None) -> str:
    """Export project: the open project as one zip, named after it, to download (`ActiveLearningSession.export`)."""
    h.visitors.require_host(client)
    if not project:
        raise gr.Error(NO_OPEN)
    session = h.sessions.get(project)  # only ever a project of this tab's own workspace (`app.ui.sessions`)
    copy = hand_out(session.export("project_zip"))
    named = copy.with_name(f"{session.name}.zip")
    shutil.move(copy, named)
    return str(named)
