"""Learners: the one way a round gets a model. ``fit(data, progress, stop) -> Fitted | None`` (None: cancelled).

- :class:`HeadLearner` trains a small head on the cached embeddings (fast mode, and every simulation);
- :class:`app.engine.finetuning.FineTuneLearner` trains the whole backbone, then re-embeds the pool;
- :class:`ImportedClassifier` scores with a classifier the project already has (an imported model's own head),
  before there is any label to train on.

A learner reads a :class:`FitData` (a `rounds.RoundData` is one) and returns a frozen :class:`Fitted`: the head,
its label names, the features it reads, the tuned backbone (fine-tune mode) and its probabilities for every image
(for the rows the data names in `scored_rows` only: a big pool's candidates, `app.core.candidates`).
Selection, evaluation and what is saved are the round's business (`app.engine.rounds`), not the learner's.

:func:`embed_missing` is the one way images get embedded into a cache (batched, chunk by chunk).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from app.core.progress import ProgressFn, no_progress
from app.core.settings import ProjectSettings
from app.core.store import ProjectStore
from app.engine import gpu
from app.engine.embedding_cache import EmbeddingCache
from app.engine.pool_scoring import pool_probs
from lit_models.backbones import LoadedBackbone
from lit_models.train import train_head
from lit_models.trainer import Compute

EMBED_MESSAGE = "Computing embeddings"


def stopped(stop: threading.Event | None) -> bool:
    """Whether `stop` is set."""
    return stop is not None and stop.is_set()


def _no_ids() -> np.ndarray:
    return np.empty(0, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Fitted:
    """A model a learner produced (or a checkpoint held) and its probabilities.

    Attributes:
        head: the classifier (a ``HeadClassifier``) over the features of `cache`.
        label_names: one per head output.
        cache: the features the head was fit on and reads: the pool as embedded by the fine-tuned backbone; None
            means the frozen backbone's embeddings.
        backbone: the fine-tuned backbone of fine-tune mode; None for the frozen one, or while a fine-tuned backbone
            read from a checkpoint is not loaded yet (then `backbone_file` names its weights).
        backbone_file: the saved weights of a fine-tuned backbone, loaded on first use.
        ids: the image ids the rows of `probs` belong to.
        probs: class probabilities, shape (len(ids), len(label_names)); None before anything is scored.
        train_seconds: wall time of the training alone (not the scoring).
        partial: `ids` are only some of the images (a round on a big pool scores its candidates and the stop set,
            `app.core.candidates`); `app.engine.model_state.ModelState` scores the rest before showing any.
    """

    head: Any
    label_names: tuple[str, ...]
    cache: EmbeddingCache | None = None
    backbone: LoadedBackbone | None = None
    backbone_file: Path | None = None
    ids: np.ndarray = field(default_factory=_no_ids)
    probs: np.ndarray | None = None
    train_seconds: float = 0.0
    partial: bool = False

    @property
    def finetuned(self) -> bool:
        """Whether the head reads a fine-tuned backbone's features rather than the frozen one's."""
        return self.cache is not None

    def scored(self, ids: Sequence[int] | np.ndarray, probs: np.ndarray | None, *, partial: bool = False) -> Fitted:
        """The same model with probabilities for `ids` (`partial`: not every image's)."""
        return replace(self, ids=np.asarray(ids, dtype=np.int64), probs=probs, partial=partial)

    def probs_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray | None:
        """Probabilities (len(ids), C) of `ids`, in that order; None when one of them was not scored."""
        wanted = np.asarray(ids, dtype=np.int64).reshape(-1)
        if self.probs is None or (len(self.ids) == 0 and len(wanted)):
            return None
        if len(wanted) == len(self.ids) and np.array_equal(wanted, self.ids):
            return self.probs
        order = np.argsort(self.ids, kind="stable")
        rows = order[np.clip(np.searchsorted(self.ids, wanted, sorter=order), 0, len(order) - 1)]
        return self.probs[rows] if np.array_equal(self.ids[rows], wanted) else None


class FitData(Protocol):
    """What a learner reads (`app.engine.rounds.RoundData` has all of it)."""

    @property
    def ids(self) -> np.ndarray:
        """Every image id, in the row order of `x`."""

    @property
    def x(self) -> np.ndarray:
        """Frozen-backbone embeddings of every image, (N, D): float16 (the cache's memory map) or float32."""

    @property
    def label_names(self) -> tuple[str, ...]:
        """The labels (one head output each)."""

    @property
    def train_rows(self) -> np.ndarray:
        """Rows of the training images (labeled, not held out)."""

    @property
    def y_train(self) -> np.ndarray:
        """Their class indices."""

    @property
    def seed(self) -> int:
        """Seed of the training (and of the round's selection)."""

    @property
    def tag(self) -> str:
        """Names what a learner keeps of this round (a fine-tuned pool's embeddings), e.g. "round0003"."""

    @property
    def scored_rows(self) -> np.ndarray | None:
        """Rows of `x` whose probabilities the round needs (ascending; a big pool's candidates and the stop set,
        `app.core.candidates`); None = every row."""


class Learner(Protocol):
    """Fits a model for a round. Nothing else trains."""

    trains: ClassVar[bool]
    """True when `fit` makes a new model (the round is recorded and checkpointed); False when it scores with one
    the project already has."""

    def fit(self, data: FitData, progress: ProgressFn | None, stop: threading.Event | None) -> Fitted | None:
        """The fitted model with its probabilities for every image of `data`, or None when `stop` was set."""


@dataclass(frozen=True)
class HeadLearner:
    """A head trained on the cached (frozen) embeddings with a fresh Lightning Trainer; scores the pool in one
    matrix product.

    Attributes:
        hidden: hidden width of the head (0 = linear, exportable to plain timm).
        max_epochs: passes over the data; None = `train_head`'s default for its optimizer.
    """

    hidden: int = 0
    max_epochs: int | None = None
    trains: ClassVar[bool] = True

    def fit(self, data: FitData, progress: ProgressFn | None, stop: threading.Event | None) -> Fitted | None:
        start = time.perf_counter()
        head = train_head(
            data.x[data.train_rows],
            data.y_train,
            len(data.label_names),
            hidden=self.hidden,
            max_epochs=self.max_epochs,
            seed=data.seed,
            progress=progress,
            stop_event=stop,
        )
        train_seconds = time.perf_counter() - start
        if stopped(stop):
            return None
        rows = getattr(data, "scored_rows", None)
        probs = pool_probs(head, data.x, rows=rows)  # block by block from the (float16, memory-mapped) embeddings
        ids = np.asarray(data.ids) if rows is None else np.asarray(data.ids)[rows]
        fitted = Fitted(head, tuple(data.label_names), train_seconds=train_seconds)
        return fitted.scored(ids, probs, partial=rows is not None)


@dataclass(frozen=True)
class ImportedClassifier:
    """The project's current classifier (an imported model's own head) scoring every image; nothing is trained.

    Used before the first label, so the imported model's predictions show and pick the first batch.
    """

    fitted: Fitted
    trains: ClassVar[bool] = False

    def fit(self, data: FitData, progress: ProgressFn | None, stop: threading.Event | None) -> Fitted | None:
        rows = getattr(data, "scored_rows", None)
        ids = np.asarray(data.ids) if rows is None else np.asarray(data.ids)[rows]
        return self.fitted.scored(ids, pool_probs(self.fitted.head, data.x, rows=rows), partial=rows is not None)


def project_compute(settings: ProjectSettings) -> Compute:
    """Where a project's embedding and fine-tuning runs compute (its processes and strategy)."""
    return Compute(devices=settings.devices, num_nodes=settings.num_nodes, strategy=settings.dist_strategy)


def image_paths(store: ProjectStore) -> dict[int, Path]:
    """Absolute file path of every image, by id (one query, not one per image)."""
    return {row.id: store.root / row.path for row in store.images()}


def embed_missing(
    backbone: LoadedBackbone,
    cache: EmbeddingCache,
    ids: Sequence[int],
    paths: Mapping[int, Path],
    *,
    progress: ProgressFn = no_progress,
    stop_event: threading.Event | None = None,
    message: str = EMBED_MESSAGE,
    compute: Compute = Compute(),
) -> None:
    """Embed the images of `ids` that `cache` lacks with `backbone`, in chunks (each chunk is committed).

    With ``compute.distributed`` (several processes) they are embedded in one run over that many processes
    (Lightning's DDP), which reports no progress and cannot be stopped.

    Raises:
        lit_models.callbacks.Cancelled: the stop event was set.
    """
    from lit_models.embed import embed_paths

    missing = cache.missing(ids)
    spread = compute.distributed
    done = [0]

    def embed(part: list[int]) -> np.ndarray:
        def report(fraction: float, _message: str) -> None:
            progress((done[0] + fraction * len(part)) / max(len(missing), 1), message)

        files = [paths[i] for i in part]
        if spread:
            vecs = gpu.run_on_gpu(embed_paths, backbone, files, compute=compute)
        else:
            vecs = gpu.run_on_gpu(embed_paths, backbone, files, progress=report, stop_event=stop_event)
        done[0] += len(part)
        return vecs

    cache.ensure(missing, embed, **({"chunk": len(missing)} if spread and missing else {}))
