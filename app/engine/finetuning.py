"""Fine-tune mode's learner: a linear probe on the frozen embeddings, then the whole model trained on the labeled
images, then every image re-embedded by the tuned backbone so scoring and selection use its features.

Each round starts again from the pretrained backbone (trained on all labels so far): the model depends on the
labels, not on the order they came in, and the first labels are not trained on again and again.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from app.core.progress import ProgressFn, no_progress
from app.engine import gpu
from app.engine.embedding_cache import EmbeddingCache
from app.engine.learners import FitData, Fitted, embed_missing, stopped
from app.engine.pool_scoring import pool_probs
from lit_models.backbones import LoadedBackbone
from lit_models.callbacks import Cancelled
from lit_models.finetune import MIN_IMAGES, finetune, has_gpu
from lit_models.train import train_head
from lit_models.trainer import Compute

REEMBED_MESSAGE = "Re-embedding every image with the fine-tuned model"


def finetune_message() -> str:
    """What the progress line says while the whole model trains (on a CPU: that it is slow)."""
    if has_gpu():
        return "Fine-tuning the whole model on the GPU"
    return "Fine-tuning the whole model (slow on a CPU; a GPU is much faster)"


def can_finetune(n_train: int) -> bool:
    """Whether there are enough training images to fine-tune (else the round trains the head only)."""
    return n_train >= MIN_IMAGES


def _with_epoch(message: str, trainer_message: str) -> str:
    """'<message>, epoch 2/3' from the trainer's 'Training: epoch 2/3'."""
    epoch = trainer_message.partition("Training: ")[2]
    return f"{message}, {epoch}" if epoch else message


@dataclass(frozen=True)
class FineTuneLearner:
    """One fine-tune round's model: probe, fine-tune, re-embed every image, score with the tuned head.

    Attributes:
        backbone: the frozen (pretrained) backbone, the starting point; it is not changed.
        paths: the image file of every id.
        cache_for: the (empty or stale) embedding cache a round's tag names; a stale one is replaced.
        hidden: hidden width of the head (0 = linear, exportable to plain timm).
        epochs: passes over the training images for the whole model.
        compute: where the whole model trains (processes, accelerator).
    """

    backbone: LoadedBackbone
    paths: Mapping[int, Path]
    cache_for: Callable[[str], EmbeddingCache]
    hidden: int = 0
    epochs: int = 1
    compute: Compute = Compute()
    trains: ClassVar[bool] = True

    def fit(self, data: FitData, progress: ProgressFn | None, stop: threading.Event | None) -> Fitted | None:
        """The tuned head and backbone, and the pool as the tuned backbone embeds it; None when stopped (nothing
        is left behind)."""
        report = progress or no_progress
        names = tuple(data.label_names)
        start = time.perf_counter()
        head = train_head(
            data.x[data.train_rows],
            data.y_train,
            len(names),
            hidden=self.hidden,
            seed=data.seed,
            progress=lambda f, _m: report(0.05 * f, "Training the head"),
            stop_event=stop,
        )
        if stopped(stop):
            return None
        message = finetune_message()
        tuned, tuned_head = gpu.run_on_gpu(
            finetune,
            self.backbone,
            head,
            names,
            [self.paths[int(data.ids[int(r)])] for r in data.train_rows],
            data.y_train.tolist(),
            max_epochs=self.epochs,
            seed=data.seed,
            progress=lambda f, m: report(0.05 + 0.65 * f, _with_epoch(message, m)),
            stop_event=stop,
            compute=self.compute,
        )
        train_seconds = time.perf_counter() - start
        if stopped(stop):
            return None
        ids = [int(i) for i in data.ids]
        cache = self.cache_for(data.tag)
        shutil.rmtree(cache.directory, ignore_errors=True)  # left by a round that was stopped or crashed
        try:
            embed_missing(
                tuned, cache, ids, self.paths, progress=lambda f, m: report(0.7 + 0.3 * f, m), stop_event=stop,
                message=REEMBED_MESSAGE,
            )  # fmt: skip
        except Cancelled:
            shutil.rmtree(cache.directory, ignore_errors=True)
            return None
        probs = pool_probs(tuned_head, cache.matrix(ids))  # float16 blocks from the memory map, no float32 copy
        return Fitted(
            tuned_head, names, cache=cache, backbone=tuned, ids=np.asarray(ids, dtype=np.int64), probs=probs,
            train_seconds=train_seconds,
        )  # fmt: skip
