"""The Add images panel: a folder, files (images, a zip, a CSV) or a folder on this computer -> the open project."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.ui.handlers import Handlers
from app.ui.states import States
from app.ui.updates import view_updates
from app.ui.uploads import collect_sources, report_markdown


@dataclass(frozen=True)
class UploadPanel:
    """The Add images section; `box` opens by itself when the open project has no images."""

    box: gr.Accordion
    folder: gr.File
    files: gr.File
    local_folder: gr.Textbox
    from_folders: gr.Checkbox
    import_button: gr.Button
    report: gr.Markdown


def build_upload_panel(h: Handlers, open_: bool) -> UploadPanel:
    """Lay out the panel (inside a column of the page); `open_` opens the section."""
    with gr.Accordion("Add images", open=open_) as box:
        folder = gr.File(label="A folder", file_count="directory", height=120, elem_id="al-upload-folder")
        files = gr.File(
            label="Files: images, a zip, or a CSV of image paths (with or without labels)",
            file_count="multiple",
            file_types=["image", ".zip", ".csv"],
            height=120,
            elem_id="al-upload-files",
        )
        local = h.allow_local_paths  # otherwise nothing on the page mentions the server's disk
        local_folder = gr.Textbox(
            label="Or a folder on this computer" if local else "",
            placeholder="/home/me/photos" if local else None,
            max_lines=1,
            visible=local,
        )
        from_folders = gr.Checkbox(
            label="Labels from folder names",
            info="For class folders (folder/cat/…, folder/dog/…) in a zip"
            + (" or a folder on this computer." if local else " or an uploaded folder."),
        )
        import_button = gr.Button("Import images", variant="primary")
        report = gr.Markdown(elem_id="al-report")
    return UploadPanel(
        box=box,
        folder=folder,
        files=files,
        local_folder=local_folder,
        from_folders=from_folders,
        import_button=import_button,
        report=report,
    )


def wire_upload_panel(
    panel: UploadPanel, states: States, h: Handlers, *, view: Sequence[gr.components.Component]
) -> None:
    """Attach the panel's events (inside the Blocks context).

    Args:
        view: the labeling view's outputs (`Page.view_outputs`): the first image shows once images are in.
    """

    def import_images(project, client, folder, files, local, from_folders, progress=gr.Progress()) -> tuple[Any, ...]:
        try:
            sources = collect_sources(
                folder_files=folder,
                files=files,
                local_folder=local,
                allow_local_paths=h.allow_local_paths,
            )
        except Exception as exc:  # IngestError: nothing chosen, or a typed folder that does not exist
            raise gr.Error(str(exc)) from None
        report, label_view = h.import_images(
            project,
            h.new_client(client),
            sources.paths,
            sources.allowed_roots,
            bool(from_folders),
            progress=lambda f, m: progress(f, desc=m),
        )
        cleared = tuple(gr.update(value=None) for _ in range(2))  # one dict each: Gradio consumes them
        return (report_markdown(report, sources.notes), *cleared, *view_updates(label_view, choices=True))

    uploads = [panel.folder, panel.files]
    panel.import_button.click(
        import_images,
        [states.project, states.client, *uploads, panel.local_folder, panel.from_folders],
        [panel.report, *uploads, *view],
        api_name="import_images",
        show_progress_on=[panel.report],
    )
