"""Bring your own model: check a timm name or a model file on one image, then start a project on it.

`verify_model` loads the model, runs one image through it and reports what it found (architecture, parameters,
input size, classes, how the weights matched). `create_project_from_model` does the same checks, keeps a safe copy
of the weights in the project (safetensors: opening it never runs code), and, when the model's own classifier fits
the project's labels, makes that classifier the project's first model, so its predictions show from the first image.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import AppError, BackboneError, ModelFileError, StoreError
from app.core.settings import ProjectSettings
from app.core.store import ProjectStore
from app.engine.model_report import ModelCheck
from app.engine.session import ActiveLearningSession, check_project_name
from lit_models.backbones import BUNDLED_ARCH, SOURCES, BackboneSpec, LoadedBackbone, SourceHead, load_backbone
from lit_models.model_files import WeightsFile, read_weights, save_weights

MODEL_FILES_DIR = "model_files"
SAMPLE_IMAGE = "scikit-learn's sample photo china.jpg"
ImageRef = str | Path | tuple[str | Path, str]  # an image file, or (file, name to show)


@dataclass(frozen=True)
class ModelSource:
    """What the person brings.

    Attributes:
        arch: a timm name (``resnet18``), a pretrained tag (``resnet18.a1_in1k``) or ``hf-hub:owner/repo``; empty
            when the file names its architecture (this app's checkpoints and exports, timm folders).
        weights: a local model file, folder or zip; None for hub, bundled or random models.
        source: where the backbone comes from when there is no full weights file: "bundled", "hub" or "random";
            None picks "bundled" for the bundled EfficientNet-Lite0 and "hub" for anything else.
        image_size: square input size in pixels; None keeps the model's own.
        allow_torchscript: open TorchScript programs (opening one runs code from it).
    """

    arch: str = ""
    weights: str | None = None
    source: str | None = None
    image_size: int | None = None
    allow_torchscript: bool = False


@dataclass
class PreparedModel:
    """A loaded, checked model ready to become a project's model."""

    backbone: LoadedBackbone
    head: Any  # HeadClassifier | None
    labels: list[str]
    check: ModelCheck
    spec: BackboneSpec
    weights: WeightsFile | None


def verify_model(
    source: ModelSource,
    labels: Sequence[str] = (),
    num_classes: int | None = None,
    *,
    images: Sequence[ImageRef] = (),
) -> ModelCheck:
    """Load the model, run the first readable image of `images` (paths, or (path, name) pairs) through it, and report.

    Raises:
        AppError: (`ModelFileError`, `BackboneError`, ...) with a sentence that says what to do.
    """
    return prepare_model(source, labels, num_classes, images=images).check


def prepare_model(
    source: ModelSource,
    labels: Sequence[str] = (),
    num_classes: int | None = None,
    *,
    images: Sequence[ImageRef] = (),
) -> PreparedModel:
    """Load and check a model for a project with `labels` (or `num_classes`, or the classes the file names)."""
    weights = _read(source)
    with tempfile.TemporaryDirectory(prefix="alabel-import-") as tmp:
        spec = _backbone_spec(source, weights, Path(tmp))
        backbone = load_backbone(spec, keep_classifier=weights is None or weights.format != "head_checkpoint")
    if weights is not None and weights.format == "head_checkpoint":
        source_head = _head_of_checkpoint(weights, backbone)
    else:
        source_head = backbone.source_head
    note = str(backbone.report.get("head_note") or "")
    names = resolve_labels(labels, num_classes, source_head)
    head, kind, message = _match_head(source_head, names, note)
    check = ModelCheck(
        arch=backbone.arch,
        source=spec.source,
        weights=None if weights is None else weights.path.name,
        file_format=None if weights is None else weights.description,
        parameters=0,
        backbone_parameters=sum(p.numel() for p in backbone.model.parameters()),
        input_size=tuple(int(s) for s in backbone.data_config["input_size"]),
        num_features=backbone.num_features,
        file_classes=None if source_head is None else source_head.num_classes,
        labels=names,
        head=kind,
        message=message,
    )
    check.parameters = check.backbone_parameters + _head_parameters(head, backbone.num_features, len(names))
    report = backbone.report
    if "loaded" in report:
        check.loaded, check.expected = int(report["loaded"]), int(report["expected"])
        check.missing, check.unexpected = list(report["missing"]), list(report["unexpected"])
        check.dropped = list(report["dropped_classifier"])
    if weights is not None and weights.format == "head_checkpoint":
        check.notes.append(
            f"The head comes from '{weights.path.name}'; the backbone is {backbone.arch} ({spec.source})."
        )
    if weights is not None and weights.format == "torchscript":
        check.notes.append("TorchScript was allowed: its weights are kept as safetensors, the program is not kept.")
    _forward(check, backbone, head, source_head, images)
    if check.head == "kept" and check.max_difference is not None and check.max_difference > 1e-3:
        head, check.head = None, "new"
        check.message = (
            "The model's classifier does not act on the pooled features alone (its logits differ from a linear "
            "layer on them), so a new head learns your labels from the first round."
        )
        check.top = []
    return PreparedModel(backbone, head, names, check, spec, weights)


def create_project_from_model(
    projects_dir: str | Path,
    name: str,
    labels: Sequence[str],
    source: ModelSource,
    *,
    settings: ProjectSettings | None = None,
    num_classes: int | None = None,
    images: Sequence[ImageRef] = (),
) -> tuple[ActiveLearningSession, ModelCheck]:
    """Check the model, then make a project on it; nothing is written when the model is refused.

    The weights are kept in the project's ``model_files/`` as safetensors. When the model's classifier fits the
    labels it becomes the project's first model (the checkpoint ``imported-model``), so predictions show from the
    first image; otherwise the first round trains a new head.
    """
    name = check_project_name(name)
    root = Path(projects_dir) / name
    if (root / ProjectStore.DB_NAME).exists() or root.exists():
        raise StoreError(f"A project named '{name}' already exists; open it instead or choose another name.")
    prepared = prepare_model(source, labels, num_classes, images=images)
    settings = (settings or ProjectSettings()).replace(
        backbone=prepared.spec.arch if prepared.spec.source != "file" else prepared.backbone.arch,
        backbone_source=prepared.spec.source,
        weights=None,
        image_size=source.image_size,
    )
    try:
        if prepared.spec.source == "file" and prepared.weights is not None:
            stem = Path(prepared.weights.path.name).stem.split(".")[0] or "model"
            target = root / MODEL_FILES_DIR / f"{stem}.safetensors"
            kept = save_weights(prepared.weights, target, prepared.backbone.arch)
            settings = settings.replace(weights=str(kept))
        session = ActiveLearningSession.create(projects_dir, name, prepared.labels, settings)
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise
    session.model.adopt(prepared.backbone, prepared.head, prepared.labels)
    session.store.update_settings(imported_model=prepared.check.to_dict())
    return session, prepared.check


def check_weights_file(arch: str | None, weights: str, allow_torchscript: bool, scratch: Path) -> tuple[str, str]:
    """Check a weights file for the command line (`simulate --backbone ARCH --weights FILE`) by loading it once.

    Returns:
        The architecture (the file's own when `arch` is empty) and the file to load: `weights` itself, or for an
        allowed TorchScript program its weights saved as safetensors in `scratch`.

    Raises:
        AppError: the file is refused (a one-sentence reason).
    """
    found = read_weights(weights, allow_torchscript=allow_torchscript)
    path = str(weights)
    if found.format == "torchscript":
        if not arch:
            raise ModelFileError(f"'{found.path.name}' does not say which architecture it is: pass --backbone NAME.")
        path = str(save_weights(found, scratch / f"{found.path.stem}.safetensors", arch))
    backbone = load_backbone(BackboneSpec(arch=(arch or "").strip(), source="file", weights=path))
    return backbone.arch, path


def architecture_names() -> list[str]:
    """Every timm architecture, each followed by its pretrained tags, for a searchable list."""
    from lit_models.backbones import list_architectures

    return list_architectures()


def resolve_labels(labels: Sequence[str], num_classes: int | None, head: SourceHead | None) -> list[str]:
    """The project's labels: the typed ones, else the model's class names, else ``class 1`` ... ``class N``.

    Raises:
        AppError: a number of classes that disagrees with the typed labels, or nothing to name the classes by.
    """
    names = [str(x).strip() for x in labels if str(x).strip()]
    n = int(num_classes) if num_classes else None
    if names and n and n != len(names):
        raise AppError(
            f"You typed {len(names)} labels but {n} classes. Make them agree, or leave the number of classes empty."
        )
    if names:
        return names
    if head is not None and head.label_names and n in (None, head.num_classes):
        return list(head.label_names)
    count = n or (head.num_classes if head is not None else 0)
    if not count:
        raise AppError("Type the project's labels (one per line); this model does not name its classes.")
    return [f"class {i + 1}" for i in range(count)]


# ------------------------------------------------------------------------------------------------ helpers
def _read(source: ModelSource) -> WeightsFile | None:
    if not source.weights:
        if not source.arch.strip():
            raise BackboneError("Choose a model: a timm name (e.g. resnet18), an hf-hub: name, or a model file.")
        return None
    return read_weights(source.weights, allow_torchscript=source.allow_torchscript)


def _backbone_spec(source: ModelSource, weights: WeightsFile | None, tmp: Path) -> BackboneSpec:
    arch = source.arch.strip()
    if weights is None or weights.format == "head_checkpoint":
        src = source.source
        if weights is not None and not arch and weights.backbone_key:
            arch, src = _spec_from_key(weights.backbone_key)
        if not arch:
            raise ModelFileError(
                f"'{weights.path.name if weights else 'The file'}' holds only a classifier head. Choose the "
                "backbone it was trained on (e.g. EfficientNet-Lite0) as the model."
            )
        src = src or ("bundled" if arch == BUNDLED_ARCH else "hub")
        if src not in SOURCES or src == "file":
            raise BackboneError(f"Unknown model source '{src}'. Choose bundled, hub or random.")
        return BackboneSpec(arch=arch, source=src, image_size=source.image_size)
    path = str(weights.path)
    if weights.format == "torchscript":  # the backbone loader opens no programs: hand it the weights as safetensors
        if not arch:
            raise ModelFileError(f"'{weights.path.name}' does not say which architecture it is. Choose the timm name.")
        path = str(save_weights(weights, tmp / f"{weights.path.stem}.safetensors", arch))
    return BackboneSpec(arch=arch, source="file", weights=path, image_size=source.image_size)


def _spec_from_key(key: str) -> tuple[str, str | None]:
    """(arch, source) from a backbone cache key like ``tf_efficientnet_lite0-bundled-default``."""
    parts = key.split("-")
    if len(parts) >= 2 and parts[1] in ("bundled", "random", "hub"):
        return parts[0], parts[1]
    return "", None


def _head_of_checkpoint(weights: WeightsFile, backbone: LoadedBackbone) -> SourceHead:
    assert weights.head is not None
    linears = sorted(k for k in weights.head if k.endswith(".weight"))
    first, last = weights.head[linears[0]], weights.head[linears[-1]]
    if first.shape[1] != backbone.num_features:
        raise ModelFileError(
            f"'{weights.path.name}' was trained on {first.shape[1]} features, but '{backbone.arch}' gives "
            f"{backbone.num_features}. Choose the backbone it was trained on."
        )
    state = {k: v.detach().float().clone() for k, v in weights.head.items()}
    return SourceHead(state, backbone.num_features, int(last.shape[0]), weights.head_hidden, weights.label_names)


def _match_head(head: SourceHead | None, labels: list[str], note: str) -> tuple[Any, str, str]:
    """(HeadClassifier or None, "kept"/"replaced"/"new", a sentence saying what happened)."""
    n = len(labels)
    if head is None:
        why = f" ({note})" if note else ""
        return None, "new", f"The model brings no classifier to reuse{why}; a new head learns your {n} labels."
    if head.num_classes != n:
        return (
            None,
            "replaced",
            f"The model's classifier has {head.num_classes} classes but the project has {n} labels, so it was "
            "replaced by a new head (reset_classifier) that learns your labels from the first round.",
        )
    order = list(range(n))
    if head.label_names:
        theirs = [s.strip().casefold() for s in head.label_names]
        ours = [s.strip().casefold() for s in labels]
        if sorted(theirs) != sorted(ours):
            return (
                None,
                "replaced",
                f"The model's classes ({', '.join(head.label_names)}) are not your labels ({', '.join(labels)}), "
                "so its classifier was replaced by a new head that learns your labels from the first round.",
            )
        order = [theirs.index(label) for label in ours]
    module = _head_module(head, order)
    if not head.label_names:
        how = f" (its classes taken in the order of your labels: {', '.join(labels)})"
    elif order != list(range(n)):
        how = " (its classes matched to your labels by name)"
    else:
        how = ""
    return (
        module,
        "kept",
        f"The model's classifier has {n} classes, as many as your labels: its guesses show from the first image "
        f"until the first round trains on your labels{how}.",
    )


def _head_module(head: SourceHead, order: list[int]) -> Any:
    """A HeadClassifier with the source classifier's weights, its outputs in the project's label order."""
    import torch

    from lit_models.modules import HeadClassifier

    module = HeadClassifier(head.in_features, head.num_classes, hidden=head.hidden)
    state = dict(head.state)
    last = sorted(k for k in state if k.endswith(".weight"))[-1].removesuffix(".weight")
    index = torch.tensor(order)
    state[f"{last}.weight"] = state[f"{last}.weight"][index]
    state[f"{last}.bias"] = state[f"{last}.bias"][index]
    module.load_state_dict(state)
    return module.eval()


def _head_parameters(head: Any, features: int, classes: int) -> int:
    if head is not None:
        return sum(p.numel() for p in head.parameters())
    return features * classes + classes  # the new linear head


def _forward(
    check: ModelCheck, backbone: LoadedBackbone, head: Any, source_head: SourceHead | None, images: Sequence[Any]
) -> None:
    """Run one image through the model; fill the output, the guesses and the head check into `check`."""
    import torch

    from lit_models.backbones import eval_transform

    image, check.image = _first_image(images)
    x = eval_transform(backbone.data_config)(image).unsqueeze(0).contiguous(memory_format=torch.channels_last)
    started = time.perf_counter()
    with torch.no_grad():
        features = backbone.model(x).float()
        check.output_shape = tuple(features.shape)
        if head is not None:
            logits = head(features)
            check.output_shape = tuple(logits.shape)
            check.top = _top(logits, check.labels)
        elif source_head is not None and source_head.hidden == 0:
            own = torch.nn.functional.linear(features, source_head.state["net.weight"], source_head.state["net.bias"])
            names = source_head.label_names or [f"class {i + 1}" for i in range(source_head.num_classes)]
            check.own_top = _top(own, names)
        check.seconds = time.perf_counter() - started
    if head is not None and source_head is not None and source_head.hidden == 0:
        check.max_difference = _full_model_difference(backbone, source_head, x, features)


def _full_model_difference(backbone: LoadedBackbone, head: SourceHead, x: Any, features: Any) -> float | None:
    """Largest |logit difference| between the timm model with the classifier in place and Linear(pooled features).

    For timm models whose classifier is a plain linear layer after global pooling, ``forward_head(features,
    pre_logits=False)`` equals that linear layer on the pooled features, so this is ~1e-6.
    """
    import torch

    model = backbone.model
    if not hasattr(model, "reset_classifier"):
        return None
    try:
        model.reset_classifier(head.num_classes)
        classifier = model.get_classifier()
        if not isinstance(classifier, torch.nn.Linear) or classifier.in_features != head.in_features:
            return None
        with torch.no_grad():
            classifier.weight.copy_(head.state["net.weight"])
            classifier.bias.copy_(head.state["net.bias"])
            full = model.forward_head(model.forward_features(x), pre_logits=False).float()
            linear = torch.nn.functional.linear(features, head.state["net.weight"], head.state["net.bias"])
        return float((full - linear).abs().max())
    finally:
        model.reset_classifier(0)
        model.eval()


def _top(logits: Any, names: Sequence[str], k: int = 3) -> list[tuple[str, float]]:
    probs = logits.softmax(dim=1)[0]
    values, indices = probs.topk(min(k, probs.numel()))
    return [(str(names[int(i)]), float(v)) for v, i in zip(values, indices, strict=True)]


def _first_image(images: Sequence[Any]) -> tuple[Any, str]:
    """The first readable image (PIL, RGB) and its name; scikit-learn's sample photo when none is given.

    Each item is a path, or a (path, name to show) pair.
    """
    from app.core.errors import BadImageError
    from app.core.images import load_rgb

    problems = []
    for item in images:
        path, name = item if isinstance(item, tuple) else (item, Path(item).name if item else "")
        if not path:
            continue
        try:
            return load_rgb(path), name
        except (BadImageError, OSError) as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise AppError(f"Could not read the test image ({problems[0]}). Choose a JPEG or PNG image.")
    from PIL import Image
    from sklearn.datasets import load_sample_image

    return Image.fromarray(load_sample_image("china.jpg")), SAMPLE_IMAGE
