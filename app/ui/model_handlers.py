"""Handlers for models: import a model file, save and load checkpoints, export labels and models."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from app.engine.session import ActiveLearningSession, check_project_name
from app.ui import registry
from app.ui.errors import friendly
from app.ui.views import LabelView, message_view, parse_labels, waiting_message

if TYPE_CHECKING:
    from app.core.settings import ProjectSettings


class ModelHandlers:
    """Mixed into `app.ui.handlers.Handlers`, which provides the attributes declared here."""

    projects_dir: Path
    model_choices: dict[str, tuple[str | None, str]]
    base_settings: ProjectSettings

    def session(self, project: str | None) -> ActiveLearningSession:
        raise NotImplementedError

    def maybe_session(self, project: str | None) -> ActiveLearningSession | None:
        raise NotImplementedError

    @friendly
    def import_model(
        self,
        name: str,
        model: str,
        custom_arch: str | None,
        num_classes: float | None,
        labels_text: str,
        model_file: str | None,
    ) -> tuple[str, LabelView]:
        """Import Model: a project whose backbone weights come from the person's model file."""
        if not model_file:
            raise gr.Error("Choose the model file (.safetensors, .pth, .pt, .bin or .ckpt) first.")
        arch = self.model_choices.get(model, (None, ""))[0] or (custom_arch or "").strip()
        if not arch:
            raise gr.Error("Type the timm model name of the file, for example 'resnet18'.")
        labels = parse_labels(labels_text)
        n = int(num_classes or 0)
        if not labels:
            labels = [f"class {i + 1}" for i in range(n)]
        elif n and n != len(labels):
            gr.Warning(f"You typed {len(labels)} labels but {n} classes; the project uses the {len(labels)} labels.")
        name = check_project_name(name)
        target = self.projects_dir / name / "model_files" / Path(model_file).name
        if (self.projects_dir / name).exists():
            raise gr.Error(f"A project named '{name}' already exists; open it instead or choose another name.")
        target.parent.mkdir(parents=True)
        shutil.copyfile(model_file, target)
        settings = self.base_settings.replace(backbone=arch, backbone_source="file", weights=str(target))
        try:
            session = ActiveLearningSession.create(self.projects_dir, name, labels, settings)
        except Exception:
            shutil.rmtree(self.projects_dir / name, ignore_errors=True)
            raise
        session = registry.register(self.projects_dir, session)
        return session.name, message_view(session, waiting_message(session))

    # ------------------------------------------------------------------------------------------ models
    @friendly
    def save_checkpoint(self, project: str | None, name: str | None) -> tuple[list[tuple[str, str]], str]:
        session = self.session(project)
        saved = session.save_checkpoint((name or "").strip() or None)
        gr.Info(f"Saved the model as '{saved}'.")
        return self.checkpoint_choices(project), saved

    def checkpoint_choices(self, project: str | None) -> list[tuple[str, str]]:
        session = self.maybe_session(project)
        if session is None:
            return []
        return [
            (f"{c['name']} · round {c.get('round', '?')} · {c.get('labeled', '?')} labels", c["name"])
            for c in session.list_checkpoints()
        ]

    @friendly
    def load_checkpoint(self, project: str | None, name: str | None, cursor: dict | None) -> dict[str, float] | None:
        """Load Checkpoint: make it the current model; returns its predictions for the image on screen."""
        if not name:
            raise gr.Error("Choose a checkpoint in the list first.")
        session = self.session(project)
        session.load_checkpoint(name)
        gr.Info(f"Loaded '{name}'.")
        image_id = (cursor or {}).get("image_id")
        return None if image_id is None else session.predictions(int(image_id))

    @friendly
    def export(self, project: str | None, kind: str) -> str:
        """Write one export into the project's exports folder; returns the file to download."""
        session = self.session(project)
        return str(session.export(kind))
