"""A round: read its data from the store, fit a learner, score the pool, select the next batch, evaluate, commit.

The app (`ActiveLearningSession.run_round`), `python -m app simulate` and the benchmarks all call :func:`run`, so a
simulation measures what the app does. :func:`read` and :func:`choose_learner` build a project's round;
:func:`commit` records it (round row, round checkpoint, current model, next batch).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from app.core.errors import EmptyPoolError
from app.core.metrics import classification_metrics
from app.core.progress import ProgressFn
from app.core.settings import ProjectSettings
from app.core.splits import validation_mask
from app.core.store import ProjectStore
from app.core.strategies import Selection, select_batch
from app.engine.evaluation import cross_validated_metrics
from app.engine.finetuning import FineTuneLearner, can_finetune
from app.engine.learners import (
    Fitted,
    HeadLearner,
    ImportedClassifier,
    Learner,
    image_paths,
    project_compute,
    stopped,
)
from app.engine.model_state import ModelState

NOT_ENOUGH_LABELS = "Not enough labels to validate yet."
Pick = tuple[int, str, float]  # (image id, strategy that picked it, its score)
Evaluate = Callable[["RoundData", "Fitted | None"], dict[str, Any]]


@dataclass(frozen=True, eq=False)
class RoundData:
    """What one round reads: every image's frozen embeddings, the labels, the held-out split and the pool.

    Attributes:
        ids: every image id, in the row order of `x`.
        x: frozen-backbone embeddings of every image, float32 (N, D).
        label_names: the labels (one head output each).
        labeled_rows: rows of the labeled images.
        y: the class index of each labeled row.
        val: which labeled rows are held out for validation (not trained on).
        pool_rows: rows the round may pick (unlabeled, not skipped in the current batch).
        seed: seed of the training and of the selection.
        number: the round this is (1 for the first); names what it keeps ("round0001").
    """

    ids: np.ndarray
    x: np.ndarray
    label_names: tuple[str, ...]
    labeled_rows: np.ndarray
    y: np.ndarray
    val: np.ndarray
    pool_rows: np.ndarray
    seed: int = 0
    number: int = 1

    @property
    def train_rows(self) -> np.ndarray:
        return self.labeled_rows[~self.val]

    @property
    def y_train(self) -> np.ndarray:
        return self.y[~self.val]

    @property
    def tag(self) -> str:
        return f"round{self.number:04d}"

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray,
        labeled_rows: np.ndarray,
        y: np.ndarray,
        *,
        num_classes: int,
        seed: int,
        pool_rows: np.ndarray | None = None,
    ) -> RoundData:
        """A round on plain arrays (simulations, benchmarks): row numbers as ids, nothing held out.

        Args:
            y: the class of each of `labeled_rows`.
            pool_rows: None = every row not labeled.
        """
        labeled_rows = np.asarray(labeled_rows, dtype=np.int64)
        if pool_rows is None:
            is_lab = np.zeros(len(x), dtype=bool)
            is_lab[labeled_rows] = True
            pool_rows = np.flatnonzero(~is_lab)
        return cls(
            ids=np.arange(len(x), dtype=np.int64), x=x, label_names=tuple(str(c) for c in range(num_classes)),
            labeled_rows=labeled_rows, y=np.asarray(y, dtype=np.int64), val=np.zeros(len(labeled_rows), dtype=bool),
            pool_rows=np.asarray(pool_rows, dtype=np.int64), seed=seed,
        )  # fmt: skip


@dataclass(frozen=True, eq=False)
class RoundResult:
    """What a round produced.

    Attributes:
        state: "done", or "cancelled" (the stop event was set; nothing else is filled in).
        fitted: the model and its probabilities for every image; None without a model (the cold start).
        trained: whether `fitted` is a new model (recorded as a round) rather than one the project had.
        selection: the picked pool positions (into `RoundData.pool_rows`) and their scores.
        picks: the picked images as (image id, strategy, score), best first.
        metrics: the evaluation (labeled/train/val counts, accuracy ...; "seconds"), when one was asked for.
        seconds: wall time from the round's start to the end of the selection and evaluation.
        train_seconds: wall time of the training alone.
    """

    state: Literal["done", "cancelled"]
    fitted: Fitted | None = None
    trained: bool = False
    selection: Selection | None = None
    picks: tuple[Pick, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    train_seconds: float = 0.0

    @property
    def cancelled(self) -> bool:
        return self.state == "cancelled"


def read(store: ProjectStore, settings: ProjectSettings, ids: Sequence[int], x: np.ndarray) -> RoundData:
    """The round's data from the store: labels, the stable validation split and the pool.

    Args:
        ids: every image id (as read once for this round).
        x: their frozen embeddings, in that order.

    Raises:
        EmptyPoolError: every image is labeled.
    """
    names = store.labels()
    index = {n: i for i, n in enumerate(names)}
    current = store.current_labels()
    row_of = {image_id: row for row, image_id in enumerate(ids)}
    lab_ids = [i for i in ids if current.get(i) in index]
    y = np.array([index[current[i]] for i in lab_ids], dtype=np.int64)
    val = validation_mask(lab_ids, y, settings.val_fraction, settings.seed)
    if len(lab_ids) == 0 or val.sum() < settings.min_val:
        val[:] = False
    skipped = {b.image_id for b in store.batch() if b.status == "skipped"}
    pool_ids = [i for i in ids if i not in current and i not in skipped] or [i for i in ids if i not in current]
    if not pool_ids:
        raise EmptyPoolError("Every image is labeled. Export your labels and model, or add more images.")
    done = store.current_round()
    return RoundData(
        ids=np.asarray(ids, dtype=np.int64), x=x, label_names=tuple(names),
        labeled_rows=np.array([row_of[i] for i in lab_ids], dtype=np.int64), y=y, val=val,
        pool_rows=np.array([row_of[i] for i in pool_ids], dtype=np.int64), seed=settings.seed + done, number=done + 1,
    )  # fmt: skip


def choose_learner(
    data: RoundData, model: ModelState, store: ProjectStore, settings: ProjectSettings
) -> tuple[Learner | None, RoundData]:
    """The learner of a project's round (None: nothing to fit, the cold start), and the data to run it on.

    Fine-tune mode fine-tunes once there are enough training images; before any label, a current model that fits
    the labels (an imported model's classifier) scores the pool, with the project's seed (it is no round's model);
    otherwise a head trains on the frozen embeddings.
    """
    n_train = len(data.train_rows)
    if settings.mode == "finetune" and can_finetune(n_train):
        learner = FineTuneLearner(
            model.backbone(), image_paths(store), model.tuned_cache, hidden=settings.head_hidden,
            epochs=settings.finetune_epochs, compute=project_compute(settings),
        )  # fmt: skip
        return learner, data
    current = model.fitted
    fits = current is not None and current.head is not None and current.label_names == data.label_names
    if not len(data.labeled_rows) and fits and not current.finetuned:
        return ImportedClassifier(current), replace(data, seed=settings.seed)
    if n_train:
        return HeadLearner(hidden=settings.head_hidden, max_epochs=settings.max_epochs), data
    return None, data


def select(data: RoundData, fitted: Fitted | None, strategy: str, k: int) -> Selection:
    """Pick `k` pool rows with `strategy` on the model's probabilities and the features it reads."""
    x = data.x if fitted is None or fitted.cache is None else fitted.cache.get(data.ids.tolist())
    probs = None if fitted is None or fitted.probs is None else fitted.probs[data.pool_rows]
    return select_batch(
        strategy,
        k,
        probs=probs,
        pool_emb=x,  # with pool_rows: read as needed, never copied (a 100k x 1280 pool is 0.5 GB as float32)
        pool_rows=data.pool_rows,
        labeled_emb=x[data.labeled_rows],
        seed=data.seed,
    )


def run(
    data: RoundData,
    learner: Learner | None,
    *,
    strategy: str,
    k: int,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
    evaluate: Evaluate | None = None,
    started: float | None = None,
) -> RoundResult:
    """Fit `learner` (None: no model, the cold start), score every image, select `k` pool rows, evaluate.

    Args:
        progress: the learner's progress (None: it reports nothing).
        stop: set it from another thread to cancel the round.
        evaluate: the round's metrics from its data and model (None: no metrics; a simulation measures on its own
            test set).
        started: when the round started (`time.perf_counter()`; it may include embedding): `seconds` counts from
            there. None = now.
    """
    started = time.perf_counter() if started is None else started
    fitted = None if learner is None else learner.fit(data, progress, stop)
    if stopped(stop) or (learner is not None and fitted is None):
        return RoundResult("cancelled")
    selection = select(data, fitted, strategy, k)
    picks = tuple(
        (int(data.ids[data.pool_rows[int(i)]]), selection.strategy, float(s))
        for i, s in zip(selection.indices, selection.scores, strict=True)
    )
    metrics = {} if evaluate is None else evaluate(data, fitted)
    seconds = time.perf_counter() - started
    if evaluate is not None:
        metrics["seconds"] = seconds
    return RoundResult(
        "done", fitted, learner is not None and learner.trains, selection, picks, metrics, seconds,
        0.0 if fitted is None else fitted.train_seconds,
    )  # fmt: skip


def evaluate(data: RoundData, fitted: Fitted | None, *, hidden: int = 0, seed: int = 0) -> dict[str, Any]:
    """Counts and accuracy of the round's model: on the held-out labels, else cross-validated on the labels (heads
    of width `hidden`, seeded with `seed`), else a note that there are too few labels."""
    names, rows, y, val = list(data.label_names), data.labeled_rows, data.y, data.val
    metrics: dict[str, Any] = {"labeled": len(rows), "train": int((~val).sum()), "val": int(val.sum())}
    probs = None if fitted is None else fitted.probs
    cv = None
    if probs is not None and val.any():
        pred = probs[rows[val]].argmax(axis=1)
        metrics.update(classification_metrics(y[val].tolist(), pred.tolist(), names))
        metrics["validation"] = f"{int(val.sum())} held-out labels"
    elif probs is not None:
        cv = cross_validated_metrics(data.x[rows], y, names, hidden=hidden, seed=seed)
    if cv is not None:
        metrics.update(cv)
    elif "accuracy" not in metrics:
        metrics["note"] = NOT_ENOUGH_LABELS
    return metrics


def commit(
    store: ProjectStore, model: ModelState, data: RoundData, result: RoundResult, *, strategy: str, size: int,
    record: bool = True,
) -> None:  # fmt: skip
    """Keep what a finished round produced: the round and its checkpoint (a new model, when `record`), the current
    model, and the next batch of `size` images (the picks beyond are spares for picks labeled meanwhile)."""
    fitted = result.fitted
    if record and result.trained and fitted is not None:
        number = store.add_round(
            labeled=len(data.labeled_rows), strategy=strategy, seconds=result.seconds, metrics=result.metrics
        )
        store.set_round_checkpoint(number, model.checkpoints.save_round(number, fitted))
    if fitted is not None:
        model.set_current(fitted)
    store.set_batch(list(result.picks), size=size)  # drops the picks labeled while this round ran
