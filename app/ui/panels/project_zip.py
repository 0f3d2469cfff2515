"""The Whole project (zip) section: export the open project as one zip, import such a zip under a free name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.core.markup import escape_inline
from app.ui.handlers import Handlers
from app.ui.project_zips import export_zip, import_zip
from app.ui.states import States
from app.ui.updates import opened_updates, skips

INTRO = (
    "One zip with a project's images, labels, history and models: export it here, import it on another computer "
    "or Space, and back."
)
REFUSED = "**Not imported.** "
ZIP_REFUSED = "The project zip was not imported:"


@dataclass(frozen=True)
class ProjectZipPanel:
    """Export project (export, download) and Import project (file, import_button, report)."""

    export: gr.Button
    download: gr.File
    file: gr.File
    import_button: gr.Button
    report: gr.Markdown


def build_project_zip_panel(h: Handlers) -> ProjectZipPanel:
    """Lay out the section (inside a column of the page)."""
    where = "It joins your own projects here." if h.sessions.private else "It opens under a free name."
    with gr.Accordion("Whole project (zip)", open=False, elem_id="al-project-zip"):
        gr.Markdown(f"{INTRO} {where}", elem_classes=["al-note"])
        export = gr.Button("Export project", size="sm", elem_id="al-export-project")
        download = gr.File(label="Project zip", interactive=False, visible=False, elem_id="al-project-download")
        file = gr.File(label="A project zip to import", file_types=[".zip"], height=110, elem_id="al-project-upload")
        import_button = gr.Button("Import project", variant="primary", size="sm", elem_id="al-import-project")
        report = gr.Markdown(elem_id="al-project-zip-report")
    return ProjectZipPanel(export=export, download=download, file=file, import_button=import_button, report=report)


def refusal_markdown(message: str) -> str:
    """Why an import was refused, its first words in bold (names escaped)."""
    if message.startswith(ZIP_REFUSED):
        return f"**{ZIP_REFUSED}** {escape_inline(message.removeprefix(ZIP_REFUSED).strip())}"
    return REFUSED + escape_inline(message)


def wire_project_zip_panel(
    panel: ProjectZipPanel, states: States, h: Handlers, *, opened: Sequence[gr.components.Component]
) -> None:
    """Attach the section's events (inside the Blocks context).

    Args:
        opened: what opening a project updates (`Page.opened_outputs`): an imported project opens.
    """

    def export(project: str | None, client: str | None) -> Any:
        return gr.update(value=export_zip(h, project, h.new_client(client)), visible=True)

    panel.export.click(
        export,
        [states.project, states.client],
        [panel.download],
        api_name="export_project",
        show_progress_on=[panel.download],
    )

    def import_project(client: str | None, file: str | None) -> tuple[Any, ...]:
        """A refused zip leaves the page as it was; the report and a warning say why and what to do."""
        try:
            client = h.new_client(client)
            project, view, report = import_zip(h, file, client)
        except gr.Error as exc:
            gr.Warning(str(exc.message))
            return (*skips(len(opened)), refusal_markdown(str(exc.message)), gr.skip())
        if project is None or view is None:  # a shared project's host: it is kept, not opened
            return (*skips(len(opened)), report, None)
        return (*opened_updates(h, project, view, client), report, None)

    panel.import_button.click(
        import_project,
        [states.client, panel.file],
        [*opened, panel.report, panel.file],
        api_name="import_project",
        show_progress_on=[panel.report],
    )
