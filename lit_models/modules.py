"""LightningModules: a frozen-backbone feature extractor, a small head trained on cached embeddings, and a full
fine-tune of a timm classifier. The timm model is injected; hyperparameters are primitives only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

OPTIMIZERS = ("lbfgs", "adamw")


def _inputs(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, list | tuple) else batch


class EmbeddingExtractor(pl.LightningModule):
    """Runs a backbone (``model(x)`` -> pooled features) over images in ``trainer.predict``.

    Batches may be float tensors (already normalized) or ``uint8`` tensors (0-255, straight from the image), which
    are scaled to [0, 1] and normalized with ``mean`` / ``std`` here, once per batch.
    """

    def __init__(
        self, model: nn.Module, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
    ) -> None:
        """Wrap a backbone; it is used as is (not copied, not trained).

        Args:
            model: the backbone.
            mean: per-channel mean of the normalization applied to ``uint8`` batches (timm's data config).
            std: per-channel standard deviation of that normalization.
        """
        super().__init__()
        self.model = model
        scale = torch.full((1, 3, 1, 1), 1.0 / 255.0)
        shift = torch.zeros((1, 3, 1, 1))
        if mean is not None and std is not None:
            m = torch.tensor([float(v) for v in mean]).reshape(1, -1, 1, 1)
            s = torch.tensor([float(v) for v in std]).reshape(1, -1, 1, 1)
            scale, shift = scale / s, m / s  # (x / 255 - mean) / std = x * scale - shift
        self.register_buffer("_scale", scale, persistent=False)
        self.register_buffer("_shift", shift, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = _inputs(batch)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if x.dtype == torch.uint8:
            x = x.float().mul_(self._scale).sub_(self._shift)
        return self(x).float()


class HeadClassifier(pl.LightningModule):
    """A linear (or one-hidden-layer) classifier on frozen embeddings.

    The loss is class-weighted cross-entropy plus an L2 penalty on the weights, so the linear head converges to one
    well-defined optimum: L-BFGS on the full batch finds it in a few dozen steps and then stops early.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: int = 0,
        lr: float = 1.0,
        weight_decay: float = 1e-3,
        max_epochs: int = 10,
        class_weights: Sequence[float] | None = None,
        optimizer: str = "lbfgs",
    ) -> None:
        """Create the head.

        Args:
            in_features: embedding width.
            num_classes: number of classes (outputs).
            hidden: width of a hidden ReLU layer; 0 means a linear head (the only kind that exports to plain timm).
            lr: learning rate (1.0 suits L-BFGS, about 1e-2 suits AdamW).
            weight_decay: L2 penalty coefficient on the weights (0.5 * wd * ||W||^2 is added to the mean loss).
            max_epochs: passes over the data; with L-BFGS each pass is up to 20 iterations on the full batch.
            class_weights: loss weight per class (e.g. balanced weights against class imbalance); None = equal.
            optimizer: ``"lbfgs"`` (full batch, deterministic, fast) or ``"adamw"`` (mini-batches).
        """
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer '{optimizer}'; choose one of {', '.join(OPTIMIZERS)}.")
        if class_weights is not None:
            class_weights = [float(w) for w in class_weights]
            if len(class_weights) != num_classes:
                raise ValueError(f"Got {len(class_weights)} class weights for {num_classes} classes.")
        self.save_hyperparameters()
        if hidden > 0:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
            )
        else:
            self.net = nn.Linear(in_features, num_classes)
        weights = torch.tensor(class_weights if class_weights is not None else [1.0] * num_classes)
        self.register_buffer("loss_weights", weights, persistent=False)
        self.val_metrics: dict[str, float] = {}
        self.temperature = 1.0  # the calibration temperature already divided into the last layer (see `tempered`)
        self._last_loss: float | None = None
        self._epoch_loss: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for embeddings, shape (B, num_classes)."""
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y, weight=self.loss_weights) + self._penalty()
        # No self.log here: L-BFGS calls this ~100 times per fit and logging costs more than the step itself.
        self._epoch_loss = float(loss.detach())
        return loss

    def on_train_start(self) -> None:
        self._last_loss = self._epoch_loss = None

    def on_train_epoch_end(self) -> None:
        if self._epoch_loss is None:
            return
        self.log("train_loss", self._epoch_loss)  # last loss of the epoch (the full-batch loss for L-BFGS)
        # Full-batch L-BFGS: once the loss stops changing between epochs the optimum is reached; stop early.
        if self.hparams.optimizer != "lbfgs":
            return
        last, self._last_loss = self._last_loss, self._epoch_loss
        if last is not None and abs(last - self._epoch_loss) <= 1e-6 * max(1.0, abs(self._epoch_loss)):
            self.trainer.should_stop = True

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y, weight=self.loss_weights), batch_size=len(y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), batch_size=len(y))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self(_inputs(batch)).softmax(dim=1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.hparams.optimizer == "lbfgs":
            return torch.optim.LBFGS(
                self.parameters(),
                lr=self.hparams.lr,
                max_iter=20,
                history_size=10,
                line_search_fn="strong_wolfe",
                tolerance_grad=1e-5,  # converged for classification; the default 1e-7 costs 20 % more steps
            )
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=0.0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["temperature"] = float(self.temperature)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.temperature = float(checkpoint.get("temperature", 1.0))

    @torch.no_grad()
    def tempered(self, temperature: float) -> HeadClassifier:
        """A copy whose logits are this head's divided by `temperature` (calibrated probabilities; same guesses).

        The division is folded into the last layer, so checkpoints, ONNX and timm exports carry it.
        """
        head = type(self)(**self.hparams)
        head.load_state_dict(self.state_dict())
        last = [m for m in head.net.modules() if isinstance(m, nn.Linear)][-1]
        last.weight.div_(float(temperature))
        last.bias.div_(float(temperature))
        head.temperature = float(self.temperature) * float(temperature)
        return head.eval()

    def linear_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight (C, D) and bias (C,) of the equivalent plain linear layer on raw embeddings (linear heads only)."""
        if not isinstance(self.net, nn.Linear):
            raise ValueError("Only a linear head (hidden=0) has an equivalent linear layer.")
        return self.net.weight.detach().clone(), self.net.bias.detach().clone()

    def _penalty(self) -> torch.Tensor:
        wd = float(self.hparams.weight_decay)
        if wd <= 0:
            return torch.zeros((), device=self.device)
        weights = [m.weight for m in self.net.modules() if isinstance(m, nn.Linear)]
        return 0.5 * wd * sum((w * w).sum() for w in weights)


