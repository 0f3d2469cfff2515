"""Every model file of a project, read and written here only: the checkpoints of rounds, the named ones a person
saves, the imported model's, and in fine-tune mode the tuned backbone's weights beside each.

``checkpoints/<name>.ckpt`` holds the head (a Lightning checkpoint), ``<name>.json`` its label names, backbone and
round, and ``<name>_backbone.safetensors`` the fine-tuned backbone whose features the head reads (the pool as that
backbone embeds it is ``embeddings/<backbone key>-ft-<tag>``, named in the JSON). This module reads and writes
:class:`app.engine.learners.Fitted` models; which one is current is `ModelState`'s business.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.core.atomic import atomic_path
from app.core.errors import ModelFileError, StoreError
from app.engine.embedding_cache import EmbeddingCache
from app.engine.learners import Fitted
from lit_models.backbones import LoadedBackbone
from lit_models.export import load_head_checkpoint, save_head_checkpoint
from lit_models.finetune import load_backbone_weights, save_backbone_weights

IMPORTED = "imported-model"  # the checkpoint of an imported model's own classifier (see `ModelState.adopt`)
TUNED_INFIX = "-ft-"  # embeddings/<spec key>-ft-<tag>: the pool embedded by a fine-tuned backbone
BACKBONE_SUFFIX = "_backbone.safetensors"  # checkpoints/<name>_backbone.safetensors: its weights
ROUND_PREFIX = "round_"


def _meta_path(ckpt: Path) -> Path:
    return ckpt.with_suffix(".json")


class Checkpoints:
    """The model files of one project folder (thread-safety: the caller's; `ModelState` holds its lock)."""

    def __init__(self, root: Path, backbone_key: str) -> None:
        """Args:
        root: the project folder.
        backbone_key: the frozen backbone's key (`BackboneSpec.key()`): names the embeddings and is kept in the
            JSON of every checkpoint.
        """
        self.root = Path(root)
        self.dir = self.root / "checkpoints"
        self.backbone_key = backbone_key
        self._embeddings = self.root / "embeddings"

    # --------------------------------------------------------- fine-tuned pools
    def tuned_cache(self, tag: str) -> EmbeddingCache:
        """The cache for the pool as embedded by a fine-tuned backbone; `tag` names it (e.g. "round0003")."""
        return EmbeddingCache(self._embeddings / f"{self.backbone_key}{TUNED_INFIX}{tag}")

    def prune_tuned_caches(self, keep: EmbeddingCache | None) -> None:
        """Delete the embeddings of fine-tuned backbones other than `keep` (each is as large as the pool's)."""
        kept = None if keep is None else keep.directory.resolve()
        for folder in self._embeddings.glob(f"{self.backbone_key}{TUNED_INFIX}*"):
            if folder.is_dir() and folder.resolve() != kept:
                shutil.rmtree(folder, ignore_errors=True)

    # ------------------------------------------------------------------ writing
    def _write(self, path: Path, fitted: Fitted, meta: dict[str, Any]) -> str:
        """Save a checkpoint: the head, its JSON metadata and, in fine-tune mode, the tuned backbone's weights.

        Every file is first written in full beside its final name; only then are they renamed into place, so a
        kill or an error while writing leaves the previous checkpoint of that name complete and loadable.

        Raises:
            ValueError: a fine-tuned model whose backbone is not loaded (load it before saving).
        """
        weights = path.with_name(path.stem + BACKBONE_SUFFIX)
        if fitted.finetuned:  # the head reads this backbone's features: keep its weights beside it
            if fitted.backbone is None:
                raise ValueError("Load the fine-tuned backbone before saving its model.")
            meta = {**meta, "finetuned_backbone": weights.name, "embeddings": fitted.cache.directory.name}
        info = {"label_names": list(fitted.label_names), "backbone": self.backbone_key, "created": time.time(), **meta}
        with contextlib.ExitStack() as staged:  # renamed in the reverse order: weights, head, then metadata
            meta_tmp = staged.enter_context(atomic_path(_meta_path(path)))
            head_tmp = staged.enter_context(atomic_path(path))
            if fitted.finetuned:
                save_backbone_weights(fitted.backbone, staged.enter_context(atomic_path(weights)))
            save_head_checkpoint(fitted.head, head_tmp)
            meta_tmp.write_text(json.dumps(info, indent=2), encoding="utf-8")
        if not fitted.finetuned:
            weights.unlink(missing_ok=True)
        return str(path.relative_to(self.root))

    def save_round(self, number: int, fitted: Fitted) -> str:
        """Keep the model of round `number`; returns its path relative to the project.

        In fine-tune mode the tuned backbone is saved as `round_<N>_backbone.safetensors`; only the newest round
        keeps its backbone file (each is as large as the backbone).
        """
        path = self.dir / f"{ROUND_PREFIX}{number:04d}.ckpt"
        out = self._write(path, fitted, {"round": number})
        for old in self.dir.glob(f"{ROUND_PREFIX}*{BACKBONE_SUFFIX}"):
            if old.name != path.stem + BACKBONE_SUFFIX:
                old.unlink(missing_ok=True)
        return out

    def save_named(self, name: str, fitted: Fitted, round_number: int, labeled: int) -> str:
        """Save `fitted` as the named checkpoint `name` (replacing one of that name); returns the name."""
        self._write(self.dir / f"{name}.ckpt", fitted, {"round": round_number, "labeled": labeled})
        return name

    def save_imported(self, fitted: Fitted) -> None:
        """Keep an imported model's own classifier (checkpoint ``imported-model``), so it survives a restart."""
        self._write(self.dir / f"{IMPORTED}.ckpt", fitted, {"round": 0, "labeled": 0})

    # ------------------------------------------------------------------ reading
    def list_named(self) -> list[dict[str, Any]]:
        """Named checkpoints (not the per-round ones), newest first: name, round, labeled, created."""
        if not self.dir.is_dir():
            return []
        out = []
        for meta_path in self.dir.glob("*.json"):
            if meta_path.stem.startswith(ROUND_PREFIX):
                continue
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            out.append({"name": meta_path.stem, **{k: meta.get(k) for k in ("round", "labeled", "created")}})
        return sorted(out, key=lambda m: m.get("created") or 0, reverse=True)

    def _read(self, path: Path, meta: dict[str, Any], label_names: list[str]) -> Fitted:
        """The model of checkpoint `path` (its tuned backbone is loaded on first use; no probabilities yet).

        Raises:
            FileNotFoundError: the checkpoint needs a fine-tuned backbone whose file is gone.
            app.core.errors.ModelFileError: the head's file is damaged.
        """
        weights, cache = None, None
        if name := meta.get("finetuned_backbone"):
            weights = path.with_name(name)
            if not weights.is_file():
                raise FileNotFoundError(weights)
            folder = meta.get("embeddings") or f"{self.backbone_key}{TUNED_INFIX}{path.stem}"
            cache = EmbeddingCache(self._embeddings / Path(folder).name)
        head = load_head_checkpoint(path)
        if int(head.hparams.num_classes) != len(label_names):  # a save stopped between its renames
            raise ModelFileError(f"The checkpoint '{path.stem}' does not match its label list; save it again.")
        return Fitted(head, tuple(label_names), cache=cache, backbone_file=weights)

    def with_backbone(self, fitted: Fitted, frozen: LoadedBackbone) -> Fitted:
        """`fitted` with its fine-tuned backbone loaded from its weights file into a copy of `frozen` (unchanged
        when there is nothing to load)."""
        if fitted.backbone is not None or fitted.backbone_file is None:
            return fitted
        return replace(fitted, backbone=load_backbone_weights(frozen, fitted.backbone_file))

    def load_latest(self, round_checkpoint: str | None, labels: list[str]) -> Fitted | None:
        """The newest round's model (`round_checkpoint`, relative to the project), or the imported model's before any
        round; None when there is none, it was trained for other labels, or its fine-tuned backbone is gone."""
        path = self.root / round_checkpoint if round_checkpoint else self.dir / f"{IMPORTED}.ckpt"
        meta_path = _meta_path(path)
        if not path.exists() or not meta_path.exists():
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("label_names") != labels:
            return None  # labels changed since: the next round trains a fresh model
        try:
            return self._read(path, meta, meta["label_names"])
        except (FileNotFoundError, ModelFileError):
            return None  # its fine-tuned backbone is gone, or it is damaged: the next round trains a fresh model

    def load_named(self, name: str, labels: list[str]) -> tuple[Fitted, dict[str, Any]]:
        """The named checkpoint's model and its metadata (``name`` included); its labels must be `labels`.

        Raises:
            StoreError: no such checkpoint, other labels, or its fine-tuned backbone is missing.
        """
        path = self.dir / f"{name}.ckpt"
        if not path.exists():
            raise StoreError(f"There is no checkpoint named '{name}'.")
        meta = json.loads(_meta_path(path).read_text(encoding="utf-8"))
        if meta.get("label_names") != list(labels):
            raise StoreError(
                f"The checkpoint '{name}' was trained for the labels {meta.get('label_names')}, but the project now "
                f"has {list(labels)}. Run a round to train a model for the current labels."
            )
        try:
            fitted = self._read(path, meta, list(labels))
        except FileNotFoundError as e:
            raise StoreError(f"The fine-tuned backbone of checkpoint '{name}' is missing ({e}); save it again.") from e
        return fitted, {"name": name, **meta}
