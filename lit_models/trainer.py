"""A quiet, fresh Lightning ``Trainer`` for app runs: no logger, checkpoints, progress bar or summary.

Create a new one for every run (a reused Trainer silently skips training once ``max_epochs`` is reached).
Progress goes through :class:`lit_models.callbacks.ProgressCallback`, not through a progress bar.
"""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any

import lightning.pytorch as pl

from lit_models.callbacks import ProgressCallback, ProgressFn

# Lightning logs hardware lines ("GPU available: ...") on every Trainer; one per labeling round is noise.
_NOISY_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda")
# Advice that does not apply to in-memory tensors and one-batch epochs.
_IGNORED_WARNINGS = (
    r".*does not have many workers.*",
    r".*smaller than the logging interval.*",
    r".*`training_step` returned `None`.*",
    r".*Total length of `.*` across ranks is zero.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
)
for _pattern in _IGNORED_WARNINGS:
    warnings.filterwarnings("ignore", message=_pattern)
for _name in _NOISY_LOGGERS:
    logging.getLogger(_name).setLevel(logging.WARNING)


def quiet_trainer(
    *,
    progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    accelerator: str = "auto",
    **kwargs: Any,
) -> pl.Trainer:
    """A new Trainer with app defaults; ``kwargs`` override them (e.g. ``max_epochs``, ``precision``).

    Args:
        progress: called with (fraction, message) while it runs.
        stop_event: set it from another thread to stop the run.
        accelerator: ``"auto"`` uses a GPU when there is one; ``"cpu"`` for small jobs.
        **kwargs: any other ``Trainer`` argument.
    """
    callbacks = list(kwargs.pop("callbacks", []))
    if progress is not None or stop_event is not None:
        callbacks.append(ProgressCallback(progress, stop_event))
    options: dict[str, Any] = {
        "accelerator": accelerator,
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 1,
        "callbacks": callbacks,
    }
    options.update(kwargs)
    return pl.Trainer(**options)
