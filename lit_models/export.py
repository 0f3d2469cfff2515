"""Turning a backbone and a trained head into files other tools load: a plain timm model (safetensors +
config.json), ONNX, and Lightning-format checkpoints of the head alone or of the whole classifier."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import lightning.pytorch as pl
import timm.models
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from app.core.atomic import atomic_files, atomic_path
from app.core.errors import ModelFileError
from lit_models.backbones import LoadedBackbone
from lit_models.modules import BackboneWithHead, FineTuneClassifier, HeadClassifier
from lit_models.trainer import quiet_trainer

SAFETENSORS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_LINEAR_ONLY = (
    "Only linear heads export to plain timm (safetensors). Export ONNX instead, or retrain with a linear head "
    "(hidden size 0)."
)
_log = logging.getLogger(__name__)
ModuleT = TypeVar("ModuleT", bound=pl.LightningModule)


def build_classifier(backbone: LoadedBackbone, head: HeadClassifier, label_names: Sequence[str]) -> nn.Module:
    """An image classifier (logits out) made of a copy of the backbone and the trained head, on the CPU, in eval mode.

    A linear head becomes the classifier layer of the timm model itself (``model.get_classifier()``), so the result
    is a plain timm model of ``backbone.arch`` with ``num_classes=len(label_names)``. A head with a hidden layer gives
    a :class:`BackboneWithHead` (exports to ONNX, not to plain timm).

    Raises:
        ValueError: the number of label names differs from the head's outputs, or the head does not fit the backbone.
    """
    num_classes = int(head.hparams.num_classes)
    if len(label_names) != num_classes:
        raise ValueError(f"Got {len(label_names)} label names for a head with {num_classes} outputs.")
    if int(head.hparams.in_features) != backbone.num_features:
        raise ValueError(
            f"The head expects {head.hparams.in_features} features but the backbone gives {backbone.num_features}."
        )
    model = copy.deepcopy(backbone.model).cpu().eval().to(memory_format=torch.contiguous_format)
    head = copy.deepcopy(head).cpu().eval()
    if int(head.hparams.hidden) > 0 or not hasattr(model, "reset_classifier"):
        return BackboneWithHead(model, head, label_names).eval()
    model.reset_classifier(num_classes)
    classifier = model.get_classifier()
    if not isinstance(classifier, nn.Linear) or classifier.in_features != backbone.num_features:
        model.reset_classifier(0)  # a classifier this module cannot fill: keep the backbone, add the head
        return BackboneWithHead(model, head, label_names).eval()
    weight, bias = head.linear_weights()
    with torch.no_grad():
        classifier.weight.copy_(weight)
        classifier.bias.copy_(bias)
    model.pretrained_cfg = {**model.pretrained_cfg, "num_classes": num_classes, "label_names": list(label_names)}
    model.calibration_temperature = float(getattr(head, "temperature", 1.0))  # already divided into the weights
    return model.eval()


def to_timm_model(
    backbone: LoadedBackbone, head: HeadClassifier, label_names: Sequence[str] | None = None
) -> nn.Module:
    """:func:`build_classifier` with default label names ``class_0``, ``class_1``, ... when none are given."""
    names = list(label_names) if label_names is not None else [f"class_{i}" for i in range(head.hparams.num_classes)]
    return build_classifier(backbone, head, names)


def save_safetensors(
    model: nn.Module,
    out_dir: str | Path,
    arch: str,
    label_names: Sequence[str],
    data_config: dict[str, Any],
) -> Path:
    """Write ``model.safetensors`` and a timm ``config.json`` (architecture, classes, label names, preprocessing, and
    the calibration temperature already divided into the classifier's weights, when the model came from
    :func:`build_classifier`).

    The folder loads offline with ``timm.create_model("local-dir:<out_dir>", pretrained=True)``, or with
    ``timm.create_model(arch, num_classes=len(label_names))`` plus ``safetensors.torch.load_file`` and
    ``load_state_dict``. Both files are written in full in a temporary folder beside ``out_dir`` before either
    replaces its previous version, so an interrupted export never leaves a half-written file.

    Returns:
        The folder (``out_dir``).

    Raises:
        ModelFileError: the model is not a plain timm classifier (a head with a hidden layer).
    """
    if isinstance(model, BackboneWithHead) or not hasattr(model, "pretrained_cfg"):
        raise ModelFileError(_LINEAR_ONLY)
    if int(getattr(model, "num_classes", -1)) != len(label_names):
        raise ValueError(f"The model has {getattr(model, 'num_classes', '?')} outputs but {len(label_names)} labels.")
    out = Path(out_dir)
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    preprocessing = {k: data_config[k] for k in keys if k in data_config}
    model_config = {"label_names": list(label_names), "architecture": arch}
    if hasattr(model, "calibration_temperature"):  # the probabilities are calibrated: the logits are already divided
        model_config["calibration_temperature"] = float(model.calibration_temperature)
    with atomic_files(out) as tmp:
        timm.models.save_for_hf(
            model.cpu().eval(), str(tmp), model_config=model_config, safe_serialization=True, data_config=preprocessing
        )
    return out


def onnx_metadata(label_names: Sequence[str], data_config: Mapping[str, Any]) -> dict[str, str]:
    """What an ONNX file needs to be used without this app, as ONNX metadata (every value a JSON text).

    ``label_names`` (the class of each logit, in order), ``input_size`` ([C, H, W]), ``mean`` and ``std`` (per
    channel, for RGB values scaled to 0..1), and ``interpolation`` and ``crop_pct`` (timm's resize and center crop)
    when the data config has them. ONNX Runtime reads them with ``get_modelmeta().custom_metadata_map``.
    """
    entries: dict[str, Any] = {"label_names": list(label_names), "input_size": list(data_config["input_size"])}
    entries |= {key: data_config[key] for key in ("mean", "std", "interpolation", "crop_pct") if key in data_config}
    return {key: json.dumps(value) for key, value in entries.items()}  # tuples become JSON lists


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_size: Sequence[int],
    *,
    opset: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write an ONNX file (one file, weights inside) with input ``input`` (B, C, H, W) and output ``logits``.

    The batch axis is dynamic. Uses torch's default (dynamo) exporter and falls back to the TorchScript exporter if
    that fails. The file is replaced only once complete.

    Args:
        model: any classifier, e.g. from :func:`build_classifier`.
        path: output file (``.onnx``).
        input_size: (C, H, W), e.g. ``data_config["input_size"]``.
        opset: ONNX opset; None lets the exporter choose (18+ for dynamo, which onnxruntime >= 1.16 runs).
        metadata: entries for the file's metadata (e.g. :func:`onnx_metadata`); a key already there is replaced.
    """
    path = Path(path)
    model = model.cpu().eval()
    sample = torch.randn(2, *[int(s) for s in input_size])
    with atomic_path(path) as tmp:
        _write_onnx(model, tmp, sample, opset)
        if metadata:
            _add_onnx_metadata(tmp, metadata)
    return path


def _add_onnx_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    kept = [(entry.key, entry.value) for entry in proto.metadata_props if entry.key not in metadata]
    del proto.metadata_props[:]
    for key, value in [*kept, *metadata.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(proto, str(path))


def _write_onnx(model: nn.Module, path: Path, sample: torch.Tensor, opset: int | None) -> None:
    """Export through ``LightningModule.to_onnx`` (a plain classifier is wrapped in a :class:`FineTuneClassifier`,
    which adds nothing to its forward); ``to_onnx`` passes the options on to ``torch.onnx.export``."""
    module = model if isinstance(model, pl.LightningModule) else FineTuneClassifier(model).eval()
    names = {"input_names": ["input"], "output_names": ["logits"]}
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            module.to_onnx(
                path,
                (sample,),
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
                opset_version=opset,
                verbose=False,
                **names,
            )
    except Exception as e:  # the dynamo exporter rejects some models; the legacy one usually copes
        _log.warning("Dynamo ONNX export failed (%s); using the TorchScript exporter.", e)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module.to_onnx(
                path,
                (sample,),
                dynamo=False,
                opset_version=opset or 17,
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                **names,
            )


def save_head_checkpoint(head: HeadClassifier, path: str | Path) -> Path:
    """Save a head as a Lightning checkpoint (weights and primitive hyperparameters; no optimizer state)."""
    return _save_lightning_checkpoint(head, path)


class _SaveToPath(TorchCheckpointIO):
    """Lightning's checkpoint file, written by one ``torch.save`` straight to the path it is given.

    Lightning's own ``TorchCheckpointIO`` serializes to memory and copies the bytes through an fsspec transaction;
    here the path is already the temporary sibling of `atomic_path` (flushed and renamed into place once complete),
    so that second copy would only cost memory, and writing the file with ``torch.save`` keeps one code path for
    every checkpoint this app writes.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        torch.save(checkpoint, path)


def _save_lightning_checkpoint(module: pl.LightningModule, path: str | Path) -> Path:
    """Write `module` with ``Trainer.save_checkpoint`` (weights, loop state and hyperparameters; no optimizer).

    The module was trained by a Trainer that is gone (a head is trained, then its standardizer is folded in, and
    saved after the round is evaluated), so a fresh quiet CPU Trainer is connected to it; Lightning builds the
    checkpoint dict. It is written beside `path` and renamed into place: a kill mid-save keeps the previous file.
    """
    path = Path(path)
    trainer = quiet_trainer(accelerator="cpu", plugins=[_SaveToPath()])
    trainer.strategy.connect(module)
    with atomic_path(path) as tmp:
        trainer.save_checkpoint(tmp, weights_only=True)
    return path


def save_classifier_checkpoint(
    classifier: nn.Module, path: str | Path, backbone: LoadedBackbone, label_names: Sequence[str]
) -> Path:
    """Save a whole classifier (from :func:`build_classifier`) as a :class:`FineTuneClassifier` checkpoint.

    It loads with :func:`load_classifier_checkpoint` (or ``FineTuneClassifier.load_from_checkpoint(path)``) and can
    resume training in fine-tune mode; architecture, classes, label names and preprocessing travel with it.
    """
    separate = isinstance(classifier, BackboneWithHead)
    hidden = int(classifier.head.hparams.hidden) if separate else 0
    module = FineTuneClassifier(
        classifier,
        arch=backbone.arch,
        num_classes=len(label_names),
        hidden=hidden,
        label_names=list(label_names),
        data_config=dict(backbone.data_config),
    )
    return _save_lightning_checkpoint(module, path)


def load_classifier_checkpoint(path: str | Path) -> FineTuneClassifier:
    """Load a checkpoint saved by :func:`save_classifier_checkpoint` or by a fine-tune run (weights-only, safe).

    Raises:
        ModelFileError: the file is missing, damaged, or not a classifier checkpoint of this app.
    """
    return _load_lightning_checkpoint(FineTuneClassifier, path, "classifier")


def load_head_checkpoint(path: str | Path) -> HeadClassifier:
    """Load a head saved by :func:`save_head_checkpoint` or ``trainer.save_checkpoint`` (weights-only, safe).

    Raises:
        ModelFileError: the file is missing, damaged, or not a head checkpoint of this app.
    """
    return _load_lightning_checkpoint(HeadClassifier, path, "head")


def _load_lightning_checkpoint(cls: type[ModuleT], path: str | Path, what: str) -> ModuleT:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"The checkpoint '{path}' does not exist.")
    try:
        module = cls.load_from_checkpoint(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch/Lightning raise many types for damaged or foreign files
        raise ModelFileError(
            f"'{path.name}' is not a readable {what} checkpoint of this app (damaged, or saved by another program)."
        ) from e
    return module.eval()
