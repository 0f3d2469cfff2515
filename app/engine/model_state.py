"""The model side of a project: the lazily loaded backbone, the current model (a `Fitted`) and its predictions.

Model files are `app.engine.checkpoints`' business; `ModelState` says which model is current (the active model),
keeps it there, and remembers a loaded checkpoint in the project's settings (``active_model``) so a restart brings
back the model that was active. A round that finishes makes its new model, trained on every label, active again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import ModelFileError, StoreError
from app.core.settings import ProjectSettings
from app.core.store import ProjectStore
from app.engine.checkpoints import IMPORTED, Checkpoints
from app.engine.embedding_cache import EmbeddingCache
from app.engine.learners import Fitted
from app.engine.pool_scoring import pool_probs
from lit_models.backbones import BackboneSpec, LoadedBackbone, load_backbone

__all__ = ["ACTIVE_SETTING", "IMPORTED", "ActiveModel", "ModelState", "spec_from_settings"]

ACTIVE_SETTING = "active_model"  # the project setting naming a loaded checkpoint; None: the newest round's model
ON_DEMAND = 4096  # images a probability lookup scores itself after a round scored only its candidates


@dataclass(frozen=True)
class ActiveModel:
    """Which model of a project is active: the one that guesses, picks the next images and is exported.

    Attributes:
        round: the round that trained it (0: an imported model's own classifier).
        labeled: how many labels it was trained on.
        checkpoint: the named checkpoint it was loaded from; None for the model of the newest round.
    """

    round: int
    labeled: int
    checkpoint: str | None = None

    def describe(self) -> str:
        """In plain words, to use inside a sentence: "the model of round 4 (46 labels, loaded from checkpoint 'x')",
        "the model of round 5 (58 labels)" or "the imported model"."""
        details = [] if self.round <= 0 else [f"{self.labeled} label{'' if self.labeled == 1 else 's'}"]
        if self.checkpoint and self.checkpoint != IMPORTED:
            details.append(f"loaded from checkpoint '{self.checkpoint}'")
        text = "the imported model" if self.round <= 0 else f"the model of round {self.round}"
        return f"{text} ({', '.join(details)})" if details else text

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for a setting or an export's metadata (``description``: `describe()` as a sentence's start)."""
        text = self.describe()
        return {
            "round": self.round,
            "labeled": self.labeled,
            "checkpoint": self.checkpoint,
            "description": text[:1].upper() + text[1:],
        }


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

    def __init__(self, root: Path, settings: ProjectSettings, store: ProjectStore | None = None) -> None:
        """Args:
        root: the project folder.
        settings: the project's settings (its backbone).
        store: the project's store: the rounds that name the active model and the setting that keeps a loaded
            checkpoint active across a restart (None: neither, e.g. a bare state in a test).
        """
        self.root = Path(root)
        self.settings = settings
        self.store = store
        self.spec = spec_from_settings(settings)
        self.cache = EmbeddingCache(self.root / "embeddings" / self.spec.key())
        self.checkpoints = Checkpoints(self.root, self.spec.key())
        self._lock = threading.RLock()
        self._backbone: LoadedBackbone | None = None
        self._fitted: Fitted | None = None
        self._loaded: ActiveModel | None = None  # the named checkpoint the current model came from, if it did
        self._complete_lock = threading.Lock()  # one `complete_probs` at a time
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
            self._forget_loaded()
            self.generation += 1

    def set_current(self, fitted: Fitted) -> None:
        """Make `fitted`, a round's new model, the current one (its probabilities included); a checkpoint loaded
        before is no longer active, now or after a restart. Drops other fine-tuned pools' embeddings."""
        with self._lock:
            self._fitted = fitted
            self._forget_loaded()
            self.generation += 1
        self.checkpoints.prune_tuned_caches(keep=fitted.cache)

    def active(self) -> ActiveModel | None:
        """Which model is active (round, labels it was trained on, the checkpoint it came from); None without one."""
        with self._lock:
            if self.head is None:
                return None
            if self._loaded is not None:
                return self._loaded
        last = None if self.store is None else self.store.latest_round()
        return ActiveModel(0, 0) if last is None else ActiveModel(last.number, last.labeled)

    def _forget_loaded(self) -> None:
        """The current model is no longer a loaded checkpoint: the newest round's model is active again."""
        if self._loaded is not None and self.store is not None:
            self.store.update_settings(**{ACTIVE_SETTING: None})
        self._loaded = None

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
            wanted = np.asarray(ids, dtype=np.int64).reshape(-1)
            cached = wanted[np.isin(wanted, cache.ids())]
            if not len(cached):
                return
            probs = pool_probs(self.head, cache.matrix(cached))  # float16 blocks from the memory map, no copy
            self._fitted = self._fitted.scored(cached, probs)
            self.generation += 1

    def complete_probs(self) -> bool:
        """Score every cached image of the project with the current model when a round on a big pool scored only its
        candidates (`Fitted.partial`, `app.core.candidates`); kept only while that model is still current. The
        probabilities of the images already scored do not change (the same model), so `generation` stays.

        Runs in the background after such a round (`ActiveLearningSession.run_round`), and on demand when something
        needs the rest of the pool first; one at a time (a second caller waits and finds the work done).

        Returns:
            Whether probabilities were added.
        """
        added = False
        with self._complete_lock:
            while True:  # until the current model is whole: a newer partial one may come while one is scored
                with self._lock:
                    fitted = self._fitted
                    if fitted is None or not fitted.partial or fitted.head is None or self.store is None:
                        return added
                    cache = self.current_cache()
                wanted = np.asarray(self.store.image_ids(), dtype=np.int64)
                cached = wanted[np.isin(wanted, cache.ids())]
                probs = pool_probs(fitted.head, cache.matrix(cached))  # the memory map, block by block
                with self._lock:
                    if self._fitted is fitted:  # else a newer model came meanwhile: score that one, if it needs it
                        self._fitted = fitted.scored(cached, probs)
                        added = True

    def scored(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(image ids, probabilities) of every image the current model has scored, or None before a model; every
        cached image (scored first when a round on a big pool scored only its candidates)."""
        self.complete_probs()
        with self._lock:
            fitted = self._fitted
            if fitted is None or fitted.probs is None or len(fitted.ids) == 0:
                return None
            return np.asarray(fitted.ids), np.asarray(fitted.probs)

    def probs_for(self, ids: Sequence[int]) -> np.ndarray | None:
        """Probabilities (len(ids), C) for images the current model has scored, or None.

        After a round on a big pool scored only its candidates, the other images of `ids` are scored on demand
        (up to `ON_DEMAND` of them; more: the whole pool first, see `complete_probs`)."""
        wanted = np.asarray(ids, dtype=np.int64).reshape(-1)
        with self._lock:
            fitted = self._fitted
        if fitted is None or fitted.probs is None or len(fitted.ids) == 0:
            return None
        found = fitted.probs_of(wanted)
        if found is not None or not fitted.partial:
            return found
        missing = ~np.isin(wanted, fitted.ids)
        if int(missing.sum()) > ON_DEMAND:
            self.complete_probs()
            with self._lock:
                fitted = self._fitted
            return None if fitted is None else fitted.probs_of(wanted)
        try:  # the current model on the few images its round did not score
            extra = pool_probs(fitted.head, self.current_cache().matrix(wanted[missing]))
        except KeyError:  # not embedded yet
            return None
        out = np.empty((len(wanted), fitted.probs.shape[1]), dtype=fitted.probs.dtype)
        out[missing] = extra
        out[~missing] = fitted.probs_of(wanted[~missing])
        return out

    # -------------------------------------------------------------- checkpoints
    def restore_active(self) -> None:
        """On open: load the model that was active, with its predictions when its embeddings are cached.

        That is the checkpoint loaded last (the ``active_model`` setting) unless a round finished since, else the
        newest round's model (or an imported model's before any round). A remembered checkpoint that is gone,
        damaged or trained for other labels is forgotten, and the newest round's model is active instead.
        """
        store = self.store
        if store is None:
            return
        fitted = self._restore_loaded(store)
        if fitted is None:
            rounds = [r for r in store.rounds() if r.checkpoint]
            fitted = self.checkpoints.load_latest(rounds[-1].checkpoint if rounds else None, store.labels())
        if fitted is None:
            return
        with self._lock:
            self._fitted = fitted
        ids = store.image_ids()
        if not self.current_cache().missing(ids):
            self.refresh_probs(ids)

    def _restore_loaded(self, store: ProjectStore) -> Fitted | None:
        """The remembered checkpoint's model (and it is the loaded one now), or None when there is none to restore."""
        choice = store.get_setting(ACTIVE_SETTING)
        if not isinstance(choice, dict) or not choice.get("checkpoint"):
            return None
        last = store.latest_round()
        if (0 if last is None else last.number) == choice.get("after_round"):  # else a newer round's model wins
            try:
                fitted, info = self.checkpoints.load_named(str(choice["checkpoint"]), store.labels())
            except (StoreError, ModelFileError, OSError, ValueError):
                pass  # gone, damaged or for other labels: forgotten below
            else:
                self._loaded = _from_info(info)
                return fitted
        store.update_settings(**{ACTIVE_SETTING: None})
        return None

    def save_named(self, name: str, round_number: int | None = None, labeled: int | None = None) -> str:
        """Save the current model as a named checkpoint; returns the name.

        Args:
            round_number: the round that trained it; None: the active model's.
            labeled: how many labels it was trained on; None: the active model's.
        """
        with self._lock:
            active = self.active()
            if active is None:
                raise StoreError("There is no model to save yet: label a batch so the first round can train one.")
            if self.is_finetuned():
                self.current_backbone()  # a fine-tuned backbone read from a checkpoint is saved again: load it
            round_number = active.round if round_number is None else round_number
            labeled = active.labeled if labeled is None else labeled
            return self.checkpoints.save_named(name, self._fitted, round_number, labeled)

    def list_named(self) -> list[dict[str, Any]]:
        """Named checkpoints (not the per-round ones), newest first."""
        return self.checkpoints.list_named()

    def load_named(self, name: str, labels: Sequence[str]) -> dict[str, Any]:
        """Make the named checkpoint current (without probabilities yet) and remember it as the active model, so a
        restart keeps it until a round trains a newer one; its labels must match the project's.

        Returns:
            The checkpoint's metadata, with ``active``: the `ActiveModel` it now is.
        """
        fitted, info = self.checkpoints.load_named(name, list(labels))
        active = _from_info(info)
        with self._lock:
            self._fitted = fitted
            self._loaded = active
            self.generation += 1
            if self.store is not None:
                last = self.store.latest_round()
                after = 0 if last is None else last.number
                self.store.update_settings(**{ACTIVE_SETTING: {**active.to_dict(), "after_round": after}})
        self.checkpoints.prune_tuned_caches(keep=fitted.cache)
        return {**info, "active": active}


def _from_info(info: dict[str, Any]) -> ActiveModel:
    """The active model a named checkpoint's metadata describes."""
    return ActiveModel(int(info.get("round") or 0), int(info.get("labeled") or 0), str(info["name"]))
