"""One active-learning step on cached embeddings: train a head, score the pool, pick the next batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.core.strategies import Selection, select_batch
from lit_models.train import predict_proba, train_head


@dataclass
class StepResult:
    """What one step produced.

    Attributes:
        head: the trained head (a LightningModule), or None when there were no labels yet.
        probs: class probabilities for every row of `x_all` (None without a head).
        selection: the picked pool rows (positions into the pool arrays) and their scores.
        seconds: wall time of train + score + select.
        train_seconds: wall time of training alone.
    """

    head: object | None
    probs: np.ndarray | None
    selection: Selection
    seconds: float
    train_seconds: float


def train_score_select(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_all: np.ndarray,
    pool_rows: np.ndarray,
    labeled_rows: np.ndarray,
    *,
    num_classes: int,
    strategy: str,
    k: int,
    hidden: int = 0,
    max_epochs: int | None = None,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    stop_event: threading.Event | None = None,
) -> StepResult:
    """Train on (x_train, y_train), score all rows of `x_all`, select `k` rows among `pool_rows`.

    Args:
        x_train: embeddings of the training images.
        y_train: their class indices.
        x_all: embeddings of every image in the project (or simulation).
        pool_rows: rows of `x_all` that may be picked (unlabeled).
        labeled_rows: rows of `x_all` already labeled (diversity keeps away from them).
        num_classes: number of labels.
        strategy: query strategy name.
        k: batch size.
    """
    start = time.perf_counter()
    head = None
    probs = None
    if len(y_train) > 0:
        head = train_head(
            x_train,
            y_train,
            num_classes,
            hidden=hidden,
            max_epochs=max_epochs,
            seed=seed,
            progress=progress,
            stop_event=stop_event,
        )
    train_seconds = time.perf_counter() - start
    if head is not None:
        probs = predict_proba(head, x_all)
    selection = select_batch(
        strategy,
        k,
        probs=None if probs is None else probs[pool_rows],
        pool_emb=x_all,  # with pool_rows: read as needed, never copied (a 100k x 1280 pool is 0.5 GB as float32)
        pool_rows=pool_rows,
        labeled_emb=x_all[labeled_rows],
        seed=seed,
    )
    return StepResult(head, probs, selection, time.perf_counter() - start, train_seconds)
