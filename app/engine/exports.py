"""Exports: labels CSV, class-folder zip, provenance JSON, and the model as checkpoint, safetensors or ONNX."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from app.core.store import ProjectStore

if TYPE_CHECKING:
    from app.engine.model_state import ModelState

_UNSAFE = re.compile(r"[^\w.\- ]+")


def _atomic_write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def labels_csv(store: ProjectStore, path: Path) -> Path:
    """One row per labeled image: original file name, stored path, label."""
    labels = store.current_labels()
    rows = [
        {"image_id": img.id, "original_name": img.original_name, "path": str(store.root / img.path), "label": label}
        for img in store.images()
        if (label := labels.get(img.id)) is not None
    ]
    frame = pd.DataFrame(rows, columns=["image_id", "original_name", "path", "label"])
    return _atomic_write_text(path, frame.to_csv(index=False))


def _safe_part(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name).strip(" .")
    return cleaned or "unnamed"


def class_zip(store: ProjectStore, path: Path) -> Path:
    """A zip with one folder per label holding the labeled images (original bytes, original names)."""
    labels = store.current_labels()
    tmp = path.with_name(path.name + ".tmp")
    used: set[str] = set()
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for img in store.images():
            label = labels.get(img.id)
            if label is None:
                continue
            base = _safe_part(Path(img.original_name).name)
            arc = f"{_safe_part(label)}/{base}"
            if arc in used:  # the same file name under one label: keep both
                stem, ext = os.path.splitext(base)
                arc = f"{_safe_part(label)}/{stem}_{img.id}{ext}"
            used.add(arc)
            zf.write(store.root / img.path, arc)
    os.replace(tmp, path)
    return path


def provenance(store: ProjectStore) -> dict[str, Any]:
    """Per labeled image: its label and how it came to be (annotator, time, seconds, round, strategy, score)."""
    images = {img.id: img for img in store.images()}
    latest: dict[int, Any] = {}
    history: dict[int, list[dict[str, Any]]] = {}
    for ann in store.history():
        entry = {
            "label": ann.label,
            "annotator": ann.annotator,
            "time": ann.created_at,
            "seconds": ann.seconds,
            "round": ann.round,
            "strategy": ann.strategy,
            "score": ann.score,
            "undone": ann.undone,
        }
        history.setdefault(ann.image_id, []).append(entry)
        if not ann.undone:
            latest[ann.image_id] = entry
    items = []
    for image_id, entry in latest.items():
        img = images[image_id]
        items.append(
            {
                "image_id": image_id,
                "original_name": img.original_name,
                "sha256": img.sha256,
                "source": img.source,
                **{k: v for k, v in entry.items() if k != "undone"},
                "history": history[image_id],
            }
        )
    return {
        "project": store.get_setting("name", store.root.name),
        "labels": store.labels(),
        "settings": store.get_setting("settings", {}),
        "rounds": [
            {"round": r.number, "labeled": r.labeled, "strategy": r.strategy, "seconds": r.seconds}
            | {"metrics": r.metrics}
            for r in store.rounds()
        ],
        "images": items,
    }


def provenance_json(store: ProjectStore, path: Path) -> Path:
    """`provenance(store)` written as JSON."""
    return _atomic_write_text(path, json.dumps(provenance(store), indent=2, default=float))


def model_export(model: ModelState, kind: str, out_dir: Path) -> Path:
    """The current model as a Lightning checkpoint ("ckpt"), safetensors + config ("safetensors") or "onnx".

    The checkpoint and ONNX hold backbone and head together; the safetensors folder loads into plain
    `timm.create_model(arch, num_classes=C)` (zipped with its config.json).
    """
    from lit_models.export import build_classifier, export_onnx, save_classifier_checkpoint, save_safetensors

    backbone = model.current_backbone()  # the fine-tuned one in fine-tune mode
    classifier = build_classifier(backbone, model.head, model.label_names)
    if kind == "ckpt":
        return save_classifier_checkpoint(classifier, out_dir / "model.ckpt", backbone, model.label_names)
    if kind == "onnx":
        size = backbone.data_config["input_size"]
        return export_onnx(classifier, out_dir / "model.onnx", size)
    folder = save_safetensors(
        classifier, out_dir / "timm_model", backbone.arch, model.label_names, backbone.data_config
    )
    archive = out_dir / "timm_model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(Path(folder).iterdir()):
            zf.write(f, f.name)
    return archive
