"""A round: read its data from the store, fit a learner, score the pool, select the next batch, evaluate, commit.

The app (`ActiveLearningSession.run_round`), `python -m app simulate` and the benchmarks all call :func:`run`, so a
simulation measures what the app does. :func:`read` and :func:`choose_learner` build a project's round;
:func:`commit` records it (round row, round checkpoint, current model, next batch). On a pool of more than
`app.core.candidates.CANDIDATES` unlabeled images, a round scores and selects from a fresh random sample of them
(and scores the stop set), see :func:`with_candidates`; smaller pools are scored and selected whole.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from app.core.audit import AUDIT, audit_count, draw_audit, place_audit
from app.core.calibration import tempered
from app.core.candidates import CANDIDATES, candidate_positions, scored_rows
from app.core.errors import EmptyPoolError
from app.core.progress import ProgressFn
from app.core.settings import ProjectSettings
from app.core.stopping import reference, stop_set
from app.core.store import ProjectStore
from app.core.strategies import Selection, select_batch
from app.engine.evaluation import NOT_ENOUGH_LABELS, evaluate
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
from app.engine.pool_scoring import torch_dense
from app.engine.selection_head import selection_inputs

__all__ = ["NOT_ENOUGH_LABELS", "RoundData", "RoundResult", "choose_learner", "commit", "evaluate", "read", "run"]
HISTORY_KEYS = ("accuracy", "accuracy_low", "audit_n", "agreement")  # what later rounds read of a round's metrics
Pick = tuple[int, str, float]  # (image id, strategy that picked it, its score)
Evaluate = Callable[["RoundData", "Fitted | None"], dict[str, Any]]


@dataclass(frozen=True, eq=False)
class RoundData:
    """What one round reads: every image's frozen embeddings, the labels, the held-out split and the pool.

    Attributes:
        ids: every image id, in the row order of `x`.
        x: frozen-backbone embeddings of every image (N, D): the cache's float16 memory map in the app (read block
            by block, never copied whole), or any float16 / float32 array.
        label_names: the labels (one head output each).
        labeled_rows: rows of the labeled images.
        y: the class index of each labeled row.
        val: which labeled rows are held out (not trained on); none since accuracy is measured on audit labels.
        pool_rows: rows the round may pick (unlabeled, not skipped in the current batch).
        seed: seed of the training and of the selection.
        number: the round this is (1 for the first); names what it keeps ("round0001").
        audit: which labeled rows are audit labels (drawn at random from the pool); None = none.
        history: what the evaluation keeps of each earlier round (labeled, the estimate, the agreement; the newest
            also its stop set predictions), oldest first.
        candidates: positions (into `pool_rows`, ascending) the strategy picks from; None = the whole pool.
        scored_rows: rows (ascending) the learner scores: the candidates' and the stop set's; None = every row.
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
    audit: np.ndarray | None = None
    history: tuple[dict[str, Any], ...] = ()
    candidates: np.ndarray | None = None
    scored_rows: np.ndarray | None = None

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
        audit: np.ndarray | None = None,
        history: Sequence[dict[str, Any]] = (),
    ) -> RoundData:
        """A round on plain arrays (simulations, benchmarks): row numbers as ids, nothing held out.

        Args:
            y: the class of each of `labeled_rows`.
            pool_rows: None = every row not labeled.
            audit: which of `labeled_rows` are audit labels (None = none).
            history: the earlier rounds' metrics (see `RoundData.history`).
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
            audit=None if audit is None else np.asarray(audit, dtype=bool), history=tuple(history),
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


def history(rounds: Sequence[tuple[int, dict[str, Any]]], labeled: int) -> tuple[dict[str, Any], ...]:
    """What the evaluation of a round on `labeled` labels reads of the rounds before it, from their (labels,
    metrics): labels, estimate and agreement of each, and the stop set predictions of the one its model is compared
    with (`stopping.reference`: the newest at least `stopping.SPAN` labels older)."""
    out = [{"labeled": int(n), **{k: m[k] for k in HISTORY_KEYS if k in m}} for n, m in rounds]
    at = reference([int(n) for n, _ in rounds], int(labeled))
    if at is not None and "stop_set" in rounds[at][1]:
        out[at]["stop_set"] = rounds[at][1]["stop_set"]
    return tuple(out)


def read(store: ProjectStore, settings: ProjectSettings, ids: Sequence[int], x: np.ndarray) -> RoundData:
    """The round's data from the store: labels (which are audit labels), the pool and the earlier rounds.

    Nothing is held out: every label trains, and the model is measured on audit labels by cross-fitting.

    Args:
        ids: every image id (as read once for this round).
        x: their frozen embeddings, in that order.

    Raises:
        EmptyPoolError: every image is labeled.
    """
    names = store.labels()
    index = {n: i for i, n in enumerate(names)}
    current = store.current_labels()
    all_ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    labeled = np.isin(all_ids, _ids_array(i for i, name in current.items() if name in index))
    lab_rows = np.flatnonzero(labeled)  # in the order of `ids`, as every row list here (vectorised: 1M ids)
    y = np.array([index[current[int(i)]] for i in all_ids[lab_rows]], dtype=np.int64)
    audited = _ids_array(store.picked_by(AUDIT))
    skipped = _ids_array(b.image_id for b in store.batch() if b.status == "skipped")
    unlabeled = ~np.isin(all_ids, _ids_array(current))
    pool_rows = np.flatnonzero(unlabeled & ~np.isin(all_ids, skipped))
    if not len(pool_rows):
        pool_rows = np.flatnonzero(unlabeled)
    if not len(pool_rows):
        raise EmptyPoolError("Every image is labeled. Export your labels and model, or add more images.")
    past = store.rounds()
    done = len(past)
    return RoundData(
        ids=all_ids, x=x, label_names=tuple(names), labeled_rows=lab_rows.astype(np.int64), y=y,
        val=np.zeros(len(y), dtype=bool), pool_rows=pool_rows.astype(np.int64), seed=settings.seed + done,
        number=done + 1, audit=np.isin(all_ids[lab_rows], audited),
        history=history([(r.labeled, r.metrics) for r in past], len(lab_rows)),
    )  # fmt: skip


def _ids_array(ids: Any) -> np.ndarray:
    """Image ids (any iterable) as an int64 array."""
    return np.fromiter((int(i) for i in ids), dtype=np.int64)


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


def with_candidates(data: RoundData, size: int | None = None) -> RoundData:
    """The round's data with its candidates when the pool holds more than `size` images (None: `CANDIDATES`):
    `size` of them drawn at random with the round's seed (another sample every round), scored with the stop set
    (whose predictions every round's evaluation compares); the data unchanged otherwise, or when it names its
    candidates already."""
    if data.candidates is not None:
        return data
    chosen = candidate_positions(len(data.pool_rows), data.seed, CANDIDATES if size is None else size)
    if chosen is None:
        return data
    return replace(data, candidates=chosen, scored_rows=scored_rows(data.pool_rows, chosen, stop_set(data.ids)))


def _pool_probs(data: RoundData, fitted: Fitted | None) -> np.ndarray | None:
    """The model's probabilities of the pool's images, in pool order (None without them)."""
    if fitted is None or fitted.probs is None:
        return None
    scored = data.scored_rows
    if scored is None or len(fitted.probs) == len(data.ids):  # every image scored, in the round's row order
        return fitted.probs[data.pool_rows]
    wanted = data.ids[data.pool_rows]
    if len(scored) == len(fitted.ids):  # scored by this round: its rows, ascending
        at = np.minimum(np.searchsorted(scored, data.pool_rows), len(scored) - 1)
        if np.array_equal(fitted.ids[at], wanted):
            return fitted.probs[at]
    probs = fitted.probs_of(wanted)
    if probs is None:
        raise ValueError("The round's model has no probabilities for some of the images it picks from.")
    return probs


def select(data: RoundData, fitted: Fitted | None, strategy: str, k: int) -> Selection:
    """Pick `k` pool rows with `strategy` on the model's probabilities and the features it reads."""
    x = data.x if fitted is None or fitted.cache is None else fitted.cache.matrix(data.ids)
    probs = _pool_probs(data, fitted)
    return select_batch(
        strategy,
        k,
        probs=probs,
        pool_emb=x,  # with pool_rows: read block by block as needed, never copied (1M x 1280 is 2.6 GB float16)
        pool_rows=data.pool_rows,
        labeled_emb=x[data.labeled_rows],
        seed=data.seed,
        dense=torch_dense(),
    )


def picks(
    data: RoundData, fitted: Fitted | None, strategy: str, k: int, *, audit_share: float = 0.0, size: int | None = None
) -> tuple[Selection, tuple[Pick, ...]]:
    """The round's `k` picks: audit picks drawn uniformly at random from the pool (`audit_share` of a batch of
    `size`, at least one once there is a model), the rest by `strategy` from the rest of the pool (of its
    candidates, when `data` has them).

    Returns:
        The strategy's selection (positions into `data.pool_rows`) and every pick as (image id, strategy, score) in
        batch order: the audit picks spread over the first `size`, the strategy's spares last.
    """
    size = k if size is None else min(size, k)
    n_pool = len(data.pool_rows)
    drawn = draw_audit(n_pool, audit_count(size, audit_share, has_model=fitted is not None), data.seed)
    if data.candidates is None:
        keep = np.ones(n_pool, dtype=bool)
        keep[drawn] = False
        rest = np.flatnonzero(keep)  # the pool without the audit picks, in order
    else:  # the candidates without the audit picks, in order
        rest = data.candidates[~np.isin(data.candidates, drawn)]
    wanted = min(k - len(drawn), len(rest))
    if wanted > 0:
        found = select(replace(data, pool_rows=data.pool_rows[rest]), fitted, strategy, wanted)
        selection = replace(found, indices=rest[found.indices])
    else:
        selection = Selection(np.empty(0, dtype=np.int64), np.empty(0), strategy)
    chosen = [
        (int(data.ids[data.pool_rows[int(i)]]), selection.strategy, float(s))
        for i, s in zip(selection.indices, selection.scores, strict=True)
    ]
    audit = [(int(data.ids[data.pool_rows[int(i)]]), AUDIT, float("nan")) for i in drawn]
    return selection, tuple(place_audit(chosen, audit, size))


def calibrated(fitted: Fitted, temperature: float) -> Fitted:
    """The model with `temperature` applied to its head (so saved and exported models carry it) and probabilities."""
    if temperature == 1.0 or not hasattr(fitted.head, "tempered"):
        return fitted
    probs = None if fitted.probs is None else tempered(fitted.probs, temperature)
    return replace(fitted, head=fitted.head.tempered(temperature), probs=probs)


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
    audit_share: float = 0.0,
    size: int | None = None,
    candidates: int | None = None,
) -> RoundResult:
    """Fit `learner` (None: no model, the cold start), evaluate and calibrate, score the pool, select `k` picks.

    Args:
        progress: the learner's progress (None: it reports nothing).
        stop: set it from another thread to cancel the round.
        evaluate: the round's metrics from its data and model (None: no metrics and no calibration); its
            "temperature" calibrates the model the round keeps.
        started: when the round started (`time.perf_counter()`; it may include embedding): `seconds` counts from
            there. None = now.
        audit_share: share of a batch drawn at random from the pool as audit picks (see `picks`).
        size: the batch size (the picks beyond are spares); None = `k`.
        candidates: on a pool bigger than this (None: `CANDIDATES`), score and select from this many images drawn at
            random (and score the stop set), see `with_candidates`; the round's model then has probabilities for
            those only (`Fitted.partial`).
    """
    started = time.perf_counter() if started is None else started
    data = with_candidates(data, candidates)
    fitted = None if learner is None else learner.fit(data, progress, stop)
    if stopped(stop) or (learner is not None and fitted is None):
        return RoundResult("cancelled")
    metrics = {} if evaluate is None else evaluate(data, fitted)
    if fitted is not None:
        fitted = calibrated(fitted, float(metrics.get("temperature", 1.0)))
    # the strategy picks with a head trained without the audit labels (the kept model trains on every label)
    seen, chooser = selection_inputs(data, learner, fitted, stop)
    if stopped(stop):
        return RoundResult("cancelled")
    selection, chosen = picks(seen, chooser, strategy, k, audit_share=audit_share, size=size)
    seconds = time.perf_counter() - started
    if evaluate is not None:
        metrics["seconds"] = seconds
    return RoundResult(
        "done", fitted, learner is not None and learner.trains, selection, chosen, metrics, seconds,
        0.0 if fitted is None else fitted.train_seconds,
    )  # fmt: skip


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
