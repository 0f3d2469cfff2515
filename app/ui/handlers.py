"""Thin handlers: parse the page's values, call one session method, return plain values for the page.

They are plain methods (no component objects), so tests call them directly. Errors reach the person as
`gr.Error` with the engine's message; anything unexpected is logged and reported in one plain sentence.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from app.core.errors import AppError
from app.core.progress import ProgressFn
from app.core.settings import ProjectSettings, default_settings
from app.core.strategies import DEFAULT_STRATEGY
from app.engine.session import ROUND_JOB, ActiveLearningSession
from app.ui import registry
from app.ui.errors import friendly, plain
from app.ui.hosting import Hosting
from app.ui.image_route import register_root
from app.ui.model_handlers import ModelHandlers, check_model_name
from app.ui.sessions import NO_PROJECT, Sessions
from app.ui.views import (
    LabelView,
    Upcoming,
    image_view,
    job_key,
    message_view,
    parse_labels,
    status_html,
    waiting_message,
)
from app.ui.visitors import Visitors

log = logging.getLogger(__name__)

CUSTOM = "Custom (type a timm name)"
MODEL_CHOICES: dict[str, tuple[str | None, str]] = {
    "EfficientNet-Lite0 (bundled, offline)": ("tf_efficientnet_lite0", "bundled"),
    "ResNet-18 (needs internet)": ("resnet18", "hub"),
    "ResNet-50 (needs internet)": ("resnet50", "hub"),
    "ConvNeXt-Tiny (needs internet)": ("convnext_tiny", "hub"),
    "ViT-Small/16 (needs internet)": ("vit_small_patch16_224", "hub"),
    CUSTOM: (None, "hub"),
}
DEFAULT_SIZE = "Model default"


def _image_size(value: Any) -> int | None:
    if value in (None, "", DEFAULT_SIZE):
        return None
    try:
        return int(float(str(value).strip()))
    except ValueError:
        raise gr.Error(f"The image size must be a number of pixels, like 224 (got '{plain(value)}').") from None


@dataclass
class PollResult:
    """What a timer tick changes: the status line always; the rest only when something happened.

    Attributes:
        status: the status line HTML.
        key: the new job key (compare with the last one to see a change).
        view: a whole new view when the person was waiting for an image, else None.
        refresh: True when the caption, predictions and progress of the image on screen should be redrawn.
        caption: the new caption (with `refresh`): what the line about the model's guess says may have changed.
        predictions: the new predictions (with `refresh`).
        progress: the new progress line (with `refresh`).
        upcoming: the images this tab will probably get next (with `refresh`: a round may have changed them).
        round: the number of rounds recorded, when something happened (the dashboard redraws when it changes).
    """

    status: str
    key: str
    view: LabelView | None = None
    refresh: bool = False
    caption: str = ""
    predictions: dict[str, float] | str | None = None
    progress: str = ""
    upcoming: list[Upcoming] = field(default_factory=list)
    round: int | None = None


class Handlers:
    """The page's actions over one projects folder: projects, uploads and labeling; `models` holds the model ones.

    Args:
        projects_dir: where projects live (created if missing).
        model_choices: model type name -> (timm name or None for a typed name, weights source).
        base_settings: settings the New project form does not set (epochs, seed, ...).
        allow_local_paths: folders and model files may be given by a path on this computer.
        hosting: how the server is shared (one folder, private workspaces, one shared project).
    """

    def __init__(
        self,
        projects_dir: str | Path,
        *,
        model_choices: dict[str, tuple[str | None, str]] | None = None,
        base_settings: ProjectSettings | None = None,
        allow_local_paths: bool = False,
        hosting: Hosting | None = None,
    ) -> None:
        self.hosting = hosting or Hosting()
        root = Path(projects_dir).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        workspaces = self.hosting.workspaces(root, on_remove=registry.close_all)
        self.sessions = Sessions.at(root, workspaces, self.hosting.shared_project)
        self.projects_dir = self.sessions.projects_dir
        register_root(root, workspaces is not None)
        self.visitors = Visitors(self.sessions, self.hosting)
        self.model_choices = dict(model_choices or MODEL_CHOICES)
        self.base_settings = base_settings or default_settings()
        self.allow_local_paths = allow_local_paths
        self.models = ModelHandlers(
            self.sessions,
            model_choices=self.model_choices,
            base_settings=self.base_settings,
            allow_local_paths=allow_local_paths,
            require_host=self.visitors.require_host,
        )
        self._answers: dict[str, int] = {}  # client id -> the newest labeling answer made for it
        self._answer_ids = itertools.count(1)

    def new_client(self, candidate: str | None = None) -> str:
        """The tab's id when this server signed it (see `Visitors.new_client`)."""
        return self.visitors.new_client(candidate)

    def who(self, client: str | None, user: str | None = None) -> str:
        """The annotator name of this tab (see `Visitors.who`)."""
        return self.visitors.who(client, user)

    def list_projects(self, client: str | None = None) -> list[str]:
        return self.sessions.names(client)

    # ------------------------------------------------------------------------------------------ projects
    @friendly
    def form_settings(
        self,
        model: str,
        custom_arch: str | None,
        strategy: str | None,
        batch_size: float | None,
        val_split: float | None,
        mode: str | None,
        image_size: Any,
    ) -> ProjectSettings:
        """The settings the New project form describes, over the app's defaults."""
        if model not in self.model_choices:
            raise gr.Error(f"Unknown model type '{plain(model)}'; choose one from the list.")
        arch, source = self.model_choices[model]
        if arch is None:
            arch = (custom_arch or "").strip()
            check_model_name(arch, self.allow_local_paths)
            if not arch:
                raise gr.Error("Type the timm model name for the custom model, for example 'efficientnet_b0'.")
        return self.base_settings.replace(
            backbone=arch,
            backbone_source=source,
            weights=None,
            strategy=strategy or DEFAULT_STRATEGY,
            batch_size=int(batch_size or self.base_settings.batch_size),
            audit_share=float(self.base_settings.audit_share if val_split is None else val_split),
            mode=mode or "fast",
            image_size=_image_size(image_size),
        )

    @friendly
    def start_project(
        self, name: str, labels_text: str, settings: ProjectSettings, client: str | None = None
    ) -> tuple[str, LabelView]:
        """Create a project (Start Project); returns its reference and the (empty) labeling view."""
        if self.hosting.crowd:
            raise gr.Error("Everyone here labels one shared project, so new projects cannot be started.")
        folder = self.sessions.writable(client)
        session = ActiveLearningSession.create(folder, name, parse_labels(labels_text), settings)
        session = self.sessions.register(session, client)
        return self.sessions.ref(client, session.name), message_view(session, waiting_message(session))

    @friendly
    def open_project(self, name: str | None, client: str) -> tuple[str, LabelView]:
        """Open a project and show where it stopped (the image this tab had, else the next one of the batch).

        Returns:
            The project's reference (what the page keeps) and the labeling view.
        """
        if not name:
            raise gr.Error("Choose a project in the list first.")
        if name not in self.sessions.names(client):
            raise gr.Error(plain(f"There is no project named '{name}'. Choose one from the list."))
        ref = self.sessions.ref(client, name)
        session = self.sessions.get(ref)
        if self.sessions.first_visit(ref):
            # Claims in the store come from tabs of an earlier run: resume at the batch's first open image.
            session.labeling.resume(client)
        self.prepare(session)
        return ref, self.next_view(session, client)

    @friendly
    def add_labels(
        self, project: str | None, form_name: str | None, labels_text: str, new_label: str, client: str | None = None
    ) -> tuple[str, list[str] | None]:
        """Add Label: into the open project, or into the labels box while a new project is being filled in.

        Returns:
            The labels box text, and the open project's labels when they changed (else None).
        """
        names = parse_labels(new_label)
        if not names:
            raise gr.Error("Type the label to add first.")
        if not project or (form_name or "").strip():
            current = parse_labels(labels_text)
            return "\n".join(current + [n for n in names if n not in current]), None
        self.visitors.require_host(client)
        session = self.sessions.get(project)
        for label in names:
            session.add_label(label)
        gr.Info(plain(f"Added {', '.join(names)} to {session.name}."))
        return labels_text, session.labels

    # ------------------------------------------------------------------------------------------ data
    @friendly
    def import_images(
        self,
        project: str | None,
        client: str,
        sources: list[str],
        allowed_roots: list[str],
        labels_from_folders: bool,
        progress: ProgressFn | None = None,
    ) -> tuple[Any, LabelView]:
        """Import the gathered sources, then prepare the first batch in the background."""
        self.visitors.require_host(client)
        session = self.sessions.get(project)

        def report(done: int, total: int | None, source: str) -> None:
            if progress is not None:
                progress(done / total if total else 0.0, f"Importing {Path(source).name}")

        result = session.add_data(
            sources, labels_from_folders=labels_from_folders, allowed_roots=allowed_roots, progress=report
        )
        self.prepare(session)
        return result, self.next_view(session, client)

    def prepare(self, session: ActiveLearningSession) -> None:
        """Start the background work that gives the project a batch to label, unless it has one."""
        status = session.round_status()
        if status is not None and status.active:
            return
        if any(b.status == "pending" for b in session.batch()):
            return
        p = session.progress()
        if p["total"] == 0 or p["labeled"] >= p["total"]:
            return
        if session.maybe_start_round() is not None:
            return
        session.jobs.start(ROUND_JOB, lambda report, _stop: session.ensure_batch(progress=report))

    # ------------------------------------------------------------------------------------------ labeling
    def next_view(self, session: ActiveLearningSession, client: str) -> LabelView:
        """The next image for this tab, or the reason there is none."""
        status = session.round_status()
        if not session.batch() and status is not None and status.active:
            return message_view(session, waiting_message(session))  # the first batch is being picked
        who = self.who(client)
        item = session.next_item(client, who)
        if item is None:
            return message_view(session, waiting_message(session))
        return image_view(session, item.image_id, client=client, annotator=who)

    @friendly
    def current(self, project: str | None, client: str) -> LabelView:
        if not project:
            return message_view(None, NO_PROJECT)
        return self.next_view(self.sessions.get(project), client)

    @friendly
    def submit(
        self,
        project: str | None,
        client: str,
        cursor: dict | None,
        label: str | None,
        user: str | None = None,
        method: str = "single",
    ) -> LabelView | None:
        """Submit Label: record the label (made by `method`, see `app.core.annotation_rows.METHODS`), show the next
        image. None (nothing changes) when no label is picked."""
        session = self.sessions.get(project)
        image_id = (cursor or {}).get("image_id")
        if image_id is None:
            gr.Warning("There is no image to label right now.")
            return None
        if not label:
            gr.Warning("Pick a label first: click it or press its number key.")
            return None
        shown = float((cursor or {}).get("shown_at") or time.time())
        seconds = max(0.0, min(time.time() - shown, 3600.0))
        session.label(int(image_id), label, annotator=self.who(client, user), seconds=round(seconds, 2), method=method)
        return self.next_view(session, client)

    def pick(
        self,
        project: str | None,
        client: str,
        cursor: dict | None,
        label: str | None,
        auto_submit: bool,
        user: str | None = None,
    ) -> LabelView | None:
        """A label was picked (click or number key): submit it at once when auto-submit is on."""
        if not auto_submit or not label:
            return None
        return self.submit(project, client, cursor, label, user)

    @friendly
    def skip(self, project: str | None, client: str, cursor: dict | None) -> LabelView:
        session = self.sessions.get(project)
        image_id = (cursor or {}).get("image_id")
        if image_id is not None:
            session.skip(int(image_id))
        return self.next_view(session, client)

    @friendly
    def undo(self, project: str | None, client: str, cursor: dict | None, user: str | None = None) -> LabelView | None:
        """Undo: take back this tab's newest label and show that image again."""
        session = self.sessions.get(project)
        who = self.who(client, user)
        undone = session.undo(who, client=client)
        if undone is None:
            gr.Info("There is no label of yours to undo.")
            return None
        view = image_view(session, undone.image_id, client=client, annotator=who)
        view.selected = None
        gr.Info(plain(f"Took back '{undone.label}'."))
        return view

    @friendly
    def move(self, project: str | None, client: str, cursor: dict | None, step: int) -> LabelView | None:
        """Previous / Next inside the batch (images another tab is labeling are passed over)."""
        session = self.sessions.get(project)
        batch = session.batch()
        visible = session.labeling.browsable(batch, client)
        image_id = (cursor or {}).get("image_id")
        pos = next((i for i, b in enumerate(visible) if b.image_id == image_id), None)
        if pos is None:  # nothing on screen, or an image from an earlier batch
            if step > 0:
                return self.next_view(session, client)
            done = [b for b in visible if b.status != "pending"]
            return image_view(session, done[-1].image_id, batch, client, self.who(client)) if done else None
        target = pos + step
        if 0 <= target < len(visible):
            return image_view(session, visible[target].image_id, batch, client, self.who(client))
        if step > 0:
            item = session.next_item(client, self.who(client))
            if item is not None and item.image_id != image_id:
                return image_view(session, item.image_id, client=client, annotator=self.who(client))
            gr.Info("This is the last image of the batch.")
        else:
            gr.Info("This is the first image of the batch.")
        return None

    def note_answer(self, client: str | None) -> None:
        """A labeling answer is being sent to this tab: a timer refresh computed meanwhile is older than it."""
        if client:
            self._answers[client] = next(self._answer_ids)

    def poll(self, project: str | None, client: str, cursor: dict | None, last_key: str | None) -> PollResult:
        """Timer tick: the status line; when a round starts or ends, fresh predictions or a new image.

        The refresh is left out when a labeling answer for this tab was made while it was computed: that answer
        is about another image and already carries fresher values.
        """
        answered = self._answers.get(client)
        result = self._poll(project, client, cursor, last_key)
        if self._answers.get(client) != answered:
            result.view, result.refresh = None, False
        return result

    def _poll(self, project: str | None, client: str, cursor: dict | None, last_key: str | None) -> PollResult:
        session = self.sessions.maybe(project)
        key = job_key(session)
        result = PollResult(status=status_html(session), key=key)
        if session is None or key == (last_key or ""):
            return result
        result.round = session.current_round()
        status = session.round_status()
        if status is not None and status.state == "failed" and last_key is not None:
            gr.Warning(plain(status.error or "The last round failed."))
        image_id = (cursor or {}).get("image_id")
        try:
            if image_id is None:
                result.view = self.next_view(session, client)
            else:
                view = image_view(session, int(image_id), session.batch(), client, self.who(client))
                result.refresh = True
                result.caption, result.predictions = view.caption, view.guess
                result.progress, result.upcoming = view.progress, view.upcoming
        except AppError as exc:
            log.warning("Poll could not refresh the view: %s", exc)
        return result
