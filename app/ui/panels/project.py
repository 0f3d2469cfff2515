"""The Project panel: open a project, or name a new one with its labels, model and settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.core.settings import MODES
from app.core.strategies import DEFAULT_STRATEGY, STRATEGIES
from app.engine.demo import DEMO_NAME
from app.ui.handlers import CUSTOM, DEFAULT_SIZE, Handlers
from app.ui.states import States
from app.ui.updates import PRIVATE, QUIET, opened_updates
from app.ui.views import label_choices, strategy_name

SIZES = [DEFAULT_SIZE, "64", "96", "128", "160", "192", "224", "256", "288", "320", "384"]
MODE_NAMES = {"fast": "Fast: train a small head on frozen features", "finetune": "Fine-tune the whole model (GPU)"}


@dataclass(frozen=True)
class ProjectPanel:
    """Open a project (projects, open, refresh_projects) and the New project form (the rest)."""

    projects: gr.Dropdown
    open: gr.Button
    refresh_projects: gr.Button
    name: gr.Textbox
    model: gr.Dropdown
    custom_arch: gr.Textbox
    labels_text: gr.Textbox
    new_label: gr.Textbox
    add_label: gr.Button
    strategy: gr.Dropdown
    batch_size: gr.Slider
    val_split: gr.Slider
    mode: gr.Radio
    image_size: gr.Dropdown
    start: gr.Button

    def form(self) -> list[gr.components.Component]:
        """The New project form, in the order of `Handlers.form_settings` (after the name)."""
        return [
            self.name,
            self.model,
            self.custom_arch,
            self.labels_text,
            self.strategy,
            self.batch_size,
            self.val_split,
            self.mode,
            self.image_size,
        ]


def build_project_panel(h: Handlers, projects: list[str], demo: bool) -> ProjectPanel:
    """Lay out the panel (inside a column of the page)."""
    gr.Markdown("### Project")
    with gr.Group():
        dropdown = gr.Dropdown(
            projects,
            value=DEMO_NAME if demo and DEMO_NAME in projects else None,
            label="Open a project",
            info=("Projects in " + str(h.projects_dir)) if h.allow_local_paths else None,
            allow_custom_value=False,
        )
        with gr.Row():
            open_button = gr.Button("Open", variant="primary", size="sm", elem_id="al-open")
            refresh = gr.Button("Refresh list", size="sm")
    with gr.Accordion("New project", open=not projects and not h.sessions.private, visible=not h.hosting.crowd):
        name = gr.Textbox(label="Project name", placeholder="e.g. birds-2024", max_lines=1)
        model_names = list(h.model_choices)
        model = gr.Dropdown(model_names, value=model_names[0], label="Model type")
        custom_arch = gr.Textbox(label="timm model name", placeholder="e.g. efficientnet_b0", visible=False)
        labels_text = gr.Textbox(
            label="Labels", lines=4, placeholder="cat\ndog\nbird", info="One per line, or separated by commas."
        )
        with gr.Row(equal_height=True):
            new_label = gr.Textbox(
                show_label=False,
                placeholder="Another label",
                max_lines=1,
                scale=3,
                info="Goes into the list above while you name a new project, else into the open project.",
            )
            add_label = gr.Button("Add Label", size="sm", scale=1, min_width=100)
        strategy = gr.Dropdown(
            [(strategy_name(s) + (" (recommended)" if s == DEFAULT_STRATEGY else ""), s) for s in STRATEGIES],
            value=DEFAULT_STRATEGY,
            label="Sampling strategy",
            info="How the next images to label are picked.",
        )
        with gr.Row():
            batch_size = gr.Slider(1, 100, value=h.base_settings.batch_size, step=1, label="Batch size")
            val_split = gr.Slider(
                0.0,
                0.5,
                value=h.base_settings.audit_share,
                step=0.05,
                label="Random checks",
                info="Share of each batch picked at random, to measure accuracy honestly. They train the model too.",
            )
        mode = gr.Radio([(MODE_NAMES[m], m) for m in MODES], value="fast", label="Training mode")
        image_size = gr.Dropdown(SIZES, value=DEFAULT_SIZE, label="Image size (pixels)", allow_custom_value=True)
        start = gr.Button("Start Project", variant="primary", elem_id="al-start")
    return ProjectPanel(
        projects=dropdown,
        open=open_button,
        refresh_projects=refresh,
        name=name,
        model=model,
        custom_arch=custom_arch,
        labels_text=labels_text,
        new_label=new_label,
        add_label=add_label,
        strategy=strategy,
        batch_size=batch_size,
        val_split=val_split,
        mode=mode,
        image_size=image_size,
        start=start,
    )


def wire_project_panel(
    panel: ProjectPanel,
    states: States,
    h: Handlers,
    *,
    opened: Sequence[gr.components.Component],
    labels: gr.Radio,
) -> None:
    """Attach the panel's events (inside the Blocks context).

    Args:
        opened: what opening a project updates (`Page.opened_outputs`; see `app.ui.updates.opened_updates`).
        labels: the labeling panel's label choices, which an added label joins.
    """

    def open_project(name: str | None, client: str | None) -> tuple[Any, ...]:
        client = h.new_client(client)
        return opened_updates(h, *h.open_project(name, client), client)

    panel.open.click(open_project, [panel.projects, states.client], opened, api_name="open_project", **QUIET)
    panel.refresh_projects.click(
        lambda client: gr.update(choices=h.list_projects(client)),
        [states.client],
        [panel.projects],
        api_visibility="private",
    )

    def start(client, name, model, arch, labels, strategy, batch, val, mode, size) -> tuple[Any, ...]:
        client = h.new_client(client)
        settings = h.form_settings(model, arch, strategy, batch, val, mode, size)
        return opened_updates(h, *h.start_project(name, labels, settings, client), client)

    panel.start.click(start, [states.client, *panel.form()], opened, api_name="start_project", **QUIET)
    panel.model.change(
        lambda m: gr.update(visible=m == CUSTOM), [panel.model], [panel.custom_arch], api_visibility="private"
    )

    def add_label(project: str | None, name: str, labels: str, new_label: str, client: str | None) -> tuple[Any, ...]:
        text, names = h.add_labels(project, name, labels, new_label, client)
        radio = gr.skip() if names is None else gr.update(choices=label_choices(names))
        return text, radio, ""

    label_io = (
        [states.project, panel.name, panel.labels_text, panel.new_label, states.client],
        [panel.labels_text, labels, panel.new_label],
    )
    panel.add_label.click(add_label, *label_io, api_name="add_label", **QUIET)
    panel.new_label.submit(add_label, *label_io, **QUIET, **PRIVATE)
