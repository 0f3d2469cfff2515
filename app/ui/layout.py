"""The page: `build_demo(projects_dir)` builds each panel (`app.ui.panels`), then wires each beside its panel.

Left column: Project, Add images, Labels, Start from your own model, Export and Model checkpoints (on a phone it
folds away, `app.ui.style`). Main column: the round status line over the Label and Dashboard tabs. This module
wires what belongs to the whole page: the page load, the tab's remembered project and the timer that polls the
round job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from app.core.settings import ProjectSettings
from app.ui.handlers import NO_PROJECT, Handlers
from app.ui.hosting import Hosting
from app.ui.hotkeys import INIT_JS, REMEMBER_CLIENT_JS, REMEMBER_PROJECT_JS
from app.ui.panels.crowd import CrowdPanel, build_crowd_panel, whoami_text, wire_crowd_panel
from app.ui.panels.dashboard import DashboardPanel, build_dashboard_panel, wire_dashboard_panel
from app.ui.panels.label_set import LabelSetPanel, build_label_set_panel, wire_label_set_panel
from app.ui.panels.labeling import LabelPanel, build_label_panel, wire_label_panel
from app.ui.panels.models import ModelPanel, build_model_panel, wire_model_panel
from app.ui.panels.own_model import OwnModelPanel, build_own_model_panel, wire_own_model_panel
from app.ui.panels.project import ProjectPanel, build_project_panel, wire_project_panel
from app.ui.panels.project_zip import ProjectZipPanel, build_project_zip_panel, wire_project_zip_panel
from app.ui.panels.review import ReviewPanel, build_review_panel, wire_review_panel
from app.ui.panels.upload import UploadPanel, build_upload_panel, wire_upload_panel
from app.ui.states import States, build_states
from app.ui.style import SIDE_TOGGLE
from app.ui.updates import poll_updates, uploads_box, user, view_updates
from app.ui.views import LabelView, message_view, status_html

TITLE = "Active-learning labeler"


@dataclass(frozen=True)
class Page:
    """Every component of the page: the shared states, the status line and the panels."""

    blocks: gr.Blocks
    states: States
    status: gr.HTML
    tabs: gr.Tabs
    project: ProjectPanel
    upload: UploadPanel
    own_model: OwnModelPanel
    models: ModelPanel
    label: LabelPanel
    review: ReviewPanel
    dashboard: DashboardPanel
    host_tools: gr.Column
    label_set: LabelSetPanel
    crowd: CrowdPanel | None = None
    project_zip: ProjectZipPanel | None = None

    def view_outputs(self) -> list[gr.components.Component]:
        """What a labeling view updates (see `app.ui.updates.view_updates`)."""
        return self.label.view_outputs(self.states.cursor)

    def opened_outputs(self) -> list[gr.components.Component]:
        """What opening a project updates (see `app.ui.updates.opened_updates`)."""
        s = self.states
        return [s.project, s.project_box, self.project.projects, self.upload.box, *self.view_outputs()]


def build_demo(
    projects_dir: str | Path,
    demo: bool = False,
    *,
    model_choices: dict[str, tuple[str | None, str]] | None = None,
    base_settings: ProjectSettings | None = None,
    allow_local_paths: bool = False,
    hosting: Hosting | None = None,
) -> gr.Blocks:
    """Build the labeling app over a projects folder (launch it with `app.ui.server.launch_kwargs`).

    Args:
        projects_dir: where projects live; one folder per project.
        demo: open the digits demo project when the page loads.
        model_choices: model type name -> (timm name or None for a typed name, weights source); the default
            offers the bundled EfficientNet-Lite0 and a few hub models.
        base_settings: settings the New project form does not set (epochs, seed, ...).
        allow_local_paths: the app serves only this computer, so folders may be given by path.
        hosting: how the server is shared (`app.ui.hosting`); the default is one projects folder.
    """
    h = Handlers(
        projects_dir,
        model_choices=model_choices,
        base_settings=base_settings,
        allow_local_paths=allow_local_paths,
        hosting=hosting,
    )
    page = build_page(h, demo)
    with page.blocks:
        wire_page(page, h)
    page.blocks.queue(default_concurrency_limit=2)
    return page.blocks


def build_page(h: Handlers, demo: bool) -> Page:
    """Lay out the page's components (nothing wired yet)."""
    projects = [] if h.sessions.private else h.list_projects()
    with gr.Blocks(title=TITLE, fill_width=True, delete_cache=(3600, 86400)) as blocks:
        states = build_states(demo, h.sessions.private)
        with gr.Row(equal_height=True):
            gr.HTML(
                f"<div><h1>{TITLE}</h1><p>Label only the images the model needs; it learns from every batch.</p>"
                f"{SIDE_TOGGLE}</div>",
                elem_id="al-header",
            )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=340, elem_id="al-side"):
                project = build_project_panel(h, projects, demo)
                crowd = build_crowd_panel(h) if h.hosting.crowd else None
                with gr.Column(visible=not h.hosting.crowd, elem_id="al-host-tools") as host_tools:
                    project_zip = build_project_zip_panel(h)
                    upload = build_upload_panel(h, open_=bool(projects) and not demo)
                    label_set = build_label_set_panel()
                    own_model = build_own_model_panel(h)
                    models = build_model_panel()
            with gr.Column(scale=3, min_width=560, elem_id="al-main"):
                status = gr.HTML(status_html(None), elem_id="al-status")
                with gr.Tabs() as tabs:
                    label = build_label_panel()
                    review = build_review_panel()
                    dashboard = build_dashboard_panel()
    return Page(
        blocks=blocks,
        states=states,
        status=status,
        tabs=tabs,
        project=project,
        upload=upload,
        own_model=own_model,
        models=models,
        label=label,
        review=review,
        dashboard=dashboard,
        host_tools=host_tools,
        label_set=label_set,
        crowd=crowd,
        project_zip=project_zip,
    )


