"""The "Export all" download: one zip with the labels (CSV), their provenance (JSON), the model for plain timm
(safetensors + config.json) and for ONNX Runtime, and a README.txt that says how to load each.

Before the first round there is no model: the zip then holds the labels, the provenance and the README, which says
so. A head with a hidden layer does not fit plain timm: the zip then holds the ONNX model only, and the README says
why.
"""

from __future__ import annotations

import tempfile
import time
import zipfile
from pathlib import Path

from app.core.atomic import atomic_path
from app.core.errors import ModelFileError
from app.core.store import ProjectStore
from app.engine import exports
from app.engine.model_state import ModelState

ARCHIVE_NAME = "export_all.zip"
README_NAME = "README.txt"

_HEADER = """Project "{project}", exported {when} by the active-learning labeler.

What is in this zip:
  labels.csv        one row per labeled image: image_id, original_name, path (where it was stored), label
  provenance.json   every label with who gave it, when, in which round, why the image was picked, and its history
{model_lines}
Read the labels with pandas:

    import pandas as pd
    labels = pd.read_csv("labels.csv")
    print(labels["label"].value_counts())

Read the provenance with the json module:

    import json
    provenance = json.load(open("provenance.json", encoding="utf-8"))
    print(provenance["labels"], len(provenance["images"]))
"""
_TIMM_LINE = "  timm_model/       the model for plain timm: model.safetensors and config.json (labels, preprocessing)\n"
_ONNX_LINE = "  model.onnx        the same model for ONNX Runtime; its metadata has the labels and preprocessing\n"
_NO_MODEL = "  (no model yet: label a batch so the first round trains one, then export again)\n"
_NO_TIMM = "  (no timm_model/: this model's head has a hidden layer, which plain timm cannot hold; use model.onnx)\n"
_TIMM = """
Load the model in plain timm (offline, no internet needed):

    import json, timm, torch
    from PIL import Image
    model = timm.create_model("local-dir:timm_model", pretrained=True).eval()
    names = json.load(open("timm_model/config.json"))["label_names"]
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    x = transform(Image.open("photo.jpg").convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    print(names[int(probs.argmax())], float(probs.max()))
"""
_ONNX = """
Run the ONNX model with onnxruntime (numpy and Pillow, no torch needed):

    import json
    import numpy as np, onnxruntime as ort
    from PIL import Image, ImageOps
    session = ort.InferenceSession("model.onnx")
    meta = {key: json.loads(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}
    channels, height, width = meta["input_size"]
    image = Image.open("photo.jpg").convert("RGB")
    image = ImageOps.fit(image, (width, height), Image.BICUBIC, bleed=(1 - meta.get("crop_pct", 1.0)) / 2)
    x = (np.asarray(image, np.float32) / 255 - meta["mean"]) / meta["std"]
    logits = session.run(None, {"input": x.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
    print(meta["label_names"][int(logits.argmax())])
"""


def export_all(store: ProjectStore, model: ModelState, out_dir: Path) -> Path:
    """Write ``out_dir/export_all.zip`` (whole or not at all); returns its path.

    Raises:
        OSError: a file could not be written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="alabel-export-all-") as scratch:
        work = Path(scratch)
        files = {
            "labels.csv": exports.labels_csv(store, work / "labels.csv"),
            "provenance.json": exports.provenance_json(store, work / "provenance.json"),
        }
        lines, guides = _model_files(model, work, files)
        when = time.strftime("%Y-%m-%d %H:%M")
        readme = _HEADER.format(project=store.get_setting("name", store.root.name), when=when, model_lines=lines)
        archive = out_dir / ARCHIVE_NAME
        with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(README_NAME, readme + guides)
            for name, path in files.items():
                zf.write(path, name)
    return archive


def _model_files(model: ModelState, work: Path, files: dict[str, Path]) -> tuple[str, str]:
    """Add the model's files to `files` (name in the zip -> file); returns the README's lines about them and its
    loading guides."""
    if not model.has_model():
        return _NO_MODEL, ""
    lines, guides = "", ""
    try:
        with zipfile.ZipFile(exports.model_export(model, "safetensors", work)) as zf:
            for name in zf.namelist():
                files[f"timm_model/{name}"] = Path(zf.extract(name, work / "timm_unpacked"))
        lines, guides = _TIMM_LINE, _TIMM
    except ModelFileError:  # a head with a hidden layer: ONNX only
        lines = _NO_TIMM
    files["model.onnx"] = exports.model_export(model, "onnx", work)
    return lines + _ONNX_LINE, guides + _ONNX
