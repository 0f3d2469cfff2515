"""How handler results become component updates, for the panels' event wiring (`app.ui.panels`).

The tuples here follow output lists the page defines once: `Page.view_outputs` and `Page.opened_outputs` in
`app.ui.layout`.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.core import tokens
from app.ui.handlers import Handlers, PollResult
from app.ui.imagebox import image_html, upcoming_html
from app.ui.views import LabelView, label_choices

FAST = {"show_progress": "hidden", "concurrency_id": "labeling", "concurrency_limit": 4, "trigger_mode": "once"}
PRIVATE = {"api_visibility": "private"}
QUIET = {"show_progress": "hidden"}  # errors come as a toast; no spinner or error badge over the outputs


def skips(n: int) -> tuple[Any, ...]:
    """`n` "leave unchanged" updates, each its own object (Gradio consumes update dicts as it applies them)."""
    return tuple(gr.skip() for _ in range(n))


def signed(client: str | None) -> str:
    """The tab's id when the server handed it out; otherwise the action is refused (labels need a known tab)."""
    if not tokens.verify_client(client):
        raise gr.Error("This tab has no valid id: reload the page, then label again.")
    return str(client)


def user(request: gr.Request | None) -> str | None:
    """The signed-in name of the request, if any."""
    return getattr(request, "username", None) if request is not None else None


def view_updates(view: LabelView | None, *, choices: bool = False) -> tuple[Any, ...]:
    """Updates for (image, caption, labels, predictions, progress, cursor, prefetch); skipped when `view` is None.

    Plain values only (no `gr.update` with properties, which makes Gradio rebuild the component's config on every
    answer), so a labeling answer stays cheap.
    """
    if view is None:
        return skips(7)
    labels = gr.update(value=view.selected, choices=label_choices(view.labels)) if choices else view.selected
    return (
        image_html(view),
        view.caption,
        labels,
        view.guess,
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
        refreshed = (result.caption, gr.skip(), result.predictions, result.progress, gr.skip())
        return head + (gr.skip(),) + refreshed + (upcoming_html(result.upcoming),)
    return head + skips(7)


def uploads_box(h: Handlers, project: str | None) -> Any:
    """Open the Add images section when the project has no images yet."""
    session = h.sessions.maybe(project)
    return gr.skip() if session is None or session.count_images() else gr.update(open=True)


def opened_updates(h: Handlers, project: str, view: LabelView, client: str | None = None) -> tuple[Any, ...]:
    """Updates for (project, project box, projects list, uploads box, *view outputs) once `project` is open.

    `project` is the reference the page keeps (`app.ui.sessions`); the browser is given only the project's name.
    """
    name = h.sessions.name_of(project)
    dropdown = gr.update(choices=h.list_projects(client), value=name)
    return (project, name, dropdown, uploads_box(h, project), *view_updates(view, choices=True))
