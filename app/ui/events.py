"""Wiring: which component event calls which handler, and how handler results become component updates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from app.engine.model_report import failure_markdown
from app.ui import dashboard
from app.ui.downloads import hand_out
from app.ui.handlers import CUSTOM, Handlers, PollResult
from app.ui.hotkeys import INIT_JS, REMEMBER_PROJECT_JS
from app.ui.imagebox import answer_html, image_html, upcoming_html
from app.ui.uploads import collect_sources, report_markdown
from app.ui.views import LabelView, label_choices, message_view

if TYPE_CHECKING:
    from app.ui.layout import Page

FAST = {"show_progress": "hidden", "concurrency_id": "labeling", "concurrency_limit": 4, "trigger_mode": "once"}
PRIVATE = {"api_visibility": "private"}
QUIET = {"show_progress": "hidden"}  # errors come as a toast; no spinner or error badge over the outputs


def _skips(n: int) -> tuple[Any, ...]:
    """`n` "leave unchanged" updates, each its own object (Gradio consumes update dicts as it applies them)."""
    return tuple(gr.skip() for _ in range(n))


def _user(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def view_updates(view: LabelView | None, *, choices: bool = False) -> tuple[Any, ...]:
    """Updates for (image, caption, labels, predictions, progress, cursor, prefetch); skipped when `view` is None.

    Plain values only (no `gr.update` with properties, which makes Gradio rebuild the component's config on every
    answer), so a labeling answer stays cheap.
    """
    if view is None:
        return _skips(7)
    labels = gr.update(value=view.selected, choices=label_choices(view.labels)) if choices else view.selected
    return (
        image_html(view),
        view.caption,
        labels,
        view.predictions,
        view.progress,
        view.cursor,
        upcoming_html(view.upcoming),
    )


def poll_updates(result: PollResult) -> tuple[Any, ...]:
    """Updates for (status, job key, round, *view outputs)."""
    head = (result.status, result.key, gr.skip() if result.round is None else result.round)
    if result.view is not None:
        return head + view_updates(result.view)
    if result.refresh:
        return head + _skips(3) + (result.predictions, result.progress, gr.skip(), upcoming_html(result.upcoming))
    return head + _skips(7)


def _uploads_box(h: Handlers, project: str | None) -> Any:
    """Open the Add images section when the project has no images yet."""
    session = h.maybe_session(project)
    return gr.skip() if session is None or session.count_images() else gr.update(open=True)


def dashboard_updates(h: Handlers, project: str | None) -> tuple[Any, ...]:
    d = dashboard.build(h.maybe_session(project))
    return d.summary, d.curve, d.counts, d.confusion, d.history


def wire(p: Page) -> None:
    """Attach every event of the page (called inside the Blocks context)."""
    h = p.handlers
    view_out = [p.image, p.caption, p.labels, p.predictions, p.progress, p.cursor, p.prefetch]
    dash_out = [p.dash_summary, p.curve, p.counts, p.confusion, p.history]
    open_out = [p.project, p.project_box, p.projects, p.uploads_box, *view_out]

    # ---------------------------------------------------------------- page load and project
    def init(client: str | None, project: str | None) -> tuple[Any, ...]:
        """Page load: the tab's client id and project come from its sessionStorage (see `INIT_JS`)."""
        client = h.new_client(client)
        names = h.list_projects()
        view: LabelView
        if project and project in names:
            try:
                _, view = h.open_project(project, client)
            except gr.Error as exc:
                gr.Warning(str(exc.message))
                project, view = None, message_view(None, "Open a project or start a new one (left column).")
        else:
            project, view = None, message_view(None, "Open a project or start a new one (left column).")
        dropdown = gr.update(choices=names, value=project)
        box = _uploads_box(h, project)
        return (client, project, project or "", dropdown, box, *view_updates(view, choices=True))

    # gr.State never reaches the browser, so hidden textboxes carry the values sessionStorage keeps.
    p.demo.load(init, [p.client_box, p.project_box], [p.client, *open_out], js=INIT_JS, api_name="init")
    p.project_box.change(None, [p.project_box], None, js=REMEMBER_PROJECT_JS)
    p.project_box.change(
        lambda project: dashboard_updates(h, project), [p.project], dash_out, show_progress="hidden", **PRIVATE
    )
    p.project_box.change(
        lambda project: gr.update(choices=h.checkpoint_choices(project), value=None), [p.project], [p.ckpts], **PRIVATE
    )

    def opened(project: str, view: LabelView) -> tuple[Any, ...]:
        dropdown = gr.update(choices=h.list_projects(), value=project)
        return (project, project, dropdown, _uploads_box(h, project), *view_updates(view, choices=True))

    def open_project(name: str | None, client: str | None) -> tuple[Any, ...]:
        return opened(*h.open_project(name, h.new_client(client)))

    p.open.click(open_project, [p.projects, p.client], open_out, api_name="open_project", **QUIET)
    p.refresh_projects.click(lambda: gr.update(choices=h.list_projects()), None, [p.projects], api_visibility="private")

    def start(name, model, arch, labels, strategy, batch, val, mode, size) -> tuple[Any, ...]:
        settings = h.form_settings(model, arch, strategy, batch, val, mode, size)
        return opened(*h.start_project(name, labels, settings))

    form = [p.name, p.model, p.custom_arch, p.labels_text, p.strategy, p.batch_size, p.val_split, p.mode, p.image_size]
    p.start.click(start, form, open_out, api_name="start_project", **QUIET)
    p.model.change(lambda m: gr.update(visible=m == CUSTOM), [p.model], [p.custom_arch], api_visibility="private")

    def add_label(project: str | None, name: str, labels_text: str, new_label: str) -> tuple[Any, ...]:
        text, labels = h.add_labels(project, name, labels_text, new_label)
        radio = gr.skip() if labels is None else gr.update(choices=label_choices(labels))
        return text, radio, ""

    label_io = ([p.project, p.name, p.labels_text, p.new_label], [p.labels_text, p.labels, p.new_label])
    p.add_label.click(add_label, *label_io, api_name="add_label", **QUIET)
    p.new_label.submit(add_label, *label_io, **QUIET, **PRIVATE)

    own_model = [p.pm_arch, p.pm_classes, p.pm_labels, p.pm_file, p.pm_path, p.pm_torchscript, p.pm_image]

    def import_model(name, arch, classes, labels, file, path, mode, torchscript, image) -> tuple[Any, ...]:
        """A refused model keeps the page as it is; the report and a warning say why."""
        try:
            project, view, report = h.import_model(name, arch, classes, labels, file, path, mode, torchscript, image)
        except gr.Error as exc:
            gr.Warning(str(exc.message))
            return (*_skips(len(open_out)), failure_markdown(str(exc.message)))
        return (*opened(project, view), report)

    p.pm_import.click(
        import_model,
        [p.pm_name, *own_model[:5], p.pm_mode, *own_model[5:]],
        [*open_out, p.pm_report],
        api_name="import_model",
        show_progress_on=[p.pm_report],
    )
    p.pm_verify.click(
        h.verify_model, [p.project, *own_model], [p.pm_report], api_name="verify_model", show_progress_on=[p.pm_report]
    )

    # ---------------------------------------------------------------- uploads
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
        report, view = h.import_images(
            project,
            h.new_client(client),
            sources.paths,
            sources.allowed_roots,
            bool(from_folders),
            progress=lambda f, m: progress(f, desc=m),
        )
        cleared = tuple(gr.update(value=None) for _ in range(2))  # one dict each: Gradio consumes them
        return (report_markdown(report, sources.notes), *cleared, *view_updates(view, choices=True))

    uploads = [p.up_folder, p.up_files]
    p.import_btn.click(
        import_images,
        [p.project, p.client, *uploads, p.local_folder, p.from_folders],
        [p.report, *uploads, *view_out],
        api_name="import_images",
        show_progress_on=[p.report],
    )

    # ---------------------------------------------------------------- labeling
    # Every answer also carries a fresh answer mark: the page holds further keys until it arrives (`app.ui.hotkeys`).
    def answered(client: str | None, view: LabelView | None) -> tuple[Any, ...]:
        h.note_answer(client)
        return (*view_updates(view), answer_html())

    def submit(project, client, cursor, label, request: gr.Request) -> tuple[Any, ...]:
        return answered(client, h.submit(project, client, cursor, label, _user(request)))

    def pick(project, client, cursor, label, auto, request: gr.Request) -> tuple[Any, ...]:
        return answered(client, h.pick(project, client, cursor, label, bool(auto), _user(request)))

    def skip(project, client, cursor) -> tuple[Any, ...]:
        return answered(client, h.skip(project, client, cursor))

    def undo(project, client, cursor, request: gr.Request) -> tuple[Any, ...]:
        return answered(client, h.undo(project, client, cursor, _user(request)))

    def previous(project, client, cursor) -> tuple[Any, ...]:
        return answered(client, h.move(project, client, cursor, -1))

    def following(project, client, cursor) -> tuple[Any, ...]:
        return answered(client, h.move(project, client, cursor, +1))

    who, label_out = [p.project, p.client, p.cursor], [*view_out, p.answer]
    p.submit.click(submit, [*who, p.labels], label_out, api_name="submit_label", **FAST)
    p.labels.input(pick, [*who, p.labels, p.auto], label_out, api_name="pick_label", **FAST)
    p.skip.click(skip, who, label_out, api_name="skip", **FAST)
    p.undo.click(undo, who, label_out, api_name="undo", **FAST)
    p.prev.click(previous, who, label_out, api_name="previous", **FAST)
    p.next.click(following, who, label_out, api_name="next", **FAST)

    def poll(project, client, cursor, key) -> tuple[Any, ...]:
        return poll_updates(h.poll(project, client, cursor, key))

    p.timer.tick(
        poll,
        [*who, p.job_key],
        [p.status, p.job_key, p.round, *view_out],
        api_name="poll",
        show_progress="hidden",
        concurrency_limit=None,
    )

    # ---------------------------------------------------------------- dashboard, checkpoints, export
    refresh = {"fn": lambda project: dashboard_updates(h, project), "inputs": [p.project], "outputs": dash_out}
    p.round.change(**refresh, show_progress="hidden", **PRIVATE)
    p.dash_refresh.click(**refresh, api_name="dashboard")
    p.dash_tab.select(**refresh, show_progress="hidden", **PRIVATE)

    def save(project: str | None, name: str | None) -> tuple[Any, ...]:
        choices, saved = h.save_checkpoint(project, name)
        return gr.update(choices=choices, value=saved), ""

    p.save_ckpt.click(save, [p.project, p.ckpt_name], [p.ckpts, p.ckpt_name], api_name="save_checkpoint", **QUIET)
    p.load_ckpt.click(
        h.load_checkpoint,
        [p.project, p.ckpts, p.cursor],
        [p.predictions],
        api_name="load_checkpoint",
        **QUIET,
    )
    p.export.click(
        lambda project, kind: gr.update(value=str(hand_out(h.export(project, kind))), visible=True),
        [p.project, p.export_kind],
        [p.export_file],
        api_name="export",
    )
