"""The model side of a project: backbone, cached embeddings, current head, its predictions, checkpoints."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import StoreError
from app.core.settings import ProjectSettings
from app.core.store import ProjectStore
from app.engine.embedding_cache import EmbeddingCache
from lit_models.backbones import BackboneSpec, LoadedBackbone, load_backbone
from lit_models.export import load_head_checkpoint, save_head_checkpoint
from lit_models.train import predict_proba


def spec_from_settings(settings: ProjectSettings) -> BackboneSpec:
    """The backbone a project's settings describe."""
    return BackboneSpec(
        arch=settings.backbone,
        source=settings.backbone_source,
        weights=settings.weights,
        image_size=settings.image_size,
    )


class ModelState:
    """Thread-safe holder of everything model-related for one project folder."""

    def __init__(self, root: Path, settings: ProjectSettings) -> None:
        self.root = Path(root)
        self.settings = settings
        self.spec = spec_from_settings(settings)
        self.cache = EmbeddingCache(self.root / "embeddings" / self.spec.key())
        self.ckpt_dir = self.root / "checkpoints"
        self._lock = threading.RLock()
        self._backbone: LoadedBackbone | None = None
        self.head: Any = None
        self.label_names: list[str] = []
        self._ids: np.ndarray = np.empty(0, dtype=np.int64)
        self._probs: np.ndarray | None = None

    def backbone(self) -> LoadedBackbone:
        """The feature extractor, loaded on first use."""
        with self._lock:
            if self._backbone is None:
                self._backbone = load_backbone(self.spec)
            return self._backbone

    def has_model(self) -> bool:
        return self.head is not None

    # ---------------------------------------------------------- predictions
    def set_current(self, head: Any, label_names: Sequence[str], ids: Sequence[int], probs: np.ndarray | None) -> None:
        """Make `head` the current model with its probabilities for `ids`."""
        with self._lock:
            self.head = head
            self.label_names = list(label_names)
            self._ids = np.asarray(ids, dtype=np.int64)
            self._probs = probs

    def refresh_probs(self, ids: Sequence[int]) -> None:
        """Recompute probabilities for every cached image with the current head."""
        with self._lock:
            if self.head is None:
                return
            cached = [i for i in ids if i in set(self.cache.ids().tolist())]
            if not cached:
                return
            self._ids = np.asarray(cached, dtype=np.int64)
            self._probs = predict_proba(self.head, self.cache.get(cached))

    def probs_for(self, ids: Sequence[int]) -> np.ndarray | None:
        """Probabilities (len(ids), C) for images the current model has scored, or None."""
        with self._lock:
            if self._probs is None or len(self._ids) == 0:
                return None
            order = np.argsort(self._ids)
            pos = np.searchsorted(self._ids, ids, sorter=order)
            pos = np.clip(pos, 0, len(order) - 1)
            rows = order[pos]
            if not np.array_equal(self._ids[rows], np.asarray(ids, dtype=np.int64)):
                return None
            return self._probs[rows]

    # ---------------------------------------------------------- checkpoints
    def _meta_path(self, ckpt: Path) -> Path:
        return ckpt.with_suffix(".json")

    def _write(self, path: Path, head: Any, label_names: Sequence[str], meta: dict[str, Any]) -> str:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_head_checkpoint(head, path)
        info = {"label_names": list(label_names), "backbone": self.spec.key(), "created": time.time(), **meta}
        self._meta_path(path).write_text(json.dumps(info, indent=2), encoding="utf-8")
        return str(path.relative_to(self.root))

    def save_round(self, number: int, head: Any, label_names: Sequence[str]) -> str:
        """Keep the model of round `number`; returns its path relative to the project."""
        return self._write(self.ckpt_dir / f"round_{number:04d}.ckpt", head, label_names, {"round": number})

    def restore_latest(self, store: ProjectStore) -> None:
        """Load the newest round's model and its predictions (on project open)."""
        rounds = [r for r in store.rounds() if r.checkpoint]
        if not rounds:
            return
        path = self.root / rounds[-1].checkpoint
        meta_path = self._meta_path(path)
        if not path.exists() or not meta_path.exists():
            return
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("label_names") != store.labels():
            return  # labels changed since: the next round trains a fresh model
        with self._lock:
            self.head = load_head_checkpoint(path)
            self.label_names = meta["label_names"]
        ids = store.image_ids()
        if not self.cache.missing(ids):
            self.refresh_probs(ids)

    def save_named(self, name: str, round_number: int, labeled: int) -> str:
        """Save the current model as a named checkpoint."""
        with self._lock:
            if self.head is None:
                raise StoreError("There is no model to save yet: label a batch so the first round can train one.")
            self._write(
                self.ckpt_dir / f"{name}.ckpt", self.head, self.label_names, {"round": round_number, "labeled": labeled}
            )
        return name

    def list_named(self) -> list[dict[str, Any]]:
        """Named checkpoints (not the per-round ones), newest first."""
        if not self.ckpt_dir.is_dir():
            return []
        out = []
        for meta_path in self.ckpt_dir.glob("*.json"):
            if meta_path.stem.startswith("round_"):
                continue
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            out.append({"name": meta_path.stem, **{k: meta.get(k) for k in ("round", "labeled", "created")}})
        return sorted(out, key=lambda m: m.get("created") or 0, reverse=True)

    def load_named(self, name: str, labels: Sequence[str]) -> dict[str, Any]:
        """Make the named checkpoint current; its labels must match the project's."""
        path = self.ckpt_dir / f"{name}.ckpt"
        if not path.exists():
            raise StoreError(f"There is no checkpoint named '{name}'.")
        meta = json.loads(self._meta_path(path).read_text(encoding="utf-8"))
        if meta.get("label_names") != list(labels):
            raise StoreError(
                f"The checkpoint '{name}' was trained for the labels {meta.get('label_names')}, but the project now "
                f"has {list(labels)}. Run a round to train a model for the current labels."
            )
        with self._lock:
            self.head = load_head_checkpoint(path)
            self.label_names = list(labels)
            self._probs = None
            self._ids = np.empty(0, dtype=np.int64)
        return {"name": name, **meta}
