"""Datasets, loaders and LightningDataModules: image files (pools to embed, labeled images to fine-tune on) and
cached embedding tensors (to train a head on)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from app.core.images import load_rgb

Transform = Callable[[Any], torch.Tensor]
Decoder = Callable[[str], Any]


def default_num_workers() -> int:
    """Loader processes worth using for decoding: up to 2, never more than the machine's cores minus one."""
    return max(0, min(2, (os.cpu_count() or 1) - 1))


class ImagePathDataset(Dataset):
    """Image files decoded to RGB (EXIF-aware) and transformed.

    Items are ``transform(image)``, or ``(transform(image), label)`` when labels are given.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        transform: Transform,
        labels: Sequence[int] | None = None,
        decode: Decoder = load_rgb,
    ) -> None:
        """Create the dataset.

        Args:
            paths: image files, in the order items are returned.
            transform: turns what ``decode`` returns into a tensor (e.g. ``backbones.eval_transform(cfg)`` for the
                default PIL decoder).
            labels: class index per path, or None for an unlabeled pool.
            decode: file path -> image; ``load_rgb`` (PIL, the default) or ``lit_models.decode.decode_uint8`` (a
                tensor when the fast path applies, else the PIL image), whose transform must accept both.
        """
        if labels is not None and len(labels) != len(paths):
            raise ValueError(f"Got {len(paths)} paths but {len(labels)} labels.")
        self.paths = [str(p) for p in paths]
        self.transform = transform
        self.labels = None if labels is None else [int(v) for v in labels]
        self.decode = decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, int]:
        image = self.transform(self.decode(self.paths[index]))
        if self.labels is None:
            return image
        return image, self.labels[index]


def image_dataloader(
    paths: Sequence[str | Path],
    transform: Transform,
    *,
    labels: Sequence[int] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    decode: Decoder = load_rgb,
) -> DataLoader:
    """A loader over image files; ``num_workers=0`` decodes in the calling process (safest inside a web app).

    ``drop_last`` leaves out an incomplete last batch (training: a batch of one breaks batch norm). ``decode`` is
    passed to :class:`ImagePathDataset`.
    """
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        ImagePathDataset(paths, transform, labels, decode=decode),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
        generator=generator,
        drop_last=drop_last,
    )


class ImageDataModule(pl.LightningDataModule):
    """Image files for fine-tuning (train/val) and for scoring a pool (predict)."""

    def __init__(
        self,
        *,
        train_transform: Transform,
        eval_transform: Transform,
        train_paths: Sequence[str | Path] = (),
        train_labels: Sequence[int] = (),
        val_paths: Sequence[str | Path] = (),
        val_labels: Sequence[int] = (),
        predict_paths: Sequence[str | Path] = (),
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        """Create the data module.

        Args:
            train_transform: augmenting transform for training images.
            eval_transform: deterministic transform for validation and prediction.
            train_paths: labeled training images.
            train_labels: class index per training image.
            val_paths: labeled validation images (may be empty: no validation).
            val_labels: class index per validation image.
            predict_paths: unlabeled images to score or embed.
            batch_size: images per batch.
            num_workers: decoding processes; 0 decodes in the calling process.
            seed: shuffling seed.
            drop_last: leave out the incomplete last training batch (when there is more than one batch).
        """
        super().__init__()
        self.train_transform, self.eval_transform = train_transform, eval_transform
        self.train_paths, self.train_labels = list(train_paths), list(train_labels)
        self.val_paths, self.val_labels = list(val_paths), list(val_labels)
        self.predict_paths = list(predict_paths)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.drop_last = drop_last

    def train_dataloader(self) -> DataLoader:
        return image_dataloader(
            self.train_paths,
            self.train_transform,
            labels=self.train_labels,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            shuffle=True,
            seed=self.seed,
            drop_last=self.drop_last and len(self.train_paths) > self.batch_size,
        )

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_paths:
            return []
        return image_dataloader(
            self.val_paths,
            self.eval_transform,
            labels=self.val_labels,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
        )

    def predict_dataloader(self) -> DataLoader:
        return image_dataloader(
            self.predict_paths, self.eval_transform, batch_size=self.batch_size, num_workers=self.num_workers
        )


def embedding_dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    """Embeddings (N, D) and class indices (N,) as a float32/int64 tensor dataset."""
    if len(x) != len(y):
        raise ValueError(f"Got {len(x)} embeddings but {len(y)} labels.")
    features = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return TensorDataset(features, torch.from_numpy(np.asarray(y, dtype=np.int64)))


class EmbeddingDataModule(pl.LightningDataModule):
    """Cached embeddings with labels, for training a head. Small sets go through as one full batch."""

    def __init__(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        *,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        """Create the data module.

        Args:
            x_train: training embeddings, shape (N, D).
            y_train: class index per training row, shape (N,).
            x_val: validation embeddings, or None for no validation.
            y_val: class index per validation row.
            batch_size: rows per batch; None puts every training row in one batch (needed for L-BFGS).
            seed: shuffling seed (used only with mini-batches).
        """
        super().__init__()
        self.train_set = embedding_dataset(x_train, y_train)
        self.val_set = None if x_val is None or y_val is None or len(x_val) == 0 else embedding_dataset(x_val, y_val)
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        n = len(self.train_set)
        if self.batch_size is None or self.batch_size >= n:
            return DataLoader(self.train_set, batch_size=max(n, 1))
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=max(len(self.val_set), 1))
