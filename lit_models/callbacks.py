"""Progress reporting and cooperative cancellation for Lightning runs (training and prediction)."""

from __future__ import annotations

import math
import threading
from typing import Any

import lightning.pytorch as pl

from app.core.progress import ProgressFn


class Cancelled(Exception):
    """A prediction run was stopped because its stop event was set."""


class ProgressCallback(pl.Callback):
    """Reports the fraction done to a function and stops the run when an event is set.

    Training reports after every batch (fraction of ``max_epochs`` done) and stops at the end of the current batch
    via ``trainer.should_stop``. Prediction reports after every batch; Lightning's predict loop has no
    ``should_stop``, so a set event raises :class:`Cancelled` before the next batch.
    """

    def __init__(self, report: ProgressFn | None = None, stop_event: threading.Event | None = None) -> None:
        """Create the callback.

        Args:
            report: called with (fraction in [0, 1], short message); must be quick and thread-safe.
            stop_event: when set (from any thread), the run stops.
        """
        super().__init__()
        self.report = report
        self.stop_event = stop_event

    @property
    def stop_requested(self) -> bool:
        """Whether the stop event is set."""
        return self.stop_event is not None and self.stop_event.is_set()

    def _emit(self, fraction: float, message: str) -> None:
        if self.report is not None:
            self.report(min(max(fraction, 0.0), 1.0), message)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._emit(0.0, "Training started")
        if self.stop_requested:
            trainer.should_stop = True

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.stop_requested:
            trainer.should_stop = True

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        batches = trainer.num_training_batches
        within = (batch_idx + 1) / batches if isinstance(batches, int) and batches > 0 else 1.0
        fraction = (trainer.current_epoch + min(within, 1.0)) / epochs
        if trainer.max_steps and trainer.max_steps > 0:
            fraction = max(fraction, trainer.global_step / trainer.max_steps)
        self._emit(fraction, f"Training: epoch {trainer.current_epoch + 1}/{epochs}")
        if self.stop_requested:
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._emit(1.0, "Training stopped" if self.stop_requested else "Training finished")

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._emit(0.0, "Predicting")
        self._check_predict_stop()

    def on_predict_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._check_predict_stop()

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        totals = trainer.num_predict_batches
        total = totals[dataloader_idx] if dataloader_idx < len(totals) else math.inf
        done = batch_idx + 1
        if isinstance(total, int | float) and math.isfinite(total) and total > 0:
            self._emit(done / total, f"Predicting: batch {done}/{int(total)}")
        else:
            self._emit(0.0, f"Predicting: batch {done}")

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._emit(1.0, "Prediction finished")

    def _check_predict_stop(self) -> None:
        if self.stop_requested:
            raise Cancelled("Stopped on request.")
