"""Reading model files safely: recognise the format, refuse code, unwrap checkpoints, say what is inside.

Nothing here unpickles with code execution. A torch file's pickles are first scanned without running them (so a
hostile file is named for what it would call), then opened with ``torch.load(weights_only=True)``; safetensors
files hold only tensors; a TorchScript program is opened only when the caller opts in, because opening one runs
code from it.

Formats: ``.safetensors``; ``.pth``/``.pt``/``.bin`` state dicts, plain or nested under ``state_dict``/``model``,
with ``module.``/``model.``/``_orig_mod.`` prefixes (DDP, Lightning, ``torch.compile``); Lightning checkpoints,
including this app's head and classifier checkpoints; a timm folder (``model.safetensors`` + ``config.json``, as
this app exports it or as the Hugging Face hub stores it), also zipped; TorchScript (opt-in).
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.core.atomic import atomic_path
from app.core.errors import ModelFileError
from lit_models.pickle_scan import objects_message, refuse_unsafe_globals, unsafe_pickle_globals, unsafe_zip_globals
from lit_models.state_dicts import strip_prefixes

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".zip")
FORMATS = {
    "safetensors": "safetensors state dict",
    "pytorch": "PyTorch state dict",
    "lightning": "Lightning checkpoint",
    "head_checkpoint": "head checkpoint of this app (a classifier head without its backbone)",
    "classifier_checkpoint": "classifier checkpoint of this app",
    "timm_folder": "timm model folder (model.safetensors + config.json)",
    "torchscript": "TorchScript program",
}
TORCHSCRIPT_REFUSED = (
    "'{name}' is a TorchScript program, not a plain weights file: opening it runs code stored in it. "
    "Allow TorchScript only if you trust where the file comes from, or use a .safetensors file."
)
_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "module", "net", "network", "ema")
_SAFETENSORS_NAMES = ("model.safetensors", "pytorch_model.safetensors")
_BIN_NAMES = ("pytorch_model.bin",)


@dataclass
class WeightsFile:
    """What a model file holds, read safely.

    Attributes:
        path: the file (or folder) read.
        format: a key of :data:`FORMATS`.
        tensors: the model's weights by name, wrappers and prefixes removed (empty for a head checkpoint).
        arch: the timm architecture the file names (timm folders, classifier checkpoints), else None.
        label_names: class names the file carries, else None.
        num_classes: classes the file's metadata states, else None.
        data_config: preprocessing the file carries (input size, mean, std, ...), else None.
        head: a separate classifier head as a ``HeadClassifier`` state dict (``net.*``), from this app's
            checkpoints; None when the classifier (if any) is part of ``tensors``.
        head_hidden: hidden width of ``head`` (0 = linear).
        backbone_key: for a head checkpoint, the cache key of the backbone it was trained on (when known).
        unwrapped: how the weights were found, e.g. "nested under 'state_dict'", "prefix 'module.' removed".
    """

    path: Path
    format: str
    tensors: dict[str, torch.Tensor]
    arch: str | None = None
    label_names: list[str] | None = None
    num_classes: int | None = None
    data_config: dict[str, Any] | None = None
    head: dict[str, torch.Tensor] | None = None
    head_hidden: int = 0
    backbone_key: str | None = None
    unwrapped: list[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        """The format in words, with how the weights were found."""
        text = FORMATS.get(self.format, self.format)
        return text + (f" ({'; '.join(self.unwrapped)})" if self.unwrapped else "")

    @property
    def size_bytes(self) -> int:
        if self.path.is_dir():
            return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        return self.path.stat().st_size


def read_weights(path: str | Path, *, allow_torchscript: bool = False) -> WeightsFile:
    """Read a model file, folder or zip without running code from it.

    Raises:
        ModelFileError: missing, damaged or truncated; a format this app does not read (ONNX, Keras, ...); a pickle
            that would run code or build Python objects; TorchScript without ``allow_torchscript``; no tensors.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"The model file '{path}' does not exist. Choose an existing file.")
    if path.is_dir():
        return _read_folder(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as e:
        raise ModelFileError(f"Could not read '{path.name}' ({e.strerror}). Check that the file is readable.") from e
    if not head:
        raise ModelFileError(f"'{path.name}' is empty. Copy or download the model file again.")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _read_zip(path, allow_torchscript)
    if _looks_like_safetensors(head):
        tensors, meta = _load_safetensors(path)
        wf = WeightsFile(path, "safetensors", tensors, arch=meta.get("architecture") or None)
        if meta.get("label_names"):
            wf.label_names = _names(json.loads(meta["label_names"]))
        return _finish(wf)
    if head[:1] == b"\x80":  # a pickle: torch's legacy format, or a bare pickle
        with open(path, "rb") as fh:
            unsafe = unsafe_pickle_globals([fh], count=5)  # torch's legacy format writes five pickles before the data
        return _read_torch(path, unsafe)
    other = _other_format(path, head)
    if other:
        raise ModelFileError(other)
    if path.suffix.lower() == ".safetensors":
        raise ModelFileError(_damaged(path.name, "safetensors"))
    raise ModelFileError(
        f"'{path.name}' is not a weights file this app can read (damaged, or another format). "
        "Use a .safetensors file, a PyTorch state dict (.pth, .pt, .bin), a checkpoint (.ckpt) or a timm model folder."
    )


def save_weights(wf: WeightsFile, out: str | Path, arch: str | None = None) -> Path:
    """Write the backbone tensors (and a plain classifier) as safetensors, with architecture and labels as metadata.

    Used to keep a project's model as a file that opens without any code (TorchScript and pickles included).
    """
    from safetensors.torch import save_file

    out = Path(out)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in wf.tensors.items()}  # clone: no shared storage
    meta = {"format": "pt", "source": wf.path.name}
    if arch or wf.arch:
        meta["architecture"] = str(arch or wf.arch)
    if wf.label_names:
        meta["label_names"] = json.dumps(wf.label_names)
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return out


