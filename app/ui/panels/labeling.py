"""The Label tab: the image, its label choices and actions, the model's guess, the progress line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.ui.handlers import Handlers
from app.ui.hotkeys import KEYS_HELP
from app.ui.imagebox import answer_html, image_html
from app.ui.label_actions import LabelActions
from app.ui.states import States
from app.ui.updates import FAST, signed, user, view_updates
from app.ui.views import LabelView

PREDICTIONS = "Model's guess"
ACCEPT = "Accept the guess (A)"


@dataclass(frozen=True)
class LabelPanel:
    """The labeling panel; the page's hotkeys find its parts by their elem_id (`app.ui.hotkeys`)."""

    image: gr.HTML
    caption: gr.Markdown
    labels: gr.Radio
    auto: gr.Checkbox
    submit: gr.Button
    skip: gr.Button
    undo: gr.Button
    prev: gr.Button
    next: gr.Button
    predictions: gr.Label
    accept: gr.Button
    progress: gr.Markdown
    prefetch: gr.HTML
    answer: gr.HTML

    def view_outputs(self, cursor: gr.State) -> list[gr.components.Component]:
        """What a labeling view updates, in the order of `app.ui.updates.view_updates`."""
        return [self.image, self.caption, self.labels, self.predictions, self.progress, cursor, self.prefetch]


def build_label_panel() -> LabelPanel:
    """Lay out the Label tab (inside the page's tabs)."""
    with gr.Tab("Label", id="label"):
        with gr.Row(equal_height=False, elem_id="al-panel"):
            with gr.Column(scale=3, min_width=360):
                image = gr.HTML(image_html(LabelView()), elem_id="al-image", padding=False)
                caption = gr.Markdown(elem_id="al-caption")
            with gr.Column(scale=2, min_width=300, elem_id="al-side-panel"):
                labels = gr.Radio([], label="Label", elem_id="al-labels")
                predictions = gr.Label(label=PREDICTIONS, num_top_classes=10, elem_id="al-predictions")
                accept = gr.Button(ACCEPT, size="sm", elem_id="al-accept")
                auto = gr.Checkbox(value=True, label="Auto-submit when a label is picked", elem_id="al-auto")
                submit = gr.Button("Submit Label", variant="primary", elem_id="al-submit")
                with gr.Row(elem_id="al-actions"):
                    skip = gr.Button("Skip", size="sm", elem_id="al-skip")
                    undo = gr.Button("Undo", size="sm", elem_id="al-undo")
                    prev = gr.Button("← Previous", size="sm", elem_id="al-prev")
                    following = gr.Button("Next →", size="sm", elem_id="al-next")
                progress = gr.Markdown(elem_id="al-progress")
                gr.HTML(f"<div>{KEYS_HELP}</div>", elem_id="al-keys")
                prefetch = gr.HTML("", elem_id="al-prefetch", padding=False)
                answer = gr.HTML("", elem_id="al-answer", padding=False)
    return LabelPanel(
        image=image,
        caption=caption,
        labels=labels,
        auto=auto,
        submit=submit,
        skip=skip,
        undo=undo,
        prev=prev,
        next=following,
        predictions=predictions,
        accept=accept,
        progress=progress,
        prefetch=prefetch,
        answer=answer,
    )


def wire_label_panel(panel: LabelPanel, states: States, h: Handlers) -> None:
    """Attach the labeling actions (inside the Blocks context).

    Every answer also carries a fresh answer mark: the page holds further keys until it arrives (`app.ui.hotkeys`).
    """
    actions = LabelActions(h)

    def answered(client: str | None, view: LabelView | None) -> tuple[Any, ...]:
        h.note_answer(client)
        return (*view_updates(view), answer_html())

    def submit(project, client, cursor, label, request: gr.Request) -> tuple[Any, ...]:
        return answered(client, h.submit(project, signed(client), cursor, label, user(request)))

    def pick(project, client, cursor, label, auto, request: gr.Request) -> tuple[Any, ...]:
        return answered(client, h.pick(project, signed(client), cursor, label, bool(auto), user(request)))

    def accept(project, client, cursor, guess, request: gr.Request) -> tuple[Any, ...]:
        return answered(client, actions.accept(project, signed(client), cursor, guess, user(request)))

    def skip(project, client, cursor) -> tuple[Any, ...]:
        return answered(client, h.skip(project, signed(client), cursor))

    def undo(project, client, cursor, request: gr.Request) -> tuple[Any, ...]:
        return answered(client, h.undo(project, signed(client), cursor, user(request)))

    def previous(project, client, cursor) -> tuple[Any, ...]:
        return answered(client, h.move(project, signed(client), cursor, -1))

    def following(project, client, cursor) -> tuple[Any, ...]:
        return answered(client, h.move(project, signed(client), cursor, +1))

    who, label_out = [states.project, states.client, states.cursor], [*panel.view_outputs(states.cursor), panel.answer]
    panel.submit.click(submit, [*who, panel.labels], label_out, api_name="submit_label", **FAST)
    panel.labels.input(pick, [*who, panel.labels, panel.auto], label_out, api_name="pick_label", **FAST)
    panel.accept.click(accept, [*who, panel.predictions], label_out, api_name="accept_guess", **FAST)
    panel.skip.click(skip, who, label_out, api_name="skip", **FAST)
    panel.undo.click(undo, who, label_out, api_name="undo", **FAST)
    panel.prev.click(previous, who, label_out, api_name="previous", **FAST)
    panel.next.click(following, who, label_out, api_name="next", **FAST)
