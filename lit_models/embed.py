"""Embedding images with a frozen backbone through Lightning's ``predict`` (batched, device-aware)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lit_models.backbones import LoadedBackbone, eval_transform
from lit_models.callbacks import ProgressFn
from lit_models.data import image_dataloader
from lit_models.modules import EmbeddingExtractor
from lit_models.trainer import quiet_trainer


def embed_paths(
    backbone: LoadedBackbone,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    accelerator: str = "auto",
) -> np.ndarray:
    """Pooled backbone features of image files, in the order given.

    Args:
        backbone: the feature extractor and its data config (input size, normalization).
        paths: image files; decoded with ``app.core.images.load_rgb``.
        batch_size: images per forward pass.
        num_workers: decoding processes (``data.default_num_workers()`` is a good value outside tests).
        progress: called with (fraction, message) after every batch.
        stop_event: set it from another thread to stop; the call then raises ``callbacks.Cancelled``.
        accelerator: Lightning accelerator; ``"auto"`` uses a GPU when present.

    Returns:
        float32 array of shape (len(paths), backbone.num_features).
    """
    if len(paths) == 0:
        return np.zeros((0, backbone.num_features), dtype=np.float32)
    loader = image_dataloader(
        paths, eval_transform(backbone.data_config), batch_size=batch_size, num_workers=num_workers
    )
    backbone.model.eval()
    device = next(backbone.model.parameters()).device
    trainer = quiet_trainer(progress=progress, stop_event=stop_event, accelerator=accelerator, inference_mode=True)
    try:
        with torch.inference_mode():
            batches = trainer.predict(EmbeddingExtractor(backbone.model), dataloaders=loader)
    finally:
        backbone.model.to(device)  # Lightning may have moved it to a GPU: keep the backbone where it was
    features = torch.cat([b.detach().to("cpu", torch.float32) for b in batches or []])
    return features.numpy()