# ------------------------------------------------------------------------------------------------ formats
def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return 2 <= size < 100_000_000 and head[8:9] == b"{"


def _other_format(path: Path, head: bytes) -> str | None:
    """A sentence naming a known format this app does not read, or None."""
    name = path.name
    looks_onnx = len(head) > 3 and head[0] == 0x08 and 1 <= head[1] <= 15 and head[2] in (0x12, 0x1A, 0x3A, 0x42)
    if path.suffix.lower() == ".onnx" or looks_onnx:
        return (
            f"'{name}' is an ONNX model, which cannot be loaded back into PyTorch. "
            "Use the PyTorch weights it was exported from (.safetensors, .pth, .pt, .bin or .ckpt)."
        )
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return f"'{name}' is a Keras/HDF5 file. This app reads PyTorch models: use a .safetensors or .pth file."
    if head.startswith(b"GGUF"):
        return f"'{name}' is a GGUF file (llama.cpp). This app reads PyTorch image models: use .safetensors or .pth."
    if head[4:8] == b"TFL3":
        return f"'{name}' is a TensorFlow Lite model. This app reads PyTorch models: use a .safetensors or .pth file."
    if head.startswith(b"\x93NUMPY"):
        return f"'{name}' is a NumPy array file, not a model. Use a .safetensors or .pth state dict."
    return None


def _damaged(name: str, kind: str) -> str:
    return f"'{name}' is not a readable {kind} file: it is damaged or incomplete. Copy or download it again."


