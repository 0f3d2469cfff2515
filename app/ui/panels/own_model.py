"""The Start from your own model panel: a timm name or a model file; Verify Model reports before Import Model
creates a project on it, or puts it into the open project (its labels stay)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.engine.model_import import architecture_names
from app.engine.model_report import failure_markdown
from app.ui.handlers import CUSTOM, Handlers
from app.ui.model_handlers import OPEN_PROJECT
from app.ui.states import States
from app.ui.updates import opened_updates, skips


@dataclass(frozen=True)
class OwnModelPanel:
    """The own-model form (for a new project or the open one), its buttons and the model report."""

    target: gr.Radio
    name: gr.Textbox
    labels: gr.Textbox
    classes: gr.Number
    arch: gr.Dropdown
    file: gr.File
    path: gr.Textbox
    image: gr.Image
    mode: gr.Radio
    torchscript: gr.Checkbox
    verify: gr.Button
    import_button: gr.Button
    into_button: gr.Button
    report: gr.Markdown

    def model(self) -> list[gr.components.Component]:
        """What describes the model, in the order of `ModelHandlers.verify_model` (after the project)."""
        return [self.arch, self.classes, self.labels, self.file, self.path, self.torchscript, self.image]


def build_own_model_panel(h: Handlers) -> OwnModelPanel:
    """Lay out the panel (inside a column of the page)."""
    with gr.Accordion("Start from your own model", open=False):
        target = gr.Radio(
            [("A new project", "new"), ("The open project: its labels stay", OPEN_PROJECT)],
            value="new",
            label="Use the model for",
            elem_id="al-pm-target",
        )
        name = gr.Textbox(label="Project name", max_lines=1, elem_id="al-pm-name")
        labels = gr.Textbox(
            label="Labels",
            lines=2,
            info="One per line, or comma separated. Empty: the class names the model file carries.",
            elem_id="al-pm-labels",
        )
        classes = gr.Number(label="Number of classes (optional)", precision=0, minimum=0)
        arch = gr.Dropdown(
            [n for n in h.model_choices if n != CUSTOM] + architecture_names(),
            value=None,
            label="Model",
            allow_custom_value=True,
            filterable=True,
            info="Type to search timm: a name (resnet18), a pretrained tag (resnet18.a1_in1k) or hf-hub:owner/repo. "
            "Leave empty for this app's checkpoints and exports: they name their model.",
            elem_id="al-pm-arch",
        )
        file = gr.File(
            label="Weights file (optional for pretrained models)",
            file_types=[".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".zip"],
            height=110,
            elem_id="al-pm-file",
        )
        path = gr.Textbox(
            label="Or a file or folder on this computer" if h.allow_local_paths else "",
            placeholder="/home/me/models/resnet18_birds.safetensors" if h.allow_local_paths else None,
            max_lines=1,
            visible=h.allow_local_paths,
        )
        image = gr.Image(
            type="filepath", label="Test image (optional)", sources=["upload"], height=140, elem_id="al-pm-image"
        )
        mode = gr.Radio(
            [("Freeze the backbone (fast)", "fast"), ("Fine-tune it (GPU)", "finetune")], value="fast", label="Backbone"
        )
        torchscript = gr.Checkbox(
            label="Allow TorchScript files: opening one runs code from it. Only for files you trust.", value=False
        )
        with gr.Row():
            verify = gr.Button("Verify Model", elem_id="al-pm-verify")
            import_button = gr.Button("Import Model", variant="primary", elem_id="al-pm-import")
            into_button = gr.Button(
                "Import into the open project", variant="primary", visible=False, elem_id="al-pm-into"
            )
        report = gr.Markdown(elem_id="al-model-report")
    return OwnModelPanel(
        target=target,
        name=name,
        labels=labels,
        classes=classes,
        arch=arch,
        file=file,
        path=path,
        image=image,
        mode=mode,
        torchscript=torchscript,
        verify=verify,
        import_button=import_button,
        into_button=into_button,
        report=report,
    )


def wire_own_model_panel(
    panel: OwnModelPanel, states: States, h: Handlers, *, opened: Sequence[gr.components.Component]
) -> None:
    """Attach the panel's events (inside the Blocks context).

    Args:
        opened: what opening a project updates (`Page.opened_outputs`): an imported model opens its new project.
    """
    own_model = panel.model()

    def import_model(client, name, arch, classes, labels, file, path, mode, torchscript, image) -> tuple[Any, ...]:
        """A refused model keeps the page as it is; the report and a warning say why."""
        try:
            client = h.new_client(client)
            project, view, report = h.models.import_model(
                name, arch, classes, labels, file, path, mode, torchscript, image, client=client
            )
        except gr.Error as exc:
            gr.Warning(str(exc.message))
            return (*skips(len(opened)), failure_markdown(str(exc.message)))
        return (*opened_updates(h, project, view, client), report)

    panel.import_button.click(
        import_model,
        [states.client, panel.name, *own_model[:5], panel.mode, *own_model[5:]],
        [*opened, panel.report],
        api_name="import_model",
        show_progress_on=[panel.report],
    )

    def into_project(project, client, arch, file, path, mode, torchscript, image, progress=gr.Progress()) -> Any:
        """The open project keeps its labels and gets the model; a refused model changes nothing."""
        try:
            client = h.new_client(client)
            report = h.models.import_into_project(
                project, arch, file, path, mode, torchscript, image, client=client,
                progress=lambda f, m: progress(f, desc=m),
            )  # fmt: skip
            view = h.current(project, client)
        except gr.Error as exc:
            gr.Warning(str(exc.message))
            return (*skips(len(opened)), failure_markdown(str(exc.message)))
        return (*opened_updates(h, project, view, client), report)

    panel.into_button.click(
        into_project,
        [states.project, states.client, panel.arch, panel.file, panel.path, panel.mode, panel.torchscript, panel.image],
        [*opened, panel.report],
        api_name="import_model_into_project",
        show_progress_on=[panel.report],
    )

    def retarget(target: str) -> tuple[Any, ...]:
        new = target != OPEN_PROJECT
        return tuple(gr.update(visible=new) for _ in range(4)) + (gr.update(visible=not new),)

    panel.target.change(
        retarget,
        [panel.target],
        [panel.name, panel.labels, panel.classes, panel.import_button, panel.into_button],
        api_visibility="private",
    )
    panel.verify.click(
        h.models.verify_model,
        [states.project, *own_model, panel.target],
        [panel.report],
        api_name="verify_model",
        show_progress_on=[panel.report],
    )
