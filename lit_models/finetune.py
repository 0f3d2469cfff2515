"""Fine-tune mode: train the whole classifier (backbone and head) on labeled images with timm's augmentation, then
split it back into a feature extractor and a head, so embedding, scoring and exports work as in fast mode.

Meant for GPU users; it runs on a CPU too, only much more slowly.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.core.atomic import atomic_path
from app.core.errors import ModelFileError
from app.core.progress import ProgressFn
from lit_models.backbones import LoadedBackbone, eval_transform, train_transform
from lit_models.data import ImageDataModule
from lit_models.export import build_classifier
from lit_models.modules import BackboneWithHead, FineTuneClassifier, HeadClassifier
from lit_models.train import balanced_class_weights
from lit_models.trainer import Compute, quiet_trainer

DEFAULT_EPOCHS = 3
DEFAULT_LR = 1e-4
MIN_IMAGES = 2  # batch norm needs at least two images in a training batch


def has_gpu() -> bool:
    """Whether fine-tuning can run on a GPU here."""
    return torch.cuda.is_available()


def finetune(
    backbone: LoadedBackbone,
    head: HeadClassifier,
    label_names: Sequence[str],
    paths: Sequence[str | Path],
    labels: Sequence[int],
    *,
    max_epochs: int = DEFAULT_EPOCHS,
    batch_size: int = 32,
    lr: float = DEFAULT_LR,
    weight_decay: float = 0.05,
    balanced: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    compute: Compute = Compute(),
) -> tuple[LoadedBackbone, HeadClassifier]:
    """Fine-tune backbone and head together on labeled images; the inputs are left unchanged.

    The classifier starts from ``backbone`` and ``head`` (train the head on frozen embeddings first: a linear probe
    is a much better start than a random classifier) and trains with AdamW, a cosine schedule, label smoothing and
    timm's training augmentation, with a fresh quiet Trainer. On a GPU it uses mixed precision unless ``compute``
    names a precision.

    Args:
        backbone: the starting feature extractor (not modified: the classifier holds a copy).
        head: the starting head for the backbone's embeddings (not modified).
        label_names: one name per class of the head.
        paths: labeled training images.
        labels: class index per image.
        max_epochs: passes over the images.
        batch_size: images per training step (an incomplete last batch is left out).
        lr: peak learning rate (low: the backbone is pretrained).
        weight_decay: AdamW weight decay.
        balanced: weight the loss so every present class counts equally.
        seed: seed of the shuffling, the augmentation and dropout.
        num_workers: decoding processes; 0 decodes in the calling thread.
        progress: called with (fraction, message) after every training step (one process only).
        stop_event: set it from another thread to stop after the current step (the partly tuned model is returned;
            one process only).
        compute: accelerator, processes (data-parallel; the tuned weights of rank 0 come back) and precision.

    Returns:
        The tuned feature extractor (same architecture and data config, eval mode, channels-last, on the CPU) and a
        head of the same shape as ``head`` holding the tuned classifier weights.

    Raises:
        ValueError: fewer than two images, or not one label per image.
    """
    if len(paths) != len(labels):
        raise ValueError(f"Got {len(paths)} images but {len(labels)} labels.")
    if len(paths) < MIN_IMAGES:
        raise ValueError(f"Fine-tuning needs at least {MIN_IMAGES} labeled images; got {len(paths)}.")
    y = np.asarray(labels, dtype=np.int64)
    weights = balanced_class_weights(y, len(label_names)) if balanced else None
    module = _classifier_module(backbone, head, label_names, lr, weight_decay, max_epochs, weights)
    data = ImageDataModule(
        train_transform=train_transform(backbone.data_config),
        eval_transform=eval_transform(backbone.data_config),
        train_paths=[str(p) for p in paths],
        train_labels=y.tolist(),
        batch_size=min(batch_size, len(paths)),
        num_workers=num_workers,
        seed=seed,
        drop_last=True,
    )
    # spawned processes get a pickled Trainer: no thread events or closures
    hooks = {} if compute.distributed else {"progress": progress, "stop_event": stop_event}
    trainer = quiet_trainer(compute=_with_default_precision(compute), max_epochs=max_epochs, **hooks)
    with torch.random.fork_rng(devices=[]):  # seeded augmentation and dropout; the caller's RNG is left alone
        torch.manual_seed(seed)
        trainer.fit(module, datamodule=data)
    return split_classifier(module.model.cpu().eval(), backbone, head)


def _with_default_precision(compute: Compute) -> Compute:
    """``compute`` with a precision: as it says, else 16-bit mixed on a GPU and 32-bit on a CPU."""
    if compute.precision is not None:
        return compute
    gpu = compute.accelerator in ("auto", "gpu", "cuda") and has_gpu()
    return replace(compute, precision="16-mixed" if gpu else "32-true")


def _classifier_module(
    backbone: LoadedBackbone,
    head: HeadClassifier,
    label_names: Sequence[str],
    lr: float,
    weight_decay: float,
    max_epochs: int,
    class_weights: list[float] | None,
) -> FineTuneClassifier:
    """The LightningModule that fine-tunes a copy of backbone + head, channels-last."""
    module = FineTuneClassifier(
        build_classifier(backbone, head, label_names),
        arch=backbone.arch,
        num_classes=len(label_names),
        hidden=int(head.hparams.hidden),
        label_names=list(label_names),
        data_config=dict(backbone.data_config),
        lr=lr,
        weight_decay=weight_decay,
        max_epochs=max_epochs,
        class_weights=class_weights,
    )
    module.model.to(memory_format=torch.channels_last)  # faster convolutions on a CPU, harmless on a GPU
    return module


def split_classifier(
    classifier: nn.Module, backbone: LoadedBackbone, head: HeadClassifier
) -> tuple[LoadedBackbone, HeadClassifier]:
    """Split a classifier from :func:`lit_models.export.build_classifier` into a feature extractor and a head.

    The classifier is taken apart (not copied): pass a copy to keep it whole.

    Args:
        classifier: a timm model with a linear classifier, or a :class:`BackboneWithHead`.
        backbone: the backbone it was built from (architecture, data config and report are carried over).
        head: the head it was built from (its hyperparameters are carried over).

    Returns:
        The feature extractor (``num_classes=0``, eval mode, channels-last) and the head with the classifier's weights.
    """
    if isinstance(classifier, BackboneWithHead):
        features, tuned_head = classifier.backbone, classifier.head
    else:
        linear = classifier.get_classifier()
        if not isinstance(linear, nn.Linear):
            raise ValueError("The classifier has no linear classifier layer to split off.")
        tuned_head = copy.deepcopy(head).cpu()
        with torch.no_grad():
            tuned_head.net.weight.copy_(linear.weight)
            tuned_head.net.bias.copy_(linear.bias)
        classifier.reset_classifier(0)
        features = classifier
        if hasattr(backbone.model, "pretrained_cfg"):  # build_classifier put the class names there
            features.pretrained_cfg = dict(backbone.model.pretrained_cfg)
    features = features.cpu().eval().to(memory_format=torch.channels_last)
    tuned = LoadedBackbone(
        model=features,
        arch=backbone.arch,
        num_features=backbone.num_features,
        data_config=dict(backbone.data_config),
        report={**backbone.report, "finetuned": True},
    )
    return tuned, tuned_head.cpu().eval()


def save_backbone_weights(backbone: LoadedBackbone, path: str | Path) -> Path:
    """Write the feature extractor's weights as a safetensors file (atomically: a crash leaves the old file)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}
    metadata = {"arch": backbone.arch, "num_features": str(backbone.num_features), "format": "pt"}
    metadata["data_config"] = json.dumps(backbone.data_config, default=list)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_backbone_weights(base: LoadedBackbone, path: str | Path) -> LoadedBackbone:
    """A copy of ``base`` with the weights of a file from :func:`save_backbone_weights`.

    Raises:
        ModelFileError: the file is missing, damaged, or holds weights of another architecture.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"The fine-tuned weights file '{path}' does not exist.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata: dict[str, Any] = fh.metadata() or {}
        tensors = load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own error types
        raise ModelFileError(f"'{path.name}' is not a readable safetensors file (damaged or incomplete?).") from e
    if metadata.get("arch", base.arch) != base.arch:
        raise ModelFileError(f"'{path.name}' holds a fine-tuned '{metadata['arch']}', not a '{base.arch}'.")
    model = copy.deepcopy(base.model).cpu()
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ModelFileError(f"'{path.name}' does not fit the '{base.arch}' backbone of this project.") from e
    model.eval().to(memory_format=torch.channels_last)
    return LoadedBackbone(
        model=model,
        arch=base.arch,
        num_features=base.num_features,
        data_config=dict(base.data_config),
        report={**base.report, "finetuned": True, "finetuned_weights": str(path)},
    )
