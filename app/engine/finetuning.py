"""Fine-tune mode's round: a linear probe on the frozen embeddings, then the whole model trained on the labeled
images, then every image re-embedded by the tuned backbone so scoring and selection use its features.

Each round starts again from the pretrained backbone (trained on all labels so far): the model depends on the
labels, not on the order they came in, and the first labels are not trained on again and again.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.store import ProjectStore
from app.core.strategies import select_batch
from app.engine.embedding_cache import EmbeddingCache
from app.engine.loop import StepResult
from app.engine.model_state import ModelState
from lit_models.backbones import LoadedBackbone
from lit_models.callbacks import Cancelled
from lit_models.finetune import MIN_IMAGES, finetune, has_gpu
from lit_models.train import predict_proba, train_head

ProgressFn = Callable[[float, str], None]
REEMBED_MESSAGE = "Re-embedding every image with the fine-tuned model"


def finetune_message() -> str:
    """What the progress line says while the whole model trains (on a CPU: that it is slow)."""
    if has_gpu():
        return "Fine-tuning the whole model on the GPU"
    return "Fine-tuning the whole model (slow on a CPU; a GPU is much faster)"


def can_finetune(n_train: int) -> bool:
    """Whether there are enough training images to fine-tune (else the round trains the head only)."""
    return n_train >= MIN_IMAGES


@dataclass
class TunedModel:
    """A fine-tuned backbone and the pool as it embeds it."""

    backbone: LoadedBackbone
    cache: EmbeddingCache


def _noop(_fraction: float, _message: str) -> None:
    return None


def _with_epoch(message: str, trainer_message: str) -> str:
    """'<message>, epoch 2/3' from the trainer's 'Training: epoch 2/3'."""
    epoch = trainer_message.partition("Training: ")[2]
    return f"{message}, {epoch}" if epoch else message


def _stopped(stop_event: threading.Event | None) -> bool:
    return stop_event is not None and stop_event.is_set()


def image_paths(store: ProjectStore) -> dict[int, Path]:
    """Absolute file path of every image, by id (one query, not one per image)."""
    return {row.id: store.root / row.path for row in store.images()}


def embed_into(
    backbone: LoadedBackbone,
    cache: EmbeddingCache,
    ids: Sequence[int],
    paths: Mapping[int, Path],
    *,
    progress: ProgressFn = _noop,
    stop_event: threading.Event | None = None,
    message: str = REEMBED_MESSAGE,
) -> None:
    """Embed the images of `ids` missing from `cache` with `backbone`, in chunks (each chunk is committed).

    Raises:
        lit_models.callbacks.Cancelled: the stop event was set.
    """
    from lit_models.embed import embed_paths

    missing = cache.missing(ids)
    done = [0]

    def compute(part: list[int]) -> np.ndarray:
        def report(fraction: float, _message: str) -> None:
            progress((done[0] + fraction * len(part)) / max(len(missing), 1), message)

        vecs = embed_paths(backbone, [paths[i] for i in part], progress=report, stop_event=stop_event)
        done[0] += len(part)
        return vecs

    cache.ensure(missing, compute)


def ensure_current_embeddings(model: ModelState, store: ProjectStore, progress: ProgressFn = _noop) -> None:
    """Embed images the current fine-tuned backbone has not embedded yet (no-op for the frozen backbone)."""
    if not model.is_finetuned():
        return
    ids = store.image_ids()
    cache = model.current_cache()
    if cache.missing(ids):
        embed_into(model.current_backbone(), cache, ids, image_paths(store), progress=progress)


def fine_tune_step(
    model: ModelState,
    store: ProjectStore,
    *,
    ids: Sequence[int],
    x_frozen: np.ndarray,
    train_rows: np.ndarray,
    y_train: np.ndarray,
    pool_rows: np.ndarray,
    labeled_rows: np.ndarray,
    label_names: Sequence[str],
    strategy: str,
    k: int,
    hidden: int,
    epochs: int,
    seed: int,
    tag: str,
    progress: ProgressFn = _noop,
    stop_event: threading.Event | None = None,
) -> tuple[StepResult, TunedModel] | None:
    """One fine-tune round: probe, fine-tune, re-embed all images, score with the tuned head, select.

    Args:
        model: the project's model state (its frozen backbone is the starting point; it is not changed).
        store: the project (image files).
        ids: every image id, in the row order of `x_frozen`.
        x_frozen: frozen-backbone embeddings of every image.
        train_rows: rows of the training images (labeled, not held out).
        y_train: their class indices.
        pool_rows: rows that may be picked; labeled_rows: rows already labeled.
        label_names: class names (one per head output).
        strategy: query strategy; k: how many rows to select.
        hidden: hidden width of the head (0 = linear, exportable to plain timm).
        epochs: passes over the training images for the whole model.
        seed: seed of the head, the fine-tune run and the selection.
        tag: names the tuned embedding cache (e.g. "round0003"); a stale one of that name is replaced.

    Returns:
        The step (tuned head, its probabilities for every image, the selection) and the tuned backbone with its
        embeddings; None when stopped (nothing is left behind).
    """
    start = time.perf_counter()
    head = train_head(
        x_frozen[train_rows],
        y_train,
        len(label_names),
        hidden=hidden,
        seed=seed,
        progress=lambda f, _m: progress(0.05 * f, "Training the head"),
        stop_event=stop_event,
    )
    if _stopped(stop_event):
        return None
    paths = image_paths(store)
    message = finetune_message()
    tuned, tuned_head = finetune(
        model.backbone(),
        head,
        label_names,
        [paths[ids[int(r)]] for r in train_rows],
        y_train.tolist(),
        max_epochs=epochs,
        seed=seed,
        progress=lambda f, m: progress(0.05 + 0.65 * f, _with_epoch(message, m)),
        stop_event=stop_event,
        devices=model.settings.devices,
        num_nodes=model.settings.num_nodes,
        strategy=model.settings.dist_strategy,
    )
    train_seconds = time.perf_counter() - start
    if _stopped(stop_event):
        return None
    cache = model.tuned_cache(tag)
    shutil.rmtree(cache.directory, ignore_errors=True)  # left by a round that was stopped or crashed
    try:
        embed_into(tuned, cache, ids, paths, progress=lambda f, m: progress(0.7 + 0.3 * f, m), stop_event=stop_event)
    except Cancelled:
        shutil.rmtree(cache.directory, ignore_errors=True)
        return None
    x_all = cache.get(ids)
    probs = predict_proba(tuned_head, x_all)
    selection = select_batch(
        strategy,
        k,
        probs=probs[pool_rows],
        pool_emb=x_all,
        pool_rows=pool_rows,
        labeled_emb=x_all[labeled_rows],
        seed=seed,
    )
    step = StepResult(tuned_head, probs, selection, time.perf_counter() - start, train_seconds)
    return step, TunedModel(tuned, cache)