def wire_page(page: Page, h: Handlers) -> None:
    """Attach every event of the page (inside the Blocks context): the page's own, then each panel's."""
    s, view, opened = page.states, page.view_outputs(), page.opened_outputs()

    crowd = [page.crowd.whoami, page.host_tools] if page.crowd is not None else []

    def init(
        client: str | None,
        name: str | None,
        workspace: str | None = None,
        request: gr.Request = None,  # type: ignore[assignment]
        profile: gr.OAuthProfile | None = None,
    ) -> tuple[Any, ...]:
        """Page load: the tab's id and project come from its sessionStorage (see `INIT_JS`), the visitor's
        token from local storage; what the server did not sign is replaced, and goes back to the browser, which
        keeps it for its reloads. On a shared project: who the visitor labels as, and the host's tools."""
        signed_in = (profile.username if profile is not None else None) or user(request)
        workspace, client = h.visitors.arrive(workspace, client, signed_in)
        names = h.list_projects(client)
        name = h.hosting.shared_project or name  # a shared project is the only one, open for everyone
        label_view: LabelView
        project: str | None = None
        if name and name in names:
            try:
                project, label_view = h.open_project(name, client)
            except gr.Error as exc:
                gr.Warning(str(exc.message))
                label_view = message_view(None, NO_PROJECT)
        else:
            label_view = message_view(None, NO_PROJECT)
        shown = h.sessions.name_of(project) if project else None
        dropdown = gr.update(choices=names, value=shown)
        box = uploads_box(h, project)
        view = view_updates(label_view, choices=True)
        extra = (whoami_text(h, client), gr.update(visible=h.visitors.is_host(client))) if crowd else ()
        return (workspace, client, client, project, shown or "", dropdown, box, *view, *extra)

    # gr.State never reaches the browser, so hidden textboxes carry the values sessionStorage keeps.
    page.blocks.load(
        init,
        [s.client_box, s.project_box, s.workspace],
        [s.workspace, s.client, s.client_box, *opened, *crowd],
        js=INIT_JS,
        api_name="init",
    )
    s.project_box.change(None, [s.project_box], None, js=REMEMBER_PROJECT_JS)
    s.client_box.change(None, [s.client_box], None, js=REMEMBER_CLIENT_JS)

    def poll(project, client, cursor, key) -> tuple[Any, ...]:
        return poll_updates(h.poll(project, client, cursor, key))

    s.timer.tick(
        poll,
        [s.project, s.client, s.cursor, s.job_key],
        [page.status, s.job_key, s.round, *view],
        api_name="poll",
        show_progress="hidden",
        concurrency_limit=None,
    )
    wire_project_panel(page.project, s, h, opened=opened, labels=page.label.labels)
    wire_own_model_panel(page.own_model, s, h, opened=opened)
    if page.project_zip is not None:
        wire_project_zip_panel(page.project_zip, s, h, opened=opened)
    wire_upload_panel(page.upload, s, h, view=view)
    wire_label_set_panel(page.label_set, s, h, view=view)
    wire_label_panel(page.label, s, h)
    wire_review_panel(page.review, s, h)
    wire_dashboard_panel(page.dashboard, s, h)
    wire_model_panel(page.models, s, h, predictions=page.label.predictions)
    if page.crowd is not None:
        wire_crowd_panel(page.crowd, s, h, host_tools=page.host_tools)
