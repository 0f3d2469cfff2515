"""The Review tab: a grid of thumbnails to label many images at once (the model's confident guesses for a label,
the images most like the one in the Label tab or a tile, labeled images to fix, the labels that look wrong), with
keys shown on the page.

The grid's keys and mouse are `app.ui.grid_keys`; its handlers `app.ui.review_handlers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.ui.grid_keys import KEYS_HELP
from app.ui.handlers import Handlers
from app.ui.review_handlers import CONFIDENT, SIMILAR, SOURCES, ReviewHandlers
from app.ui.states import States
from app.ui.updates import QUIET, signed, user

READ_GRID_JS = "(...values) => { values[0] = window.alGridAction ? window.alGridAction() : '{}'; return values; }"
READ_FOCUS_JS = "(...values) => { values[0] = window.alGridFocused ? window.alGridFocused() : ''; return values; }"


@dataclass(frozen=True)
class ReviewPanel:
    """The Review tab's components; `state` keeps the page shown (see `app.ui.review_handlers`)."""

    tab: gr.Tab
    source: gr.Radio
    labels: gr.Radio
    grid: gr.HTML
    accept: gr.Button
    more: gr.Button
    undo: gr.Button
    refresh: gr.Button
    action: gr.Textbox
    state: gr.State


def build_review_panel() -> ReviewPanel:
    """Lay out the Review tab (inside the page's tabs)."""
    with gr.Tab("Review", id="review") as tab:
        with gr.Row(equal_height=True):
            source = gr.Radio(SOURCES, value=CONFIDENT, label="Show", scale=2, elem_id="al-review-source")
            labels = gr.Radio([], label="Label of this page", elem_id="al-review-labels", scale=3)
        grid = gr.HTML(elem_id="al-review-grid", padding=False)
        with gr.Row():
            accept = gr.Button("Accept page (Enter)", variant="primary", elem_id="al-review-accept")
            more = gr.Button("More like this (M)", elem_id="al-review-more")
            undo = gr.Button("Undo page", elem_id="al-review-undo")
            refresh = gr.Button("Refresh", elem_id="al-review-refresh")
        gr.HTML(f'<div class="al-keys">{KEYS_HELP}</div>')
        action = gr.Textbox(visible=False)
        state = gr.State({})
    return ReviewPanel(tab, source, labels, grid, accept, more, undo, refresh, action, state)


def wire_review_panel(panel: ReviewPanel, states: States, h: Handlers) -> None:
    """Attach the grid's events (inside the Blocks context)."""
    review = ReviewHandlers(h.sessions, h.who)

    def show(
        project: str | None, source: str, label: str | None, cursor: dict | None, state: dict | None
    ) -> tuple[Any, ...]:
        session = h.sessions.maybe(project)
        if session is None:
            return '<p data-page="none">Open a project first.</p>', {}, gr.update(choices=[])
        names = session.labels
        label = label if label in names else (names[0] if names else None)
        state = state or {}
        # more like a tile stays more like that tile; chosen from the list, more like the Label tab's image
        tile = state.get("anchor") if state.get("source") == SIMILAR == source else None
        page = review.page(project, source, label, tile if tile is not None else (cursor or {}).get("image_id"))
        return page.html, page.state, gr.update(choices=names, value=label)

    inputs = [states.project, panel.source, panel.labels, states.cursor, panel.state]
    outputs = [panel.grid, panel.state, panel.labels]
    for event in (panel.tab.select, panel.refresh.click):
        event(show, inputs, outputs, **QUIET)
    panel.source.input(show, inputs, outputs, **QUIET)
    panel.labels.input(show, inputs, outputs, **QUIET)

    def accept(action: str, project: str | None, client: str | None, state: dict, request: gr.Request) -> Any:
        page = review.commit(project, signed(client), state, action, user(request))
        return page.html, page.state

    panel.accept.click(
        accept,
        [panel.action, states.project, states.client, panel.state],
        [panel.grid, panel.state],
        js=READ_GRID_JS,
        api_name="accept_page",
        **QUIET,
    )

    def undo(project: str | None, client: str | None, state: dict, request: gr.Request) -> Any:
        h.undo(project, signed(client), None, user(request))
        page = review.page(project, state.get("source") or CONFIDENT, state.get("label"), state.get("anchor"))
        return page.html, page.state

    def more(image_id: str, project: str | None, state: dict) -> Any:
        page = review.more_like(project, state, image_id)
        return page.html, page.state, gr.update(value=SIMILAR)

    panel.more.click(
        more,
        [panel.action, states.project, panel.state],
        [panel.grid, panel.state, panel.source],
        js=READ_FOCUS_JS,
        **QUIET,
    )

    panel.undo.click(undo, [states.project, states.client, panel.state], [panel.grid, panel.state], **QUIET)
