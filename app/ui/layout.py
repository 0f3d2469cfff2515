"""The page: `build_demo(projects_dir)` lays out the components; `app.ui.events` wires them to the handlers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from app.core.settings import MODES, ProjectSettings
from app.core.strategies import DEFAULT_STRATEGY, STRATEGIES
from app.engine.demo import DEMO_NAME
from app.engine.model_import import architecture_names
from app.ui.handlers import CUSTOM, DEFAULT_SIZE, Handlers
from app.ui.hotkeys import KEYS_HELP
from app.ui.imagebox import image_html
from app.ui.views import LabelView, status_html, strategy_name

TITLE = "Active-learning labeler"
PREDICTIONS = "Model's guess"
SIZES = [DEFAULT_SIZE, "64", "96", "128", "160", "192", "224", "256", "288", "320", "384"]
MODE_NAMES = {"fast": "Fast: train a small head on frozen features", "finetune": "Fine-tune the whole model (GPU)"}
EXPORTS = [
    ("Labels (CSV)", "labels_csv"),
    ("Images sorted into class folders (zip)", "class_zip"),
    ("Provenance: who labeled what, when (JSON)", "provenance_json"),
    ("Model: Lightning checkpoint (.ckpt)", "ckpt"),
    ("Model: safetensors + config (zip)", "safetensors"),
    ("Model: ONNX", "onnx"),
]


@dataclass
class Page:
    """Handles on the components the event wiring needs (see `app.ui.events`)."""

    handlers: Handlers
    demo: gr.Blocks
    c: dict[str, gr.components.Component]

    def __getattr__(self, name: str) -> gr.components.Component:
        try:
            return self.__dict__["c"][name]
        except KeyError:
            raise AttributeError(name) from None


def build_demo(
    projects_dir: str | Path,
    demo: bool = False,
    *,
    model_choices: dict[str, tuple[str | None, str]] | None = None,
    base_settings: ProjectSettings | None = None,
    allow_local_paths: bool = False,
) -> gr.Blocks:
    """Build the labeling app over a projects folder (launch it with `app.ui.server.launch_kwargs`).

    Args:
        projects_dir: where projects live; one folder per project.
        demo: open the digits demo project when the page loads.
        model_choices: model type name -> (timm name or None for a typed name, weights source); the default
            offers the bundled EfficientNet-Lite0 and a few hub models.
        base_settings: settings the New project form does not set (epochs, seed, ...).
        allow_local_paths: the app serves only this computer, so folders may be given by path.
    """
    h = Handlers(
        projects_dir, model_choices=model_choices, base_settings=base_settings, allow_local_paths=allow_local_paths
    )
    c: dict[str, gr.components.Component] = {}
    projects = h.list_projects()
    with gr.Blocks(title=TITLE, fill_width=True, delete_cache=(3600, 86400)) as blocks:
        c["client"] = gr.State(None)
        c["project"] = gr.State(DEMO_NAME if demo else None)
        c["client_box"] = gr.Textbox("", visible=False)
        c["project_box"] = gr.Textbox(DEMO_NAME if demo else "", visible=False)
        c["cursor"] = gr.State({"image_id": None, "shown_at": 0.0})
        c["job_key"] = gr.State(None)
        c["round"] = gr.State(-1)
        c["timer"] = gr.Timer(1.0)
        with gr.Row(equal_height=True):
            gr.HTML(
                f"<div><h1>{TITLE}</h1><p>Label only the images the model needs; it learns from every batch.</p></div>",
                elem_id="al-header",
            )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=340):
                _project_column(c, h, projects, demo)
            with gr.Column(scale=3, min_width=560):
                _main_column(c)
    page = Page(handlers=h, demo=blocks, c=c)
    from app.ui.events import wire

    with blocks:
        wire(page)
    blocks.queue(default_concurrency_limit=2)
    return blocks


def _project_column(c: dict, h: Handlers, projects: list[str], demo: bool) -> None:
    gr.Markdown("### Project")
    with gr.Group():
        c["projects"] = gr.Dropdown(
            projects,
            value=DEMO_NAME if demo and DEMO_NAME in projects else None,
            label="Open a project",
            info="Projects in " + str(h.projects_dir),
            allow_custom_value=False,
        )
        with gr.Row():
            c["open"] = gr.Button("Open", variant="primary", size="sm", elem_id="al-open")
            c["refresh_projects"] = gr.Button("Refresh list", size="sm")
    with gr.Accordion("New project", open=not projects):
        c["name"] = gr.Textbox(label="Project name", placeholder="e.g. birds-2024", max_lines=1)
        model_names = list(h.model_choices)
        c["model"] = gr.Dropdown(model_names, value=model_names[0], label="Model type")
        c["custom_arch"] = gr.Textbox(label="timm model name", placeholder="e.g. efficientnet_b0", visible=False)
        c["labels_text"] = gr.Textbox(
            label="Labels", lines=4, placeholder="cat\ndog\nbird", info="One per line, or separated by commas."
        )
        with gr.Row(equal_height=True):
            c["new_label"] = gr.Textbox(
                show_label=False,
                placeholder="Another label",
                max_lines=1,
                scale=3,
                info="Goes into the list above while you name a new project, else into the open project.",
            )
            c["add_label"] = gr.Button("Add Label", size="sm", scale=1, min_width=100)
        c["strategy"] = gr.Dropdown(
            [(strategy_name(s) + (" (recommended)" if s == DEFAULT_STRATEGY else ""), s) for s in STRATEGIES],
            value=DEFAULT_STRATEGY,
            label="Sampling strategy",
            info="How the next images to label are picked.",
        )
        with gr.Row():
            c["batch_size"] = gr.Slider(1, 100, value=h.base_settings.batch_size, step=1, label="Batch size")
            c["val_split"] = gr.Slider(
                0.0,
                0.5,
                value=h.base_settings.val_fraction,
                step=0.05,
                label="Validation split",
                info="Share of labels held out to measure accuracy.",
            )
        c["mode"] = gr.Radio([(MODE_NAMES[m], m) for m in MODES], value="fast", label="Training mode")
        c["image_size"] = gr.Dropdown(SIZES, value=DEFAULT_SIZE, label="Image size (pixels)", allow_custom_value=True)
        c["start"] = gr.Button("Start Project", variant="primary", elem_id="al-start")
    with gr.Accordion("Add images", open=bool(projects) and not demo) as c["uploads_box"]:
        c["up_folder"] = gr.File(label="A folder", file_count="directory", height=120)
        c["up_files"] = gr.File(
            label="Files: images, a zip, or a CSV of image paths (with or without labels)",
            file_count="multiple",
            file_types=["image", ".zip", ".csv"],
            height=120,
        )
        c["local_folder"] = gr.Textbox(
            label="Or a folder on this computer",
            placeholder="/home/me/photos",
            max_lines=1,
            visible=h.allow_local_paths,
        )
        c["from_folders"] = gr.Checkbox(
            label="Labels from folder names",
            info="For class folders (folder/cat/…, folder/dog/…) in a zip or a folder on this computer.",
        )
        c["import_btn"] = gr.Button("Import images", variant="primary")
        c["report"] = gr.Markdown(elem_id="al-report")
    _own_model_form(c, h)
    with gr.Accordion("Export", open=False):
        c["export_kind"] = gr.Dropdown(EXPORTS, value="labels_csv", label="What to export")
        c["export"] = gr.Button("Export")
        c["export_file"] = gr.File(label="Download", interactive=False, visible=False)
    gr.Markdown("### Model checkpoints")
    with gr.Group():
        c["ckpt_name"] = gr.Textbox(label="Name (optional)", max_lines=1, placeholder="e.g. before-new-labels")
        c["save_ckpt"] = gr.Button("Save Checkpoint")
        c["ckpts"] = gr.Dropdown([], label="Saved checkpoints")
        c["load_ckpt"] = gr.Button("Load Checkpoint")


def _own_model_form(c: dict, h: Handlers) -> None:
    """Start from your own model: a timm name or a model file; Verify Model reports before Import Model creates."""
    with gr.Accordion("Start from your own model", open=False):
        c["pm_name"] = gr.Textbox(label="Project name", max_lines=1, elem_id="al-pm-name")
        c["pm_labels"] = gr.Textbox(
            label="Labels",
            lines=2,
            info="One per line, or comma separated. Empty: the class names the model file carries.",
            elem_id="al-pm-labels",
        )
        c["pm_classes"] = gr.Number(label="Number of classes (optional)", precision=0, minimum=0)
        c["pm_arch"] = gr.Dropdown(
            [n for n in h.model_choices if n != CUSTOM] + architecture_names(),
            value=None,
            label="Model",
            allow_custom_value=True,
            filterable=True,
            info="Type to search timm: a name (resnet18), a pretrained tag (resnet18.a1_in1k) or hf-hub:owner/repo. "
            "Leave empty for this app's checkpoints and exports: they name their model.",
            elem_id="al-pm-arch",
        )
        c["pm_file"] = gr.File(
            label="Weights file (optional for pretrained models)",
            file_types=[".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".zip"],
            height=110,
            elem_id="al-pm-file",
        )
        c["pm_path"] = gr.Textbox(
            label="Or a file or folder on this computer",
            placeholder="/home/me/models/resnet18_birds.safetensors",
            max_lines=1,
            visible=h.allow_local_paths,
        )
        c["pm_image"] = gr.Image(
            type="filepath", label="Test image (optional)", sources=["upload"], height=140, elem_id="al-pm-image"
        )
        c["pm_mode"] = gr.Radio(
            [("Freeze the backbone (fast)", "fast"), ("Fine-tune it (GPU)", "finetune")], value="fast", label="Backbone"
        )
        c["pm_torchscript"] = gr.Checkbox(
            label="Allow TorchScript files: opening one runs code from it. Only for files you trust.", value=False
        )
        with gr.Row():
            c["pm_verify"] = gr.Button("Verify Model", elem_id="al-pm-verify")
            c["pm_import"] = gr.Button("Import Model", variant="primary", elem_id="al-pm-import")
        c["pm_report"] = gr.Markdown(elem_id="al-model-report")


def _main_column(c: dict) -> None:
    c["status"] = gr.HTML(status_html(None), elem_id="al-status")
    with gr.Tabs() as c["tabs"]:
        with gr.Tab("Label", id="label"):
            with gr.Row(equal_height=False, elem_id="al-panel"):
                with gr.Column(scale=3, min_width=360):
                    c["image"] = gr.HTML(image_html(LabelView()), elem_id="al-image", padding=False)
                    c["caption"] = gr.Markdown(elem_id="al-caption")
                with gr.Column(scale=2, min_width=300):
                    c["labels"] = gr.Radio([], label="Label", elem_id="al-labels")
                    c["auto"] = gr.Checkbox(value=True, label="Auto-submit when a label is picked", elem_id="al-auto")
                    c["submit"] = gr.Button("Submit Label", variant="primary", elem_id="al-submit")
                    with gr.Row(elem_id="al-actions"):
                        c["skip"] = gr.Button("Skip", size="sm", elem_id="al-skip")
                        c["undo"] = gr.Button("Undo", size="sm", elem_id="al-undo")
                        c["prev"] = gr.Button("← Previous", size="sm", elem_id="al-prev")
                        c["next"] = gr.Button("Next →", size="sm", elem_id="al-next")
                    c["predictions"] = gr.Label(label=PREDICTIONS, num_top_classes=10, elem_id="al-predictions")
                    c["progress"] = gr.Markdown(elem_id="al-progress")
                    gr.HTML(f"<div>{KEYS_HELP}</div>", elem_id="al-keys")
                    c["prefetch"] = gr.HTML("", elem_id="al-prefetch", padding=False)
                    c["answer"] = gr.HTML("", elem_id="al-answer", padding=False)
        with gr.Tab("Dashboard", id="dashboard") as c["dash_tab"]:
            c["dash_summary"] = gr.Markdown()
            with gr.Row():
                c["curve"] = gr.LinePlot(
                    x="labeled",
                    y="value",
                    color="metric",
                    title="Learning curve",
                    x_title="labeled images",
                    y_title="score",
                    y_lim=[0, 1.05],
                    height=300,
                )
                c["counts"] = gr.BarPlot(
                    x="label", y="count", title="Labels per class", height=300, sort=None, y_lim=[0, None]
                )
            with gr.Row():
                with gr.Column():
                    gr.Markdown("#### Mistakes (latest round)")
                    c["confusion"] = gr.HTML()
                with gr.Column():
                    gr.Markdown("#### Rounds")
                    c["history"] = gr.Dataframe(
                        interactive=False,
                        wrap=True,
                        max_height=320,
                        column_widths=["10%", "26%", "16%", "16%", "16%", "16%"],
                    )
            c["dash_refresh"] = gr.Button("Refresh", size="sm")
