"""Exports: labels CSV, class-folder zip, provenance JSON, and the model as checkpoint, safetensors or ONNX."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from app.core.atomic import atomic_path, atomic_write_text
from app.core.csv_safety import safe_csv_text
from app.core.filenames import UniqueNames
from app.core.store import ProjectStore

if TYPE_CHECKING:
    from app.engine.model_state import ModelState


def labels_csv(store: ProjectStore, path: Path) -> Path:
    """One row per labeled image: original file name, stored path, label.

    Every cell is quoted, and text that a spreadsheet would run as a formula (see `app.core.csv_safety`) is
    written with a leading ``'``; the provenance JSON keeps the exact text.
    """
    labels = store.current_labels()
    rows = [
        {"image_id": img.id, "original_name": img.original_name, "path": str(store.root / img.path), "label": label}
        for img in store.images()
        if (label := labels.get(img.id)) is not None
    ]
    frame = pd.DataFrame(rows, columns=["image_id", "original_name", "path", "label"])
    return atomic_write_text(path, safe_csv_text(frame), newline="")


def _label_folders(labels: list[str]) -> dict[str, str]:
    """A different folder name for every label, however long or alike the labels are."""
    folders = UniqueNames()
    return {label: folders.claim(label, tag="_" + hashlib.sha256(label.encode()).hexdigest()[:8]) for label in labels}


def class_zip(store: ProjectStore, path: Path) -> Path:
    """A zip with one folder per label holding the labeled images (original bytes, original names).

    Folder and file names are cleaned and shortened to fit every file system; labels that become alike get a
    short hash of the label appended, files of one label with the same name get their image id appended.
    """
    labels = store.current_labels()
    folders = _label_folders(sorted(set(labels.values())))
    files = {folder: UniqueNames(keep_extension=True) for folder in folders.values()}
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for img in store.images():
            label = labels.get(img.id)
            if label is None:
                continue
            folder = folders[label]
            name = files[folder].claim(Path(img.original_name.replace("\\", "/")).name, tag=f"_{img.id}")
            zf.write(store.root / img.path, f"{folder}/{name}")
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
    return atomic_write_text(path, json.dumps(provenance(store), indent=2, default=float))


MODEL_INFO = "model_info"  # which model an exported file holds: a key of the .ckpt and config.json, ONNX metadata


def model_info(model: ModelState) -> dict[str, Any]:
    """Which of the project's models an export holds: its round, the labels it was trained on, the checkpoint it
    was loaded from (None: the newest round's model), a plain ``description``, and its label names."""
    active = model.active()
    about = {"round": None, "labeled": None, "checkpoint": None, "description": "No model"}
    return {**about, **({} if active is None else active.to_dict()), "label_names": list(model.label_names)}


def model_export(model: ModelState, kind: str, out_dir: Path) -> Path:
    """The active model as a Lightning checkpoint ("ckpt"), safetensors + config ("safetensors") or "onnx".

    The checkpoint and ONNX hold backbone and head together; the safetensors folder loads into plain
    `timm.create_model(arch, num_classes=C)` (zipped with its config.json). Each says which model it holds
    (`model_info`): under ``model_info`` in the checkpoint and in config.json, and as ONNX metadata, beside the label
    names and the preprocessing (``label_names``, ``input_size``, ``mean``, ``std``: `lit_models.export.onnx_metadata`).
    """
    from lit_models.export import build_classifier, export_onnx, onnx_metadata, save_classifier_checkpoint

    info = model_info(model)
    backbone = model.current_backbone()  # the fine-tuned one in fine-tune mode
    classifier = build_classifier(backbone, model.head, model.label_names)
    if kind == "ckpt":
        path = save_classifier_checkpoint(classifier, out_dir / "model.ckpt", backbone, model.label_names)
        return _tag_checkpoint(path, info)
    if kind == "onnx":
        metadata = {**onnx_metadata(model.label_names, backbone.data_config), MODEL_INFO: json.dumps(info)}
        return export_onnx(classifier, out_dir / "model.onnx", backbone.data_config["input_size"], metadata=metadata)
    folder = _timm_folder(model, classifier, out_dir, info)
    archive = out_dir / "timm_model.zip"
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f.name)
    return archive


def _timm_folder(model: ModelState, classifier: Any, out_dir: Path, info: dict[str, Any]) -> Path:
    """``out_dir/timm_model``: model.safetensors and config.json (with `info` under ``model_info``)."""
    from lit_models.export import save_safetensors

    backbone = model.current_backbone()
    folder = save_safetensors(
        classifier, out_dir / "timm_model", backbone.arch, model.label_names, backbone.data_config
    )
    config = Path(folder) / "config.json"
    atomic_write_text(config, json.dumps({**json.loads(config.read_text("utf-8")), MODEL_INFO: info}, indent=2))
    return Path(folder)


def _tag_checkpoint(path: Path, info: dict[str, Any]) -> Path:
    """Add `info` to a Lightning checkpoint under ``model_info`` (Lightning ignores keys it does not know)."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint[MODEL_INFO] = info
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path