class FineTuneClassifier(pl.LightningModule):
    """Trains a whole image classifier (backbone and head) on labeled images: for GPU users.

    The model is either injected (e.g. from ``export.build_classifier``, a good start) or, when loading a
    checkpoint, rebuilt from the primitive hyperparameters ``arch``, ``num_classes`` and ``hidden``, so
    ``FineTuneClassifier.load_from_checkpoint(path, weights_only=True)`` needs nothing else. Use it with
    :class:`lit_models.data.ImageDataModule` and ``backbones.train_transform`` for timm's augmentation.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        arch: str = "",
        num_classes: int = 0,
        hidden: int = 0,
        separate_head: bool = False,
        label_names: Sequence[str] | None = None,
        data_config: dict[str, Any] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        max_epochs: int = 10,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.1,
    ) -> None:
        """Create the module.

        Args:
            model: classifier to train (logits out); None builds an untrained one from ``arch``/``num_classes``/
                ``hidden`` (used when loading a checkpoint).
            arch: timm architecture of the model.
            num_classes: number of classes.
            hidden: hidden width of the head when the model is a :class:`BackboneWithHead`.
            separate_head: the model is a :class:`BackboneWithHead` (backbone, then a :class:`HeadClassifier`)
                rather than a timm model with its own classifier; always true when ``hidden > 0``.
            label_names: class names, kept with the checkpoint.
            data_config: timm data config (input size, normalization), kept with the checkpoint.
            lr: peak AdamW learning rate (low: the backbone is pretrained).
            weight_decay: AdamW weight decay.
            max_epochs: passes over the data (the cosine schedule spans the whole run).
            class_weights: loss weight per class; None = equal.
            label_smoothing: cross-entropy label smoothing.
        """
        super().__init__()
        if model is None:
            model = _build_model(arch, num_classes, hidden, separate_head)
        num_classes = num_classes or int(getattr(model, "num_classes", 0) or 0)
        separate_head = isinstance(model, BackboneWithHead)
        if class_weights is not None:
            class_weights = [float(w) for w in class_weights]
        if label_names is not None:
            label_names = [str(n) for n in label_names]
        self.save_hyperparameters(ignore=["model"])
        self.hparams.update(
            num_classes=num_classes,
            separate_head=separate_head,
            class_weights=class_weights,
            label_names=label_names,
            data_config=None if data_config is None else dict(data_config),
        )
        self.model = model
        weights = None if class_weights is None else torch.tensor(class_weights)
        if weights is not None and num_classes and len(weights) != num_classes:
            raise ValueError(f"Got {len(weights)} class weights for {num_classes} classes.")
        self.register_buffer("loss_weights", weights, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (B, num_classes)."""
        return self.model(x)

    def on_fit_start(self) -> None:
        self.model.train()  # Lightning keeps the mode it finds; an injected model often comes in eval mode

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(
            self(x), y, weight=self.loss_weights, label_smoothing=float(self.hparams.label_smoothing)
        )
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y), batch_size=len(y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), batch_size=len(y))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = _inputs(batch)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self(x).float().softmax(dim=1)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 0
        total = int(total) if isinstance(total, int | float) and math.isfinite(total) and total > 0 else 1
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled pre-classifier embeddings, shape (B, num_features), for re-embedding the pool."""
        if isinstance(self.model, BackboneWithHead):
            return self.model.backbone(x)
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class BackboneWithHead(nn.Module):
    """Backbone followed by a head: ``head(backbone(x))`` -> logits. Used for heads with a hidden layer."""

    def __init__(self, backbone: nn.Module, head: nn.Module, label_names: Sequence[str] = ()) -> None:
        """Combine the two modules (they are used as given, not copied)."""
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.label_names = list(label_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _build_model(arch: str, num_classes: int, hidden: int, separate_head: bool) -> nn.Module:
    """An untrained classifier of the given shape (weights are expected to come from a checkpoint)."""
    import timm

    if not arch or num_classes <= 0:
        raise ValueError("Pass a model, or an architecture name and a number of classes.")
    if hidden > 0 or separate_head:
        backbone = timm.create_model(arch, pretrained=False, num_classes=0)
        return BackboneWithHead(backbone, HeadClassifier(int(backbone.num_features), num_classes, hidden=hidden))
    return timm.create_model(arch, pretrained=False, num_classes=num_classes)
