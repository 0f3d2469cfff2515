"""Thin handlers for the label keys and the label set: accept the model's guess with one key; add, rename, merge
and delete the open project's labels.

They reach projects through the page's `Handlers` (its sessions and visitors), so tests call them directly.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.core.markup import escape_inline
from app.engine.session import ActiveLearningSession
from app.ui.errors import friendly, plain
from app.ui.handlers import Handlers
from app.ui.views import LabelView, image_view

ACCEPTED = "accepted_guess"  # the annotation's method (`app.core.annotation_rows.METHODS`)
NO_GUESS = "The model has no guess for this image yet: pick a label (its number key) instead."
NO_PROJECT = "Open a project first: its labels are edited here."


def top_guess(guess: Any) -> str | None:
    """The label the model's guess puts first, from the guess component's value (label -> probability)."""
    if isinstance(guess, dict) and guess:
        return str(max(guess.items(), key=lambda item: float(item[1]))[0])
    if isinstance(guess, str) and guess:
        return guess
    return None


class LabelActions:
    """The Accept key and the Labels section's verbs, over the page's handlers.

    Args:
        h: the page's handlers (projects, who labels, the host of a shared project).
    """

    def __init__(self, h: Handlers) -> None:
        self.h = h

    # --------------------------------------------------------------------------------------------- accept
    def accept(
        self, project: str | None, client: str, cursor: dict | None, guess: Any, user: str | None = None
    ) -> LabelView | None:
        """Accept the guess: label the image on screen with the model's first guess, as shown on the page, through
        Submit's path (recorded, and undone by Undo, like any label). None (nothing changes) without a guess."""
        label = top_guess(guess)
        if label is None:
            gr.Warning(NO_GUESS)
            return None
        return self.h.submit(project, client, cursor, label, user, method=ACCEPTED)

    # ------------------------------------------------------------------------------------------ label set
    @friendly
    def add(self, project: str | None, client: str | None, name: str | None) -> list[str]:
        """Add Label (one name, or several separated by commas); returns the labels."""
        session = self._session(project, client)
        names = [n.strip() for n in (name or "").split(",") if n.strip()]
        if not names:
            raise gr.Error("Type the name of the new label first.")
        for label in names:
            session.label_set.add(label)
        gr.Info(plain(f"Added {', '.join(names)}."))
        return session.labels

    @friendly
    def rename(self, project: str | None, client: str | None, old: str | None, new: str | None) -> str:
        """Rename: the images labeled `old` keep their label under the new name; returns the new name."""
        session = self._session(project, client)
        if not old:
            raise gr.Error("Choose the label to rename first.")
        if not (new or "").strip():
            raise gr.Error(plain(f"Type the new name for '{old}' first."))
        if new.strip() == old:
            raise gr.Error(plain(f"The label is called '{old}' already: type a different name."))
        cleaned = session.label_set.rename(old, new)
        gr.Info(plain(f"Renamed '{old}' to '{cleaned}'."))
        return cleaned

    @friendly
    def merge(self, project: str | None, client: str | None, source: str | None, target: str | None) -> list[str]:
        """Merge `source` into `target`: its images get the label `target`, and `source` is removed."""
        session = self._session(project, client)
        if not source:
            raise gr.Error("Choose the label to merge first.")
        if not target:
            raise gr.Error(plain(f"Choose the label to merge '{source}' into."))
        moved = session.label_counts().get(source, 0)
        session.label_set.merge(source, target)
        gr.Info(plain(f"Merged '{source}' into '{target}': its {moved} image(s) are labeled '{target}' now."))
        return session.labels

    @friendly
    def delete(self, project: str | None, client: str | None, name: str | None) -> list[str]:
        """Delete a label no image was ever given; returns the labels."""
        session = self._session(project, client)
        if not name:
            raise gr.Error("Choose the label to delete first.")
        session.label_set.delete(name)
        gr.Info(plain(f"Deleted the label '{name}'."))
        return session.labels

    def summary(self, project: str | None) -> str:
        """The labels of the open project with their image counts, as Markdown."""
        session = self.h.sessions.maybe(project)
        if session is None:
            return NO_PROJECT
        counts = session.label_counts()
        unused = [name for name, n in counts.items() if not n]
        parts = [f"{escape_inline(name)}: **{n}**" for name, n in counts.items()]
        note = f"  \nNever used (can be deleted): {', '.join(escape_inline(u) for u in unused)}." if unused else ""
        return f"Images per label: {' · '.join(parts)}{note}"

    def view(self, project: str | None, client: str, cursor: dict | None) -> LabelView:
        """The image on screen drawn again after a label change (its label choices, caption and guess)."""
        session = self.h.sessions.maybe(project)
        image_id = (cursor or {}).get("image_id")
        if session is None or image_id is None:
            return self.h.current(project, client)
        view = image_view(session, int(image_id), client=client, annotator=self.h.who(client))
        view.shown_at = float((cursor or {}).get("shown_at") or view.shown_at)  # the label's seconds go on
        return view

    def _session(self, project: str | None, client: str | None) -> ActiveLearningSession:
        if not project:
            raise gr.Error(NO_PROJECT)
        self.h.visitors.require_host(client)
        return self.h.sessions.get(project)
