"""The review grid's handlers: a page of images from a source, and a page committed in one step.

A page is described by a small dict the page keeps in `gr.State` (source, label, anchor image, offset, page id,
when it was shown); every label a commit makes is a human label (recorded with how it was made and its page), so
it trains the next round; Undo in the labeling panel or here takes the whole page back.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import gradio as gr

from app.engine import queues, suspect_cache
from app.engine.queues import Tile
from app.engine.session import ActiveLearningSession
from app.ui.errors import friendly, plain
from app.ui.gridbox import grid_html
from app.ui.sessions import Sessions
from app.ui.views import display_path, latest_metrics

PAGE_SIZE = 24
CONFIDENT, SIMILAR, LABELED = "Confident guesses for a label", "More like this image", "Labeled as ..."
CHECK = "Likely wrong labels"
SOURCES = [CONFIDENT, SIMILAR, LABELED, CHECK]
METHOD = {CONFIDENT: "grid_page", SIMILAR: "more_like_this", LABELED: "grid_page", CHECK: "grid_page"}
SELECTED = {CONFIDENT: True, SIMILAR: True, LABELED: False, CHECK: False}  # tiles selected when a page shows


@dataclass
class ReviewPage:
    """What the grid shows now, and what the page keeps to commit it."""

    html: str
    state: dict[str, Any] = field(default_factory=dict)


def _tiles(
    session: ActiveLearningSession, source: str, label: str | None, anchor: int | None, skip: int, extra: int = 0
) -> list[Tile]:
    """Two pages of `source` (and `extra` more, to make up for the images left out)."""
    if source == CONFIDENT:
        return queues.confident(session, label or "", PAGE_SIZE * 2 + extra, skip)
    if source == SIMILAR:
        return queues.similar(session, anchor, PAGE_SIZE * 2 + extra) if anchor is not None else []
    if source == CHECK:
        return queues.likely_wrong(session, PAGE_SIZE * 2 + extra, skip)
    return queues.labeled_as(session, label or None, None, PAGE_SIZE * 2, skip)


def _check_note(session: ActiveLearningSession, count: int, passed: int) -> str:
    kept = suspect_cache.kept(session)
    if kept is None:
        return "Checking the labels in the background (seconds to a minute): press Refresh in a moment."
    if not count and passed:
        return "Every likely-wrong label has been on a page. Refresh shows again the ones left unchecked."
    if not count:
        return f"No label looks wrong (checked after round {kept.round})."
    return (
        "Labels that look wrong, most suspicious first, with the label the model suggests: K keeps a label, "
        "A takes the suggestion (selected tiles take theirs), a number gives another; then Enter."
    )


def _note(source: str, label: str | None, count: int, anchor: int | None) -> str:
    if source == CONFIDENT:
        if not label:
            return "Choose the label whose confident guesses you want to review."
        if not count:
            return f"No unlabeled image the model thinks is '{label}' yet (it needs a trained model)."
        return f"The model thinks these are '{label}', most confident first. Deselect the wrong ones, then Enter."
    if source == SIMILAR:
        if anchor is None:
            return "Open an image in the Label tab first: this shows the unlabeled images most like it."
        return "Unlabeled images most like the chosen one. Pick their label, deselect the rest, then Enter."
    return "Labeled images, newest first. Type a number on a wrong one to fix it, then Enter."


class ReviewHandlers:
    """Grid pages over the page's projects.

    Args:
        sessions: the projects this page may reach.
        who: the annotator name of a tab (see `Handlers.who`).
    """

    def __init__(self, sessions: Sessions, who: Any) -> None:
        self.sessions = sessions
        self.who = who

    @friendly
    def page(
        self,
        project: str | None,
        source: str,
        label: str | None,
        anchor: int | None,
        skip: int = 0,
        passed: list[int] | None = None,
    ) -> ReviewPage:
        """The page of `source` (with `label`, or near `anchor`), from offset `skip`, leaving out the images
        `passed` over (deselected on an earlier page of this label: they do not come back at the top)."""
        session = self.sessions.get(project)
        left_out = set(passed or [])
        tiles = _tiles(session, source, label, anchor, skip, len(left_out))
        found = [t for t in tiles if t.image_id not in left_out]
        if latest_metrics(session).get("ece") is None:  # no percentages before random checks calibrate them
            found = [replace(t, confidence=None) for t in found]
        shown, ahead = found[:PAGE_SIZE], found[PAGE_SIZE:]
        page_id = (suspect_cache.CHECK_PAGE if source == CHECK else "") + uuid.uuid4().hex[:12]
        if source == CHECK:
            note = _check_note(session, len(shown), len(left_out))
        else:
            note = _note(source, label, len(shown), anchor)
        html = grid_html(
            [(t, display_path(session, t.image_id)) for t in shown],
            selected=SELECTED.get(source, True),
            note=note,
            ahead=[(t, display_path(session, t.image_id)) for t in ahead],
            page=page_id,
        )
        state = {"source": source, "label": label, "anchor": anchor, "skip": skip, "page": page_id}
        state["suggested"] = {t.image_id: t.suggested for t in shown if t.suggested is not None}
        state["passed"] = sorted(left_out)
        return ReviewPage(html, {**state, "shown_at": time.time(), "ids": [t.image_id for t in shown]})

    @friendly
    def more_like(self, project: str | None, state: dict | None, image_id: str | None) -> ReviewPage:
        """The unlabeled images most like `image_id`, a tile of the page shown (any other id is refused)."""
        state = state or {}
        try:
            anchor = int(str(image_id or "").strip())
        except ValueError:
            anchor = None
        if anchor is None or anchor not in {int(i) for i in state.get("ids") or []}:
            raise gr.Error("Pick an image of this page first (arrow keys or a click), then More like this.")
        return self.page(project, SIMILAR, state.get("label"), anchor)

    @friendly
    def commit(
        self, project: str | None, client: str, state: dict | None, action: str | None, user: str | None = None
    ) -> ReviewPage:
        """Accept the page: selected tiles get the page's label, tiles with a typed label get theirs; the next page.

        Args:
            action: what the page's script read from the grid: {"accept": [ids], "relabel": {id: label}}.
        """
        state = state or {}
        session = self.sessions.get(project)
        labels = _page_labels(state, action, session.labels)
        seconds = max(0.0, min(time.time() - float(state.get("shown_at") or time.time()), 3600.0))
        if labels:
            session.labeling.label_page(
                labels,
                annotator=self.who(client, user),
                method=METHOD.get(state.get("source"), "grid_page"),
                page=str(state.get("page") or uuid.uuid4().hex[:12]),
                seconds=round(seconds, 2),
            )
            count = f"{len(labels)} image" + ("" if len(labels) == 1 else "s")
            gr.Info(plain(f"Labeled {count}. Undo page takes the whole page back."))
        skip = int(state.get("skip") or 0) + (PAGE_SIZE if state.get("source") == LABELED else 0)
        source = state.get("source") or CONFIDENT
        passed = [*(state.get("passed") or []), *(i for i in state.get("ids") or [] if i not in labels)]
        passed = [] if source == LABELED else passed  # that source pages by offset
        return self.page(project, source, state.get("label"), state.get("anchor"), skip, passed)


def _page_labels(state: dict, action: str | None, project_labels: list[str]) -> dict[int, str]:
    """image id -> label from the grid's action, for images of this page only, with labels of this project."""
    try:
        data = json.loads(action or "{}")
        accept = [int(i) for i in data.get("accept") or []]
        relabel = {int(k): str(v) for k, v in (data.get("relabel") or {}).items()}
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
        raise gr.Error("The page sent something unreadable: reload it.") from None
    shown = {int(i) for i in state.get("ids") or []}
    page_label = state.get("label")
    out: dict[int, str] = {}
    if state.get("source") == CHECK:  # each selected tile takes its own suggestion
        suggested = {int(i): v for i, v in (state.get("suggested") or {}).items() if v in project_labels}
        out.update({i: suggested[i] for i in accept if i in suggested and i in shown})
    elif state.get("source") != LABELED and page_label in project_labels:
        out.update({i: page_label for i in accept if i in shown})
    for key, value in relabel.items():
        if key in shown and value in project_labels:
            out[key] = value
    return out
