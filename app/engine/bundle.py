"""One download of everything a person made here: each project's labels, their history and its model, zipped.

On a Space nothing outlives a restart without a storage bucket, so a visitor takes their whole workspace home in
one file: ``<project>/labels.csv``, ``<project>/provenance.json`` and, once a model is trained,
``<project>/timm_model.zip`` (safetensors + config.json, loads in plain timm).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

from app.core.atomic import atomic_path
from app.engine.session import ActiveLearningSession


def _project_files(session: ActiveLearningSession) -> list[tuple[Path, str]]:
    files = [(session.export("labels_csv"), "labels.csv"), (session.export("provenance_json"), "provenance.json")]
    if session.model.has_model():
        files.append((session.export("safetensors"), "timm_model.zip"))
    return files


def bundle(sessions: Iterable[ActiveLearningSession], out: Path) -> Path:
    """Write the zip of `sessions` to `out` (written whole or not at all); returns `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for session in sessions:
            for path, name in _project_files(session):
                zf.write(path, f"{session.name}/{name}")
    return out
