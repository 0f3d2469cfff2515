"""The Export and Model checkpoints panels: download labels and models; save and load the current model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.ui.downloads import hand_out
from app.ui.handlers import Handlers
from app.ui.states import States
from app.ui.updates import PRIVATE, QUIET

EXPORTS = [
    ("Labels (CSV)", "labels_csv"),
    ("Images sorted into class folders (zip)", "class_zip"),
    ("Provenance: who labeled what, when (JSON)", "provenance_json"),
    ("Model: Lightning checkpoint (.ckpt)", "ckpt"),
    ("Model: safetensors + config (zip)", "safetensors"),
    ("Model: ONNX", "onnx"),
    ("Export all: labels, provenance and the model for timm and ONNX, with a README (zip)", "all_zip"),
    ("Whole project (zip): images, labels, history and models, to open on another computer", "project_zip"),
    ("All my projects: labels, history and models (zip)", "everything"),
]

LOAD_NOTE = (
    "Loading a checkpoint changes only the model that guesses, picks images and is exported: your labels are never "
    "rolled back. The status line names the model in use; the next round trains a new one on all your labels."
)


@dataclass(frozen=True)
class ModelPanel:
    """The Export section (export_kind, export, export_file) and the checkpoints group (the rest)."""

    export_kind: gr.Dropdown
    export: gr.Button
    export_file: gr.File
    ckpt_name: gr.Textbox
    save_ckpt: gr.Button
    ckpts: gr.Dropdown
    load_ckpt: gr.Button


def build_model_panel() -> ModelPanel:
    """Lay out the panel (inside a column of the page)."""
    with gr.Accordion("Export", open=False):
        export_kind = gr.Dropdown(EXPORTS, value="labels_csv", label="What to export")
        export = gr.Button("Export")
        export_file = gr.File(label="Download", interactive=False, visible=False)
    gr.Markdown("### Model checkpoints")
    with gr.Group():
        ckpt_name = gr.Textbox(label="Name (optional)", max_lines=1, placeholder="e.g. before-new-labels")
        save_ckpt = gr.Button("Save Checkpoint")
        ckpts = gr.Dropdown([], label="Saved checkpoints")
        load_ckpt = gr.Button("Load Checkpoint")
    gr.Markdown(LOAD_NOTE, elem_classes=["al-note"])
    return ModelPanel(
        export_kind=export_kind,
        export=export,
        export_file=export_file,
        ckpt_name=ckpt_name,
        save_ckpt=save_ckpt,
        ckpts=ckpts,
        load_ckpt=load_ckpt,
    )


def wire_model_panel(panel: ModelPanel, states: States, h: Handlers, *, predictions: gr.Label) -> None:
    """Attach the panel's events (inside the Blocks context).

    Args:
        predictions: the labeling panel's model guess, redrawn by a loaded checkpoint.
    """
    models = h.models
    states.project_box.change(
        lambda project: gr.update(choices=models.checkpoint_choices(project), value=None),
        [states.project],
        [panel.ckpts],
        **PRIVATE,
    )

    def save(project: str | None, name: str | None, client: str | None) -> tuple[Any, ...]:
        choices, saved = models.save_checkpoint(project, name, client)
        return gr.update(choices=choices, value=saved), ""

    panel.save_ckpt.click(
        save,
        [states.project, panel.ckpt_name, states.client],
        [panel.ckpts, panel.ckpt_name],
        api_name="save_checkpoint",
        **QUIET,
    )
    panel.load_ckpt.click(
        models.load_checkpoint,
        [states.project, panel.ckpts, states.cursor, states.client],
        [predictions],
        api_name="load_checkpoint",
        **QUIET,
    )

    def export(project: str | None, kind: str, client: str | None) -> Any:
        return gr.update(value=str(hand_out(models.export(project, kind, client))), visible=True)

    panel.export.click(
        export,
        [states.project, panel.export_kind, states.client],
        [panel.export_file],
        api_name="export",
    )