def _load_safetensors(path: Path, data: bytes | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file (memory-mapped), or of its bytes (from a zip)."""
    from safetensors.torch import load, load_file

    try:
        if data is None:
            with open(path, "rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(size))
            tensors = load_file(str(path), device="cpu")
        else:
            size = int.from_bytes(data[:8], "little")
            header = json.loads(data[8 : 8 + size])
            tensors = load(data)
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise ModelFileError(_damaged(path.name, "safetensors")) from e
    if not tensors:
        raise ModelFileError(f"'{path.name}' contains no weight tensors.")
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return tensors, {str(k): str(v) for k, v in (meta or {}).items()}


def _read_folder(path: Path, files: Mapping[str, Any] | None = None) -> WeightsFile:
    """A timm folder: ``config.json`` beside ``model.safetensors`` (or ``pytorch_model.bin``)."""
    if files is None:
        files = {f.name: f.read_bytes for f in path.iterdir() if f.is_file()}
    weights = next((n for n in (*_SAFETENSORS_NAMES, *_BIN_NAMES) if n in files), None)
    if weights is None:
        found = [n for n in files if n.endswith(tuple(WEIGHT_SUFFIXES))]
        if len(found) == 1 and isinstance(path, Path) and path.is_dir():
            return read_weights(path / found[0])
        raise ModelFileError(
            f"'{path.name}' has no model.safetensors (or pytorch_model.bin) inside. "
            "Choose the weights file itself, or a folder exported by this app or downloaded from the hub."
        )
    config: dict[str, Any] = {}
    if "config.json" in files:
        try:
            config = json.loads(files["config.json"]())
        except (ValueError, UnicodeDecodeError) as e:
            raise ModelFileError(f"The config.json in '{path.name}' is not valid JSON. Export the model again.") from e
    if weights.endswith(".safetensors"):
        inside = path / weights if path.is_dir() else None
        tensors, meta = _load_safetensors(inside) if inside else _load_safetensors(path, files[weights]())
    else:
        data = files[weights]()
        wf = _read_torch_bytes(path, data)
        tensors, meta = wf.tensors, {}
    wf = WeightsFile(path, "timm_folder", tensors)
    wf.arch = config.get("architecture") or meta.get("architecture") or None
    names = config.get("label_names") or (config.get("pretrained_cfg") or {}).get("label_names")
    wf.label_names = _names(names) if names else None
    classes = config.get("num_classes")
    wf.num_classes = int(classes) if isinstance(classes, int) and classes > 0 else None
    cfg = config.get("pretrained_cfg") or {}
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    wf.data_config = {k: tuple(cfg[k]) if isinstance(cfg[k], list) else cfg[k] for k in keys if k in cfg} or None
    return _finish(wf)


def _read_zip(path: Path, allow_torchscript: bool) -> WeightsFile:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            base = {n.rsplit("/", 1)[-1]: n for n in names if not n.endswith("/")}
            if any(n in base for n in (*_SAFETENSORS_NAMES, *_BIN_NAMES)):  # a zipped timm folder
                files = {short: (lambda full=full: zf.read(full)) for short, full in base.items()}
                return _read_folder(path, files)
            torchscript = any("/code/" in n or n.endswith("/constants.pkl") for n in names)
            pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
            if torchscript:
                if not allow_torchscript:
                    raise ModelFileError(TORCHSCRIPT_REFUSED.format(name=path.name))
                return _read_torchscript(path)
            if not pickles:
                raise ModelFileError(
                    f"'{path.name}' is a zip archive without model weights inside. Choose the weights file itself, "
                    "or a zip of a folder exported by this app."
                )
            refuse_unsafe_globals(path.name, unsafe_zip_globals(path, lambda: zf.read(pickles[0])))
    except zipfile.BadZipFile as e:
        raise ModelFileError(_damaged(path.name, "PyTorch")) from e
    return _read_torch(path, set())


def _read_torchscript(path: Path) -> WeightsFile:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; its files are still around
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # torch raises RuntimeError for damaged archives
        raise ModelFileError(_damaged(path.name, "TorchScript")) from e
    tensors = {k: v.detach().clone() for k, v in module.state_dict().items()}
    return _finish(WeightsFile(path, "torchscript", tensors))


def _read_torch(path: Path, unsafe: set[str]) -> WeightsFile:
    refuse_unsafe_globals(path.name, unsafe)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelFileError(objects_message(path.name, [])) from e
    except Exception as e:  # torch raises RuntimeError/EOFError/... on damaged files
        raise ModelFileError(_damaged(path.name, "PyTorch")) from e
    return _unwrap(path, obj)


def _read_torch_bytes(path: Path, data: bytes) -> WeightsFile:
    if data.startswith(b"PK"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            pickles = [n for n in zf.namelist() if n.endswith("/data.pkl")]
            if pickles:
                unsafe = unsafe_zip_globals(io.BytesIO(data), lambda: zf.read(pickles[0]))
                refuse_unsafe_globals(path.name, unsafe)
    else:
        refuse_unsafe_globals(path.name, unsafe_pickle_globals([io.BytesIO(data)], count=5))
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelFileError(objects_message(path.name, [])) from e
    except Exception as e:  # damaged
        raise ModelFileError(_damaged(path.name, "PyTorch")) from e
    return _unwrap(path, obj)


def _unwrap(path: Path, obj: Any) -> WeightsFile:
    """Find the weights in a loaded torch object: a state dict, a nested one, or one of this app's checkpoints."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        hp = obj.get("hyper_parameters")
        if isinstance(hp, Mapping):
            own = _own_checkpoint(path, dict(obj["state_dict"]), dict(hp))
            if own is not None:
                return own
    lightning = path.suffix.lower() == ".ckpt" or (isinstance(obj, Mapping) and "pytorch-lightning_version" in obj)
    notes = []
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(torch.is_tensor(v) for v in obj.values()):
            key = next((k for k in _NESTED_KEYS if isinstance(obj.get(k), Mapping)), None)
            if key is None:
                break
            obj = obj[key]
            notes.append(f"nested under '{key}'")
    if not isinstance(obj, Mapping):
        raise ModelFileError(
            f"'{path.name}' does not contain a state dict (a mapping of names to tensors). "
            "Save one with torch.save(model.state_dict(), path)."
        )
    tensors = {str(k): v for k, v in obj.items() if torch.is_tensor(v)}
    wf = WeightsFile(path, "lightning" if lightning else "pytorch", tensors, unwrapped=notes)
    return _finish(wf)


def _own_checkpoint(path: Path, state: dict[str, Any], hp: dict[str, Any]) -> WeightsFile | None:
    """This app's head checkpoint (``HeadClassifier``) or classifier checkpoint (``FineTuneClassifier``)."""
    state = {str(k): v for k, v in state.items() if torch.is_tensor(v)}
    if "in_features" in hp and state and all(k.startswith("net.") for k in state):
        meta = _sidecar(path)
        wf = WeightsFile(path, "head_checkpoint", {}, head=state, head_hidden=int(hp.get("hidden") or 0))
        wf.num_classes = int(hp["num_classes"])
        wf.label_names = _names(meta.get("label_names")) if meta.get("label_names") else None
        wf.backbone_key = meta.get("backbone")
        return wf
    if hp.get("arch") and "separate_head" in hp and state and all(k.startswith("model.") for k in state):
        tensors = {k[len("model.") :]: v for k, v in state.items()}
        wf = WeightsFile(path, "classifier_checkpoint", tensors, arch=str(hp["arch"]))
        if all(k.startswith(("backbone.", "head.")) for k in tensors):  # BackboneWithHead: split the two
            wf.tensors = {k[len("backbone.") :]: v for k, v in tensors.items() if k.startswith("backbone.")}
            wf.head = {k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")}
            wf.head_hidden = int(hp.get("hidden") or 0)
        wf.num_classes = int(hp["num_classes"]) if hp.get("num_classes") else None
        wf.label_names = _names(hp["label_names"]) if hp.get("label_names") else None
        wf.data_config = dict(hp["data_config"]) if isinstance(hp.get("data_config"), Mapping) else None
        return _finish(wf, strip=False)
    return None


def _sidecar(path: Path) -> dict[str, Any]:
    meta = path.with_suffix(".json")
    try:
        return dict(json.loads(meta.read_text(encoding="utf-8"))) if meta.is_file() else {}
    except (OSError, ValueError):
        return {}


def _names(values: Any) -> list[str]:
    if isinstance(values, Mapping):  # {"0": "cat", ...} as some configs store id2label
        values = [values[k] for k in sorted(values, key=lambda k: int(k) if str(k).isdigit() else str(k))]
    return [str(v) for v in values]


def _finish(wf: WeightsFile, *, strip: bool = True) -> WeightsFile:
    if strip:
        wf.tensors, removed = strip_prefixes(wf.tensors)
        wf.unwrapped += [f"prefix '{p}' removed" for p in removed]
    if not wf.tensors and wf.head is None:
        raise ModelFileError(f"'{wf.path.name}' contains no weight tensors.")
    return wf
