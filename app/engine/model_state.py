"""The model side of a project: the lazily loaded backbone, the current model (a `Fitted`) and its predictions.

Model files are `app.engine.checkpoints`' business; `ModelState` says which model is current and keeps it there.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import StoreError
from app.core.settings import ProjectSettings
from app.core.store import ProjectStore
from app.engine.checkpoints import IMPORTED, Checkpoints
from app.engine.embedding_cache import EmbeddingCache
from app.engine.learners import Fitted
from lit_models.backbones import BackboneSpec, LoadedBackbone, load_backbone
from lit_models.train import predict_proba

__all__ = ["IMPORTED", "ModelState", "spec_from_settings"]


def spec_from_settings(settings: ProjectSettings) -> BackboneSpec:
    """The backbone a project's settings describe."""
    return BackboneSpec(
        arch=settings.backbone,
        source=settings.backbone_source,
        weights=settings.weights,
        image_size=settings.image_size,
    )


class ModelState:
    """Thread-safe holder of one project's backbone, current model and its predictions.

    Attributes:
        cache: the frozen backbone's embeddings of the project's images.
        checkpoints: the project's model files.
        generation: grows whenever the model's probabilities change.
    """

    def __init__(self, root: Path, settings: ProjectSettings) -> None:
        self.root = Path(root)
        self.settings = settings
        self.spec = spec_from_settings(settings)
        self.cache = EmbeddingCache(self.root / "embeddings" / self.spec.key())
        self.checkpoints = Checkpoints(self.root, self.spec.key())
        self._lock = threading.RLock()
        self._backbone: LoadedBackbone | None = None
        self._fitted: Fitted | None = None
        self.generation = 0

    def backbone(self) -> LoadedBackbone:
        """The (frozen) feature extractor, loaded on first use."""
        with self._lock:
            if self._backbone is None:
                self._backbone = load_backbone(self.spec)
            return self._backbone

    # ------------------------------------------------------------ current model
    @property
    def fitted(self) -> Fitted | None:
        """The current model with its predictions, or None before the first."""
        return self._fitted

    @property
    def head(self) -> Any:
        """The current head (a HeadClassifier), or None. Setting it replaces the head of the current model."""
        fitted = self._fitted
        return None if fitted is None else fitted.head

    @head.setter
    def head(self, head: Any) -> None:
        with self._lock:
            self._fitted = Fitted(head, ()) if self._fitted is None else replace(self._fitted, head=head)

    @property
    def label_names(self) -> list[str]:
        """The current model's labels (one per head output); setting them renames its outputs."""
        fitted = self._fitted
        return [] if fitted is None else list(fitted.label_names)

    @label_names.setter
    def label_names(self, names: Sequence[str]) -> None:
        with self._lock:
            names = tuple(names)
            self._fitted = Fitted(None, names) if self._fitted is None else replace(self._fitted, label_names=names)

    def has_model(self) -> bool:
        return self.head is not None

    def adopt(self, backbone: LoadedBackbone, head: Any | None, label_names: Sequence[str]) -> None:
        """Use an imported model: its already loaded backbone, and its classifier (when it fits the labels) as the
        first model, saved as the checkpoint ``imported-model`` so it survives a restart.

        Args:
            backbone: loaded from this state's spec (same weights); kept instead of loading it again.
            head: a HeadClassifier whose outputs follow `label_names`, or None (the first round trains one).
            label_names: the project's labels.
        """
        with self._lock:
            self._backbone = backbone
            if head is None:
                return
            fitted = Fitted(head, tuple(label_names))
            self.checkpoints.save_imported(fitted)
            self._fitted = fitted
            self.generation += 1

    def set_current(self, fitted: Fitted) -> None:
        """Make `fitted` the current model (its probabilities included); drops other fine-tuned pools' embeddings."""
        with self._lock:
            self._fitted = fitted
            self.generation += 1
        self.checkpoints.prune_tuned_caches(keep=fitted.cache)

    # ------------------------------------------------------------ fine-tune mode
    def is_finetuned(self) -> bool:
        """Whether the current model uses a fine-tuned backbone (fine-tune mode) rather than the frozen one."""
        fitted = self._fitted
        return fitted is not None and fitted.finetuned

    def tuned_cache(self, tag: str) -> EmbeddingCache:
        """The cache for the pool as embedded by a fine-tuned backbone; `tag` names it (e.g. "round0003")."""
        return self.checkpoints.tuned_cache(tag)

    def current_cache(self) -> EmbeddingCache:
        """The embeddings the current model reads: the fine-tuned backbone's, else the frozen one's."""
        fitted = self._fitted
        return fitted.cache if fitted is not None and fitted.cache is not None else self.cache

    def current_backbone(self) -> LoadedBackbone:
        """The backbone of the current model (for exports and new images): the fine-tuned one when there is one."""
        with self._lock:
            fitted = self._fitted
            if fitted is not None and fitted.backbone is None and fitted.backbone_file is not None:
                fitted = self._fitted = self.checkpoints.with_backbone(fitted, self.backbone())
            if fitted is not None and fitted.backbone is not None:
                return fitted.backbone
            return self.backbone()

    # -------------------------------------------------------------- predictions
    def refresh_probs(self, ids: Sequence[int]) -> None:
        """Recompute probabilities for every cached image with the current head."""
        with self._lock:
            if self.head is None:
                return
            cache = self.current_cache()
            have = set(cache.ids().tolist())
            cached = [i for i in ids if i in have]
            if not cached:
                return
            self._fitted = self._fitted.scored(cached, predict_proba(self.head, cache.get(cached)))
            self.generation += 1

    def probs_for(self, ids: Sequence[int]) -> np.ndarray | None:
        """Probabilities (len(ids), C) for images the current model has scored, or None."""
        with self._lock:
            fitted = self._fitted
            if fitted is None or fitted.probs is None or len(fitted.ids) == 0:
                return None
            order = np.argsort(fitted.ids)
            pos = np.searchsorted(fitted.ids, ids, sorter=order)
            pos = np.clip(pos, 0, len(order) - 1)
            rows = order[pos]
            if not np.array_equal(fitted.ids[rows], np.asarray(ids, dtype=np.int64)):
                return None
            return fitted.probs[rows]

    # -------------------------------------------------------------- checkpoints
    def restore_latest(self, store: ProjectStore) -> None:
        """Load the newest round's model (or an imported model before any round) and its predictions (on open)."""
        rounds = [r for r in store.rounds() if r.checkpoint]
        fitted = self.checkpoints.load_latest(rounds[-1].checkpoint if rounds else None, store.labels())
        if fitted is None:
            return
        with self._lock:
            self._fitted = fitted
        ids = store.image_ids()
        if not self.current_cache().missing(ids):
            self.refresh_probs(ids)

    def save_named(self, name: str, round_number: int, labeled: int) -> str:
        """Save the current model as a named checkpoint; returns the name."""
        with self._lock:
            if self.head is None:
                raise StoreError("There is no model to save yet: label a batch so the first round can train one.")
            if self.is_finetuned():
                self.current_backbone()  # a fine-tuned backbone read from a checkpoint is saved again: load it
            return self.checkpoints.save_named(name, self._fitted, round_number, labeled)

    def list_named(self) -> list[dict[str, Any]]:
        """Named checkpoints (not the per-round ones), newest first."""
        return self.checkpoints.list_named()

    def load_named(self, name: str, labels: Sequence[str]) -> dict[str, Any]:
        """Make the named checkpoint current (without probabilities yet); its labels must match the project's."""
        fitted, info = self.checkpoints.load_named(name, list(labels))
        with self._lock:
            self._fitted = fitted
            self.generation += 1
        self.checkpoints.prune_tuned_caches(keep=fitted.cache)
        return info
