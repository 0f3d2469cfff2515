"""A quiet, fresh Lightning ``Trainer`` for app runs (no logger, checkpoints, progress bar or summary), and the
`Compute` options (accelerator, devices, nodes, strategy, precision) every run that may use a GPU takes.

Create a new Trainer for every run (a reused one silently skips training once ``max_epochs`` is reached).
Progress goes through :class:`lit_models.callbacks.ProgressCallback`, not through a progress bar.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl

from app.core.progress import ProgressFn
from lit_models.callbacks import ProgressCallback

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


@dataclass(frozen=True)
class Compute:
    """Where a Lightning run computes, and how: the options embedding and fine-tuning share.

    Attributes:
        accelerator: ``"auto"`` uses a GPU when there is one; ``"cpu"`` forces the CPU.
        devices: processes per machine (GPUs, or CPU processes with ``accelerator="cpu"``).
        num_nodes: machines; more than one needs a cluster launcher (torchrun, SLURM).
        strategy: Lightning strategy when ``devices * num_nodes > 1``: ``"ddp_spawn"`` from a running program,
            ``"ddp"`` under a launcher; ``"auto"`` lets the run choose. One process ignores it.
        precision: Lightning precision (``"32-true"``, ``"16-mixed"``, ``"bf16-mixed"``, ...); None lets the run
            choose (fine-tuning: 16-bit mixed on a GPU, else 32-bit; embedding: 32-bit).
    """

    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None

    def __post_init__(self) -> None:
        if self.devices < 1 or self.num_nodes < 1:
            raise ValueError(f"devices and num_nodes must be at least 1; got {self.devices} and {self.num_nodes}.")

    @property
    def processes(self) -> int:
        """Processes the run is spread over (``devices * num_nodes``)."""
        return self.devices * self.num_nodes

    @property
    def distributed(self) -> bool:
        """Whether the run is spread over several processes (which get a pickled Trainer: no closures, no events)."""
        return self.processes > 1

    def trainer_options(self) -> dict[str, Any]:
        """These options as ``Trainer`` arguments."""
        options: dict[str, Any] = {
            "accelerator": self.accelerator,
            "devices": self.devices,
            "num_nodes": self.num_nodes,
        }
        if self.distributed:
            options["strategy"] = self.strategy
        if self.precision is not None:
            options["precision"] = self.precision
        return options


CPU = Compute(accelerator="cpu")  # small runs (a head on embeddings) where a GPU only adds transfers


def quiet_trainer(
    *,
    progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    compute: Compute = Compute(),
    **kwargs: Any,
) -> pl.Trainer:
    """A new Trainer with app defaults; ``kwargs`` override them (e.g. ``max_epochs``, ``accelerator``).

    Args:
        progress: called with (fraction, message) while it runs.
        stop_event: set it from another thread to stop the run.
        compute: accelerator, devices, nodes, strategy and precision; by default one process, a GPU if there is one.
        **kwargs: any other ``Trainer`` argument.
    """
    callbacks = list(kwargs.pop("callbacks", []))
    if progress is not None or stop_event is not None:
        callbacks.append(ProgressCallback(progress, stop_event))
    options: dict[str, Any] = {
        **compute.trainer_options(),
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
