"""Bring your own model into the open project: the checks and head rules of a new project's import, the labels kept.

`import_into_project` prepares the model for the project's own labels (`model_import.prepare_model`, the same Verify
report: a classifier whose classes are the labels, by name, or by count when it names none, is kept; any other is
replaced by a new head), keeps a safe copy of the weights in ``model_files/``, makes the model the project's backbone
(`ActiveLearningSession.switch_model`) and embeds every image with it. Then a kept classifier scores them (it is the
checkpoint ``imported-model``, active, across restarts too, until a round trains a newer model), while a new head is
trained on the project's labels at once (a round). Either way the first image shown afterwards carries the imported
model's guesses. Nothing changes when the model is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.core.errors import AppError
from app.core.progress import ProgressFn, no_progress
from app.engine.jobs import FAILED, RUNNING
from app.engine.model_import import MODEL_FILES_DIR, ImageRef, ModelSource, PreparedModel, prepare_model
from app.engine.model_report import ModelCheck
from app.engine.model_state import IMPORTED, ModelState
from app.engine.session import ROUND_JOB, ActiveLearningSession
from lit_models.model_files import save_weights

MODES = ("fast", "finetune")
WAIT_SECONDS = 0.5  # how often the caller hears how scoring goes


def import_into_project(
    session: ActiveLearningSession,
    source: ModelSource,
    *,
    mode: str | None = None,
    images: Sequence[ImageRef] = (),
    progress: ProgressFn = no_progress,
) -> ModelCheck:
    """Make the model described by `source` the open project's model; its labels and history stay.

    Args:
        mode: "fast" or "finetune" for the project from now on (None keeps the project's).
        images: the image the report runs through the model (default: the project's first images).
        progress: hears (fraction, message) while the images are embedded and scored (or the new head trains).

    Returns:
        The model report (the one Verify Model gives for these labels), with notes on what the import did.

    Raises:
        AppError: the model is refused (`ModelFileError`, `BackboneError`, ...); the project is unchanged.
    """
    if mode is not None and mode not in MODES:
        raise AppError(f"Unknown training mode '{mode}'. Choose fast or finetune.")
    labels = session.labels
    images = list(images) or [(str(path), name) for path, name in session.image_files(3)]
    prepared = prepare_model(source, labels, None, images=images)
    settings = session.settings.replace(
        backbone=prepared.spec.arch if prepared.spec.source != "file" else prepared.backbone.arch,
        backbone_source=prepared.spec.source,
        weights=None,
        image_size=source.image_size,
        mode=mode or session.settings.mode,
    )
    if prepared.spec.source == "file" and prepared.weights is not None:
        stem = Path(prepared.weights.path.name).stem.split(".")[0] or "model"
        target = _free_file(session.store.root / MODEL_FILES_DIR, stem)
        kept = save_weights(prepared.weights, target, prepared.backbone.arch)
        settings = settings.replace(weights=str(kept))
    session.switch_model(settings, lambda model: _adopt(model, prepared))
    session.store.update_settings(imported_model=prepared.check.to_dict())
    check = prepared.check
    failed = _score(session, kept=prepared.head is not None, progress=progress)
    labeled = len(session.store.current_labels())
    if failed is not None:
        check.notes.append(f"The model is the project's now, but scoring its images failed: {failed}")
    elif prepared.head is not None:
        check.notes.append(f"Your {labeled} labels stay; the next round trains a new head on them with this model.")
    elif labeled:
        check.notes.append(f"Your {labeled} labels stay; a new head was trained on them with this model at once.")
    else:
        check.notes.append("A new head learns your labels with this model from the first round.")
    return check


def _adopt(model: ModelState, prepared: PreparedModel) -> None:
    """Fill the project's new model state: the loaded backbone, and a kept classifier as the active model."""
    model.adopt(prepared.backbone, prepared.head, prepared.labels)
    if prepared.head is not None:  # active by name, so a restart brings it back instead of an older round's model
        model.load_named(IMPORTED, prepared.labels)


def _score(session: ActiveLearningSession, *, kept: bool, progress: ProgressFn) -> str | None:
    """Embed every image with the new backbone, then score them with the kept classifier, or train the new head
    on the labels (a round; before any label, the batch stays). Runs as the project's round job, so a round asked
    for meanwhile waits for it; returns the error of a failed job, else None."""

    def work(report: ProgressFn, stop: Any) -> Any:
        if not kept and session.store.current_labels():
            return session.run_round(progress=report, stop_event=stop)
        session.embed_all(report)
        session.model.refresh_probs(session.store.image_ids())
        return None

    session.jobs.start(ROUND_JOB, work)
    while True:
        status = session.jobs.wait(ROUND_JOB, timeout=WAIT_SECONDS)
        if status is None:
            return None
        progress(status.progress, status.message)
        if status.state != RUNNING:
            return status.error if status.state == FAILED else None


def _free_file(folder: Path, stem: str) -> Path:
    """``folder/<stem>.safetensors``, else ``<stem>-2.safetensors``, ...: never the file the old model still reads."""
    number = 1
    while True:
        path = folder / (f"{stem}.safetensors" if number == 1 else f"{stem}-{number}.safetensors")
        if not path.exists():
            return path
        number += 1
