"""The model side of a project: backbone, cached embeddings, current head, its predictions, checkpoints."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.core.atomic import atomic_path
from app.core.errors import StoreError
from app.core.settings import ProjectSettings
from app.core.store import ProjectStore
from app.engine.embedding_cache import EmbeddingCache
from lit_models.backbones import BackboneSpec, LoadedBackbone, load_backbone
from lit_models.export import load_head_checkpoint, save_head_checkpoint
from lit_models.finetune import load_backbone_weights, save_backbone_weights
from lit_models.train import predict_proba

IMPORTED = "imported-model"  # the checkpoint of an imported model's own classifier (see `ModelState.adopt`)

TUNED_INFIX = "-ft-"  # embeddings/<spec key>-ft-<tag>: the pool embedded by a fine-tuned backbone
BACKBONE_SUFFIX = "_backbone.safetensors"  # checkpoints/<name>_backbone.safetensors: its weights


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
        self.generation = 0  # grows whenever the model's probabilities change
        # fine-tune mode: the current head reads embeddings of a tuned backbone (loaded lazily from its file)
        self._tuned: LoadedBackbone | None = None
        self._tuned_weights: Path | None = None
        self._tuned_cache: EmbeddingCache | None = None

    def backbone(self) -> LoadedBackbone:
        """The feature extractor, loaded on first use."""
        with self._lock:
            if self._backbone is None:
                self._backbone = load_backbone(self.spec)
            return self._backbone

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
            self._write(self.ckpt_dir / f"{IMPORTED}.ckpt", head, label_names, {"round": 0, "labeled": 0})
            self.head = head
            self.label_names = list(label_names)
            self._ids = np.empty(0, dtype=np.int64)
            self._probs = None
            self.generation += 1
            self._tuned, self._tuned_weights, self._tuned_cache = None, None, None

    # ---------------------------------------------------------- fine-tune mode
    def is_finetuned(self) -> bool:
        """Whether the current model uses a fine-tuned backbone (fine-tune mode) rather than the frozen one."""
        with self._lock:
            return self._tuned_cache is not None

    def tuned_cache(self, tag: str) -> EmbeddingCache:
        """The cache for the pool as embedded by a fine-tuned backbone; `tag` names it (e.g. "round0003")."""
        return EmbeddingCache(self.root / "embeddings" / f"{self.spec.key()}{TUNED_INFIX}{tag}")

    def current_cache(self) -> EmbeddingCache:
        """The embeddings the current model reads: the fine-tuned backbone's, else the frozen one's."""
        with self._lock:
            return self._tuned_cache or self.cache

    def current_backbone(self) -> LoadedBackbone:
        """The backbone of the current model (for exports and new images): the fine-tuned one when there is one."""
        with self._lock:
            if self._tuned is None and self._tuned_weights is not None:
                self._tuned = load_backbone_weights(self.backbone(), self._tuned_weights)
            return self._tuned if self._tuned is not None else self.backbone()

    def _prune_tuned_caches(self) -> None:
        """Delete the embeddings of fine-tuned backbones other than the current one (each is as large as the pool's)."""
        with self._lock:
            keep = None if self._tuned_cache is None else self._tuned_cache.directory.resolve()
        for folder in (self.root / "embeddings").glob(f"{self.spec.key()}{TUNED_INFIX}*"):
            if folder.is_dir() and folder.resolve() != keep:
                shutil.rmtree(folder, ignore_errors=True)

    # ---------------------------------------------------------- predictions
    def set_current(
        self,
        head: Any,
        label_names: Sequence[str],
        ids: Sequence[int],
        probs: np.ndarray | None,
        *,
        tuned: LoadedBackbone | None = None,
        tuned_cache: EmbeddingCache | None = None,
    ) -> None:
        """Make `head` the current model with its probabilities for `ids`.

        Args:
            tuned: in fine-tune mode, the fine-tuned backbone whose embeddings (in `tuned_cache`) `head` reads;
                None means the frozen backbone and `cache`.
        """
        with self._lock:
            self.head = head
            self.label_names = list(label_names)
            self._ids = np.asarray(ids, dtype=np.int64)
            self._probs = probs
            self.generation += 1
            self._tuned, self._tuned_weights = tuned, None
            self._tuned_cache = tuned_cache if tuned is not None else None
        self._prune_tuned_caches()

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
            self._ids = np.asarray(cached, dtype=np.int64)
            self._probs = predict_proba(self.head, cache.get(cached))
            self.generation += 1

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

    def _write(
        self,
        path: Path,
        head: Any,
        label_names: Sequence[str],
        meta: dict[str, Any],
        tuned: LoadedBackbone | None = None,
        tuned_cache: EmbeddingCache | None = None,
    ) -> str:
        """Save a checkpoint: the head, its JSON metadata and, in fine-tune mode, the tuned backbone's weights.

        Every file is first written in full beside its final name; only then are they renamed into place, so a
        kill or an error while writing leaves the previous checkpoint of that name complete and loadable.
        """
        weights = path.with_name(path.stem + BACKBONE_SUFFIX)
        if tuned is not None:  # the head reads this backbone's features: keep its weights beside it
            meta = {**meta, "finetuned_backbone": weights.name}
            if tuned_cache is not None:
                meta["embeddings"] = tuned_cache.directory.name
        info = {"label_names": list(label_names), "backbone": self.spec.key(), "created": time.time(), **meta}
        with contextlib.ExitStack() as staged:  # renamed in the reverse order: weights, head, then metadata
            meta_tmp = staged.enter_context(atomic_path(self._meta_path(path)))
            head_tmp = staged.enter_context(atomic_path(path))
            if tuned is not None:
                save_backbone_weights(tuned, staged.enter_context(atomic_path(weights)))
            save_head_checkpoint(head, head_tmp)
            meta_tmp.write_text(json.dumps(info, indent=2), encoding="utf-8")
        if tuned is None:
            weights.unlink(missing_ok=True)
        return str(path.relative_to(self.root))

    def save_round(
        self,
        number: int,
        head: Any,
        label_names: Sequence[str],
        *,
        tuned: LoadedBackbone | None = None,
        tuned_cache: EmbeddingCache | None = None,
    ) -> str:
        """Keep the model of round `number`; returns its path relative to the project.

        In fine-tune mode (`tuned` given) the tuned backbone is saved as `round_<N>_backbone.safetensors`; only the
        newest round keeps its backbone file (each is as large as the backbone).
        """
        path = self.ckpt_dir / f"round_{number:04d}.ckpt"
        out = self._write(path, head, label_names, {"round": number}, tuned, tuned_cache)
        for old in self.ckpt_dir.glob(f"round_*{BACKBONE_SUFFIX}"):
            if old.name != path.stem + BACKBONE_SUFFIX:
                old.unlink(missing_ok=True)
        return out

    def _tuned_from_meta(self, path: Path, meta: dict[str, Any]) -> tuple[Path | None, EmbeddingCache | None]:
        """The backbone weights file and embedding cache a checkpoint's head needs (None, None: the frozen ones).

        Raises:
            FileNotFoundError: the checkpoint needs a fine-tuned backbone whose file is gone.
        """
        name = meta.get("finetuned_backbone")
        if not name:
            return None, None
        weights = path.with_name(name)
        if not weights.is_file():
            raise FileNotFoundError(weights)
        cache_dir = meta.get("embeddings") or f"{self.spec.key()}{TUNED_INFIX}{path.stem}"
        return weights, EmbeddingCache(self.root / "embeddings" / Path(cache_dir).name)

    def restore_latest(self, store: ProjectStore) -> None:
        """Load the newest round's model (or an imported model before any round) and its predictions (on open)."""
        rounds = [r for r in store.rounds() if r.checkpoint]
        path = self.root / rounds[-1].checkpoint if rounds else self.ckpt_dir / f"{IMPORTED}.ckpt"
        meta_path = self._meta_path(path)
        if not path.exists() or not meta_path.exists():
            return
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("label_names") != store.labels():
            return  # labels changed since: the next round trains a fresh model
        try:
            weights, tuned_cache = self._tuned_from_meta(path, meta)
        except FileNotFoundError:
            return  # its fine-tuned backbone is gone: the next round trains a fresh model
        with self._lock:
            self.head = load_head_checkpoint(path)
            self.label_names = meta["label_names"]
            self._tuned, self._tuned_weights, self._tuned_cache = None, weights, tuned_cache
        ids = store.image_ids()
        if not self.current_cache().missing(ids):
            self.refresh_probs(ids)

    def save_named(self, name: str, round_number: int, labeled: int) -> str:
        """Save the current model as a named checkpoint."""
        with self._lock:
            if self.head is None:
                raise StoreError("There is no model to save yet: label a batch so the first round can train one.")
            tuned = self.current_backbone() if self._tuned_cache is not None else None
            self._write(
                self.ckpt_dir / f"{name}.ckpt",
                self.head,
                self.label_names,
                {"round": round_number, "labeled": labeled},
                tuned,
                self._tuned_cache,
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
        try:
            weights, tuned_cache = self._tuned_from_meta(path, meta)
        except FileNotFoundError as e:
            raise StoreError(f"The fine-tuned backbone of checkpoint '{name}' is missing ({e}); save it again.") from e
        with self._lock:
            self.head = load_head_checkpoint(path)
            self.label_names = list(labels)
            self._probs = None
            self.generation += 1
            self._ids = np.empty(0, dtype=np.int64)
            self._tuned, self._tuned_weights, self._tuned_cache = None, weights, tuned_cache
        self._prune_tuned_caches()
        return {"name": name, **meta}
