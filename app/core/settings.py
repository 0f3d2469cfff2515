"""Typed project settings, shared by the command line, the engine, the UI and `configs/*.yaml`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MODES = ("fast", "finetune")
FINETUNE_EPOCHS = 3  # passes over the labeled images per fine-tune round when max_epochs is None
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class ProjectSettings:
    """Everything that decides how a project learns.

    Attributes:
        backbone: timm architecture name of the feature extractor.
        backbone_source: where its weights come from: "bundled", "hub", "file" or "random".
        weights: path of a local weights file when `backbone_source` is "file".
        image_size: square input size in pixels; None uses the backbone's own (224 for most).
        strategy: query strategy name (see `app.core.strategies.STRATEGIES`).
        batch_size: images shown per round.
        audit_share: share of each batch drawn at random from the unlabeled pool (at least one image once a model
            exists): the model is measured on these "random checks", so its accuracy is not judged on hard picks.
        val_fraction, min_val: read from older projects and ignored: nothing is held out any more (every label
            trains; accuracy is measured on the random checks by cross-fitting).
        mode: "fast" trains a head on cached embeddings; "finetune" trains the whole backbone.
        head_hidden: hidden units of the head; 0 means a linear head (exportable to plain timm).
        max_epochs: training epochs per round; None picks a default: 10 L-BFGS passes for the head in fast mode,
            3 passes over the labeled images for the whole model in fine-tune mode (where the head's linear probe
            before it always uses its own default).
        seed: random seed for splits, training and selection.
        devices: processes per machine for embedding and fine-tuning (GPUs, or CPU processes); 1 = in-process.
        num_nodes: machines for embedding and fine-tuning (more than one needs a cluster launcher: torchrun, SLURM).
        dist_strategy: Lightning strategy when devices x num_nodes > 1: "auto", "ddp_spawn" (from the app) or
            "ddp" (under a launcher).
        overlap: share (0 to 1) of each batch's images that two different annotators label, for measuring how
            well annotators agree when many label one project; 0 = every image is labeled once.
    """

    backbone: str = "tf_efficientnet_lite0"
    backbone_source: str = "bundled"
    weights: str | None = None
    image_size: int | None = None
    strategy: str = "margin_diverse"
    batch_size: int = 10
    audit_share: float = 0.1
    val_fraction: float = 0.2
    min_val: int = 10
    mode: str = "fast"
    head_hidden: int = 0
    max_epochs: int | None = None
    seed: int = 0
    devices: int = 1
    num_nodes: int = 1
    dist_strategy: str = "auto"
    overlap: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("The batch size must be at least 1.")
        if not 0.0 <= self.audit_share <= 0.5:
            raise ValueError("The share of random checks must be between 0 and 0.5.")
        if not 0.0 <= self.val_fraction < 0.9:
            raise ValueError("The validation fraction must be between 0 and 0.9.")
        if self.mode not in MODES:
            raise ValueError(f"Unknown training mode '{self.mode}'; choose one of {', '.join(MODES)}.")
        if self.image_size is not None and self.image_size < 16:
            raise ValueError("The image size must be at least 16 pixels.")
        if self.devices < 1 or self.num_nodes < 1:
            raise ValueError("devices and num_nodes must be at least 1.")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ValueError("The number of training epochs must be at least 1 (or empty for the default).")
        if not 0.0 <= self.overlap <= 1.0:
            raise ValueError(
                "The overlap (share of images labeled by two annotators) must be between 0 and 1, like 0.1 for 10%."
            )

    @property
    def finetune_epochs(self) -> int:
        """Passes over the labeled images when fine-tuning the whole model."""
        return FINETUNE_EPOCHS if self.max_epochs is None else int(self.max_epochs)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, ready for JSON or YAML."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProjectSettings:
        """Build settings from a mapping, refusing unknown keys with a clear message."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown setting(s): {', '.join(unknown)}. Known settings: {', '.join(sorted(known))}.")
        return cls(**values)

    def replace(self, **changes: Any) -> ProjectSettings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def load_settings(path: str | Path) -> ProjectSettings:
    """Read settings from a YAML file (see `configs/default.yaml`)."""
    with open(path, encoding="utf-8") as fh:
        values = yaml.safe_load(fh) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of setting names to values.")
    return ProjectSettings.from_dict(values)


def default_settings() -> ProjectSettings:
    """The defaults from `configs/default.yaml` (or the dataclass defaults when the file is absent)."""
    path = CONFIG_DIR / "default.yaml"
    return load_settings(path) if path.exists() else ProjectSettings()
