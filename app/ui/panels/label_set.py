"""The Labels section of the left column: the open project's labels with their counts; add, rename, merge, and
delete a label no image was given. On a shared project only the host sees it (and the server checks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.ui.handlers import Handlers
from app.ui.label_actions import NO_PROJECT, LabelActions
from app.ui.states import States
from app.ui.updates import PRIVATE, QUIET, view_updates


@dataclass(frozen=True)
class LabelSetPanel:
    """The Labels accordion: a summary, the label to change, and one button per verb."""

    box: gr.Accordion
    summary: gr.Markdown
    label: gr.Dropdown
    new_name: gr.Textbox
    rename: gr.Button
    target: gr.Dropdown
    merge: gr.Button
    delete: gr.Button
    added: gr.Textbox
    add: gr.Button


def build_label_set_panel() -> LabelSetPanel:
    """Lay out the section (inside a column of the page); its choices fill in when it opens."""
    with gr.Accordion("Labels", open=False, elem_id="al-label-set") as box:
        summary = gr.Markdown(NO_PROJECT, elem_id="al-label-summary")
        label = gr.Dropdown([], label="Label to change", elem_id="al-label-pick")
        with gr.Row(elem_classes="al-label-row"):
            new_name = gr.Textbox(label="New name", max_lines=1, scale=3, elem_id="al-label-new-name")
            rename = gr.Button("Rename", size="sm", scale=1, min_width=90, elem_id="al-label-rename")
        with gr.Row(elem_classes="al-label-row"):
            target = gr.Dropdown([], label="Merge into", scale=3, elem_id="al-label-target")
            merge = gr.Button("Merge", size="sm", scale=1, min_width=90, elem_id="al-label-merge")
        delete = gr.Button("Delete this label (only if no image has it)", size="sm", elem_id="al-label-delete")
        with gr.Row(elem_classes="al-label-row"):
            added = gr.Textbox(label="Add a label", max_lines=1, scale=3, elem_id="al-label-added")
            add = gr.Button("Add", size="sm", scale=1, min_width=90, elem_id="al-label-add")
    return LabelSetPanel(box, summary, label, new_name, rename, target, merge, delete, added, add)


def wire_label_set_panel(
    panel: LabelSetPanel, states: States, h: Handlers, *, view: Sequence[gr.components.Component]
) -> None:
    """Attach the section's events (inside the Blocks context).

    Args:
        view: the labeling view's outputs (`Page.view_outputs`): the image on screen is drawn again with the new
            label choices after every change.
    """
    actions = LabelActions(h)

    def lists(project: str | None, picked: str | None = None) -> tuple[Any, ...]:
        session = h.sessions.maybe(project)
        names = [] if session is None else session.labels
        keep = picked if picked in names else None
        return (
            actions.summary(project),
            gr.update(choices=names, value=keep),
            gr.update(choices=[n for n in names if n != keep], value=None),
        )

    def changed(project, client, cursor, picked: str | None = None) -> tuple[Any, ...]:
        """After a change: the image on screen with the new label choices, the lists, the name boxes cleared."""
        label_view = actions.view(project, client, cursor)
        return (*view_updates(label_view, choices=True), *lists(project, picked), "", "")

    who = [states.project, states.client, states.cursor]
    after = [*view, panel.summary, panel.label, panel.target, panel.new_name, panel.added]

    def rename(project, client, cursor, old, new) -> tuple[Any, ...]:
        return changed(project, client, cursor, actions.rename(project, client, old, new))

    def merge(project, client, cursor, source, target) -> tuple[Any, ...]:
        actions.merge(project, client, source, target)
        return changed(project, client, cursor, target)

    def delete(project, client, cursor, name) -> tuple[Any, ...]:
        actions.delete(project, client, name)
        return changed(project, client, cursor)

    def add(project, client, cursor, name) -> tuple[Any, ...]:
        actions.add(project, client, name)
        return changed(project, client, cursor)

    panel.rename.click(rename, [*who, panel.label, panel.new_name], after, api_name="rename_label", **QUIET)
    panel.new_name.submit(rename, [*who, panel.label, panel.new_name], after, **QUIET, **PRIVATE)
    panel.merge.click(merge, [*who, panel.label, panel.target], after, api_name="merge_labels", **QUIET)
    panel.delete.click(delete, [*who, panel.label], after, api_name="delete_label", **QUIET)
    panel.add.click(add, [*who, panel.added], after, api_name="add_project_label", **QUIET)
    panel.added.submit(add, [*who, panel.added], after, **QUIET, **PRIVATE)

    lists_out = [panel.summary, panel.label, panel.target]
    panel.box.expand(lambda project: lists(project), [states.project], lists_out, **QUIET, **PRIVATE)
    states.project.change(lambda project: lists(project), [states.project], lists_out, **QUIET, **PRIVATE)
    panel.label.input(
        lambda project, picked: lists(project, picked), [states.project, panel.label], lists_out, **QUIET, **PRIVATE
    )
