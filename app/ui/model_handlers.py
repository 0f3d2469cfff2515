"""Handlers for models: verify and import your own model, save and load checkpoints, export labels and models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gradio as gr

from app.core.progress import ProgressFn, no_progress
from app.core.settings import ProjectSettings
from app.engine.bundle import bundle
from app.engine.jobs import RUNNING
from app.engine.model_import import ModelSource, create_project_from_model, verify_model
from app.engine.model_into_project import import_into_project
from app.engine.model_report import failure_markdown
from app.engine.model_state import ActiveModel
from app.engine.session import ActiveLearningSession
from app.ui.errors import friendly, plain
from app.ui.sessions import Sessions
from app.ui.views import LabelView, labels_kept, message_view, parse_labels, waiting_message

LOCAL_NAME_PREFIXES = ("local-dir:", "file:", "/", "~", ".")
MODEL_EXPORTS = frozenset({"ckpt", "safetensors", "onnx", "all_zip"})
OPEN_PROJECT = "open"  # the own-model form's target: the open project (else a new one)
NO_OPEN_PROJECT = "Open the project to put the model into first (Open a project, above), or choose 'A new project'."


def check_model_name(arch: str, allow_local_paths: bool) -> None:
    """Refuse a model name that points into this server's disk (timm's ``local-dir:``) unless local paths are on.

    Raises:
        gr.Error: the name reads a server folder and the app serves other people (`--host`, `--share`).
    """
    if not allow_local_paths and arch.strip().lower().startswith(LOCAL_NAME_PREFIXES):
        raise gr.Error(
            "Model folders on the server cannot be used when the app is shared; "
            "upload the model file instead, or type a timm or hf-hub: name."
        )


class ModelHandlers:
    """The page's model actions over one projects folder (held by `app.ui.handlers.Handlers` as `models`).

    Args:
        sessions: the projects folder's sessions, shared with the other handlers.
        model_choices: model type name -> (timm name or None for a typed name, weights source).
        base_settings: the settings an imported model's project starts from.
        allow_local_paths: model files may be given by a path on this computer.
        require_host: refuses a tab that may not change models or export (a visitor of a shared project).
    """

    def __init__(
        self,
        sessions: Sessions,
        *,
        model_choices: dict[str, tuple[str | None, str]],
        base_settings: ProjectSettings,
        allow_local_paths: bool,
        require_host: Callable[[str | None], None] = lambda _client: None,
    ) -> None:
        self.sessions = sessions
        self.require_host = require_host
        self.model_choices = model_choices
        self.base_settings = base_settings
        self.allow_local_paths = allow_local_paths

    # ------------------------------------------------------------------------------------------ your own model
    def model_source(
        self, arch: str | None, model_file: str | None, local_path: str | None, allow_torchscript: bool | None
    ) -> ModelSource:
        """The model the form describes: a model type of the New project form, a timm name, and/or a file."""
        arch = (arch or "").strip()
        source = None
        if arch in self.model_choices:
            name, source = self.model_choices[arch]
            if name is None:
                raise gr.Error("Type the timm model name in the Model box, for example 'resnet18'.")
            arch = name
        check_model_name(arch, self.allow_local_paths)
        weights = model_file or ((local_path or "").strip() if self.allow_local_paths else "") or None
        if not arch and not weights:
            raise gr.Error("Choose a model: type a timm name (e.g. resnet18) or an hf-hub: name, or add a model file.")
        return ModelSource(
            arch=arch,
            weights=weights,
            source=source,
            image_size=self.base_settings.image_size,
            allow_torchscript=bool(allow_torchscript),
        )

    def verify_model(
        self,
        project: str | None,
        arch: str | None,
        num_classes: float | None,
        labels_text: str,
        model_file: str | None,
        local_path: str | None,
        allow_torchscript: bool | None,
        test_image: str | None,
        target: str | None = None,
    ) -> str:
        """Verify Model: load the model, run one image through it, and return the report (Markdown).

        The image is the test image when given, else one of the open project's images, else a sample photo. For
        the open project (`target` "open") the model is checked against its labels, as Import Model will put it in.
        A model that cannot be loaded gives a report that says why (no exception).
        """

        @friendly
        def check() -> str:
            source = self.model_source(arch, model_file, local_path, allow_torchscript)
            images: list = [test_image] if test_image else self._sample_images(project)
            labels, classes = parse_labels(labels_text), _classes(num_classes)
            if target == OPEN_PROJECT:
                labels, classes = self._open_session(project).labels, None
            found = verify_model(source, labels, classes, images=images)
            return found.markdown()

        try:
            return check()
        except gr.Error as exc:
            return failure_markdown(str(exc.message))

    def _open_session(self, project: str | None) -> ActiveLearningSession:
        session = self.sessions.maybe(project)
        if session is None:
            raise gr.Error(NO_OPEN_PROJECT)
        return session

    @friendly
    def import_into_project(
        self,
        project: str | None,
        arch: str | None,
        model_file: str | None,
        local_path: str | None = None,
        mode: str | None = None,
        allow_torchscript: bool | None = False,
        test_image: str | None = None,
        client: str | None = None,
        progress: ProgressFn = no_progress,
    ) -> str:
        """Import Model into the open project: the same checks and head rules as for a new project, its labels and
        history kept; returns the model report. The first image shown afterwards has the imported model's guesses."""
        self.require_host(client)
        session = self._open_session(project)
        source = self.model_source(arch, model_file, local_path, allow_torchscript)
        images = [test_image] if test_image else []
        check = import_into_project(session, source, mode=mode, images=images, progress=progress)
        gr.Info(plain(check.message))
        return check.markdown()

    def _sample_images(self, project: str | None, count: int = 3) -> list[tuple[str, str]]:
        """The open project's first images, as (path, original name)."""
        session = self.sessions.maybe(project)
        if session is None:
            return []
        return [(str(path), name) for path, name in session.image_files(count)]

    @friendly
    def import_model(
        self,
        name: str,
        arch: str | None,
        num_classes: float | None,
        labels_text: str,
        model_file: str | None,
        local_path: str | None = None,
        mode: str | None = "fast",
        allow_torchscript: bool | None = False,
        test_image: str | None = None,
        client: str | None = None,
    ) -> tuple[str, LabelView, str]:
        """Import Model: check the model, then a new project on it; returns its reference, view and the model report.

        When the model's classifier fits the labels, its predictions show from the first image.
        """
        source = self.model_source(arch, model_file, local_path, allow_torchscript)
        settings = self.base_settings.replace(mode=mode or "fast")
        if self.sessions.shared is not None:
            raise gr.Error("Everyone here labels one shared project, so new projects cannot be started.")
        session, check = create_project_from_model(
            self.sessions.writable(client),
            name,
            parse_labels(labels_text),
            source,
            settings=settings,
            num_classes=_classes(num_classes),
            images=[test_image] if test_image else [],
        )
        session = self.sessions.register(session, client)
        gr.Info(plain(check.message))
        ref = self.sessions.ref(client, session.name)
        return ref, message_view(session, waiting_message(session)), check.markdown()

    # ------------------------------------------------------------------------------------------ models
    @friendly
    def save_checkpoint(
        self, project: str | None, name: str | None, client: str | None = None
    ) -> tuple[list[tuple[str, str]], str]:
        self.require_host(client)
        session = self.sessions.get(project)
        saved = session.save_checkpoint((name or "").strip() or None)
        active = session.model.active()
        gr.Info(plain(f"Saved {active.describe() if active else 'the model'} as '{saved}'."))
        return self.checkpoint_choices(project), saved

    def checkpoint_choices(self, project: str | None) -> list[tuple[str, str]]:
        session = self.sessions.maybe(project)
        if session is None:
            return []
        return [
            (f"{c['name']} · round {c.get('round', '?')} · {c.get('labeled', '?')} labels", c["name"])
            for c in session.list_checkpoints()
        ]

    @friendly
    def load_checkpoint(
        self, project: str | None, name: str | None, cursor: dict | None, client: str | None = None
    ) -> dict[str, float] | None:
        """Load Checkpoint: make it the active model (labels stay); returns its predictions for the image on screen."""
        self.require_host(client)
        if not name:
            raise gr.Error("Choose a checkpoint in the list first.")
        session = self.sessions.get(project)
        info = session.load_checkpoint(name)
        gr.Info(plain(loaded_message(info["active"], session.progress()["labeled"], round_running(session))))
        image_id = (cursor or {}).get("image_id")
        return None if image_id is None else session.predictions(int(image_id))

    @friendly
    def export(self, project: str | None, kind: str, client: str | None = None) -> str:
        """Write one export into the project's exports folder; returns the file to download.

        A model export says which model it holds, in its file (see `app.engine.exports.model_info`) and on the page.
        """
        self.require_host(client)
        if kind == "everything":
            return str(self.export_everything(client))
        session = self.sessions.get(project)
        path = session.export(kind)
        if kind in MODEL_EXPORTS and (active := session.model.active()) is not None:
            gr.Info(plain(f"This file holds {active.describe()}."))
        return str(path)

    def export_everything(self, client: str | None) -> Path:
        """One zip of every project this tab may open: labels, history and models (`app.engine.bundle`)."""
        folder = self.sessions.folder(client)
        sessions = [self.sessions.get(self.sessions.ref(client, name)) for name in self.sessions.names(client)]
        if not sessions:
            raise gr.Error("There is no project to download yet.")
        return bundle(sessions, folder / ".downloads" / "projects.zip")


def loaded_message(active: ActiveModel, labeled: int, running: bool) -> str:
    """What loading a checkpoint changed: which model is active, that labels are kept, what the next round does."""
    text = active.describe()
    then = (
        "A round is running now: when it ends, its new model, trained on all your labels, becomes active."
        if running
        else "The next round trains a new model on all your labels and makes it active."
    )
    return (
        f"{text[:1].upper()}{text[1:]} is now active; {labels_kept(labeled)}. "
        f"Loading a model checkpoint never rolls labels back. {then}"
    )


def round_running(session: ActiveLearningSession) -> bool:
    """Whether a round is training now (its model becomes active when it ends)."""
    status = session.round_status()
    return status is not None and status.state == RUNNING


def _classes(value: float | None) -> int | None:
    """The form's number of classes: None when empty or 0."""
    if value in (None, ""):
        return None
    n = int(value)
    if n < 0:
        raise gr.Error("The number of classes cannot be negative; leave it empty to use the labels.")
    return n or None
