"""Embedding images with a frozen backbone through Lightning's ``predict`` (batched, device-aware, scalable).

Fast path: each image is decoded, resized and cropped to ``uint8`` (cheap, and 4x less to move between loader
processes); scaling and normalization run once per batch inside :class:`EmbeddingExtractor`. The result equals
timm's float evaluation transform followed by the model, to float rounding.

Scale-out: with several processes (``Compute`` devices x nodes) the images are split across them by Lightning's
strategy (``"ddp_spawn"`` from a running program such as the app or a test; ``"ddp"`` under a launcher such as
torchrun or SLURM). Each process writes its (index, vector) pairs to files in a shared directory through a
``BasePredictionWriter``; the caller gets every vector back in the order of ``paths``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import queue
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from app.core.images import load_rgb
from app.core.progress import ProgressFn
from lit_models.backbones import LoadedBackbone, eval_transform
from lit_models.data import ImagePathDataset, image_dataloader
from lit_models.decode import decode_uint8
from lit_models.modules import EmbeddingExtractor
from lit_models.trainer import Compute, quiet_trainer


def embed_paths(
    backbone: LoadedBackbone,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    compute: Compute = Compute(),
    shared_dir: str | Path | None = None,
) -> np.ndarray:
    """Pooled backbone features of image files, in the order given.

    Args:
        backbone: the feature extractor and its data config (input size, normalization).
        paths: image files; decoded with ``app.core.images.load_rgb``.
        batch_size: images per forward pass (per process).
        num_workers: decoding processes per embedding process (``data.default_num_workers()`` is a good value
            outside tests; 0 decodes in the calling thread, the safest inside a web app).
        progress: called with (fraction, message) after every batch (single process only; with several
            processes it is called at the start and the end).
        stop_event: set it from another thread to stop; the call then raises ``callbacks.Cancelled`` (single
            process only).
        compute: accelerator, processes and precision (32-bit unless it says otherwise). Over several processes,
            strategy ``"auto"`` picks ``"ddp_spawn"`` on one machine; several machines need a ``shared_dir``.
        shared_dir: directory every process can write to (default: a temporary one, fine on one machine).

    Returns:
        float32 array of shape (len(paths), backbone.num_features).
    """
    if len(paths) == 0:
        return np.zeros((0, backbone.num_features), dtype=np.float32)
    transform, mean, std = uint8_transform(backbone.data_config)
    extractor = EmbeddingExtractor(backbone.model, mean=mean, std=std)
    backbone.model.eval()
    device = next(backbone.model.parameters()).device
    try:
        with _reusable_heap():
            if compute.distributed:
                return _embed_distributed(
                    extractor, paths, transform, backbone.num_features, batch_size=batch_size,
                    num_workers=num_workers, progress=progress, compute=compute, shared_dir=shared_dir,
                )  # fmt: skip
            loader: Any = image_dataloader(
                paths, transform, batch_size=batch_size, num_workers=num_workers, decode=_decoder(transform)
            )
            if num_workers == 0:
                loader = Prefetched(loader)
            trainer = quiet_trainer(progress=progress, stop_event=stop_event, compute=compute, inference_mode=True)
            with torch.inference_mode():
                batches = trainer.predict(extractor, dataloaders=loader)
            features = torch.cat([b.detach().to("cpu", torch.float32) for b in batches or []])
            return features.numpy()
    finally:
        if next(backbone.model.parameters()).device != device:
            backbone.model.to(device)  # Lightning may have moved it to a GPU: keep the backbone where it was


def uint8_transform(data_config: dict[str, Any]) -> tuple[Any, tuple[float, ...] | None, tuple[float, ...] | None]:
    """timm's evaluation transform without its float conversion: image -> uint8 tensor (3, H, W).

    The transform takes a PIL RGB image or a uint8 tensor (3, H, W) from ``decode.decode_uint8``; a tensor that
    already has the output size passes through untouched, any other goes through the same PIL resize and crop, so
    both give the same pixels.

    Returns:
        (transform, mean, std): give mean and std to :class:`EmbeddingExtractor`, which scales and normalizes each
        batch. When the timm transform does not end in the usual to-tensor + normalize steps, the full float
        transform is returned with mean and std None (nothing left to do per batch; it takes PIL images only).
    """
    from torchvision import transforms as T

    full = eval_transform(data_config)
    steps = list(getattr(full, "transforms", []))
    if len(steps) < 2 or type(steps[-1]).__name__ != "Normalize" or "ToTensor" not in type(steps[-2]).__name__:
        return full, None, None
    norm = steps[-1]
    mean = tuple(float(v) for v in torch.as_tensor(norm.mean).reshape(-1))
    std = tuple(float(v) for v in torch.as_tensor(norm.std).reshape(-1))
    geometry = [_SkipIfSized(t) if isinstance(t, T.CenterCrop) else t for t in steps[:-2]]
    return _Uint8Transform(geometry), mean, std


class _Uint8Transform:
    """PIL image or uint8 tensor -> uint8 tensor (3, H, W) through resize / crop steps applied to PIL images."""

    def __init__(self, geometry: list[Any]) -> None:
        self.geometry = geometry

    def __call__(self, image: Any) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            if self._unchanged(int(image.shape[-2]), int(image.shape[-1])):
                return image
            from PIL import Image

            image = Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).numpy()))  # (H, W, 3)
        for step in self.geometry:
            image = step(image)
        return _to_uint8_tensor(image)

    def _unchanged(self, h: int, w: int) -> bool:
        """Whether every step would return an image of this (height, width) as it is."""
        from torchvision import transforms as T

        for step in self.geometry:
            if isinstance(step, T.Resize) and step.max_size is None:
                size = [step.size] if isinstance(step.size, int) else list(step.size)
                if size != ([min(h, w)] if len(size) == 1 else [h, w]):
                    return False
            elif not (isinstance(step, _SkipIfSized) and step.hw == (h, w)):
                return False
        return True

    def __repr__(self) -> str:
        return f"Uint8Transform({self.geometry!r})"


class _SkipIfSized:
    """A center crop that leaves an image alone when it already has the crop's size (the common case)."""

    def __init__(self, crop: Any) -> None:
        self.crop = crop
        size = crop.size
        self.hw = (int(size[0]), int(size[-1])) if isinstance(size, (tuple, list)) else (int(size), int(size))

    def __call__(self, image: Any) -> Any:
        if getattr(image, "size", None) == (self.hw[1], self.hw[0]):  # PIL size is (width, height)
            return image
        return self.crop(image)

    def __repr__(self) -> str:
        return f"SkipIfSized({self.crop!r})"


def _to_uint8_tensor(image: Any) -> torch.Tensor:
    """PIL RGB image -> uint8 tensor (3, H, W); a quarter of the cost of torchvision's PILToTensor for small images."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def _decoder(transform: Any) -> Any:
    """The fast decoder for the uint8 transform (it takes tensors or PIL images), PIL's for any other."""
    return decode_uint8 if isinstance(transform, _Uint8Transform) else load_rgb


class Prefetched:
    """Iterates a loader in a background thread, `depth` batches ahead of the consumer.

    With ``num_workers=0`` this overlaps decoding the next batch (PIL releases the GIL while it decodes and
    resizes) with the forward pass on the current one, without the start-up cost and the core contention of
    loader processes. It pays where a core is free (the forward rarely uses all of them at small sizes); on two
    busy cores it changes little.
    Errors in the thread are raised in the consumer; stopping early (a cancelled run) ends the thread.
    """

    def __init__(self, loader: Any, depth: int = 2) -> None:
        self.loader = loader
        self.depth = depth

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        slots: queue.Queue = queue.Queue(self.depth)
        stop = threading.Event()

        def put(item: tuple[str, Any]) -> bool:
            while not stop.is_set():
                try:
                    slots.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                for batch in self.loader:
                    if not put(("batch", batch)):
                        return
                put(("end", None))
            except BaseException as exc:  # handed to the consumer
                put(("error", exc))

        thread = threading.Thread(target=work, name="embed-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                kind, value = slots.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()
            thread.join(timeout=10)


class _Indexed(Dataset):
    """Items of a dataset together with their index: (item, index)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.base[index], index


class _IndexedVectorWriter(BasePredictionWriter):
    """Writes each batch's (indices, vectors) to ``<directory>/part-<rank>-<batch>.npz``.

    Under a launcher that runs this code in every process (``"ddp"``), every rank also gathers all parts at the
    end (between two barriers) into ``result``; with spawned processes the caller gathers after they finish.
    """

    def __init__(self, directory: Path, n: int, dim: int) -> None:
        super().__init__(write_interval="batch")
        self.directory = str(directory)
        self.n, self.dim = n, dim
        self.result: np.ndarray | None = None

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        index = batch[1].detach().cpu().numpy().astype(np.int64)
        vectors = prediction.detach().to("cpu", torch.float32).numpy()
        name = Path(self.directory) / f"part-{trainer.global_rank:05d}-{dataloader_idx}-{batch_idx:07d}.npz"
        np.savez(name, index=index, vectors=vectors)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if _spawned(trainer):
            return  # spawned or forked processes: the launching process gathers once they have all finished
        trainer.strategy.barrier("embeddings-written")
        self.result = gather_parts(Path(self.directory), self.n, self.dim)
        trainer.strategy.barrier("embeddings-read")
        if trainer.global_rank == 0:
            shutil.rmtree(self.directory, ignore_errors=True)


def _spawned(trainer: pl.Trainer) -> bool:
    """Whether this run's processes were started by Lightning from the calling process (spawn or fork)."""
    return type(trainer.strategy.launcher).__name__ == "_MultiProcessingLauncher"


def gather_parts(directory: Path, n: int, dim: int) -> np.ndarray:
    """Every (index, vector) pair written to `directory`, as an (n, dim) array in index order.

    Raises:
        RuntimeError: some index has no vector (a process failed or wrote elsewhere).
    """
    out = np.zeros((n, dim), dtype=np.float32)
    seen = np.zeros(n, dtype=bool)
    for part in sorted(Path(directory).glob("part-*.npz")):
        with np.load(part) as data:
            out[data["index"]] = data["vectors"]
            seen[data["index"]] = True
    if not seen.all():
        raise RuntimeError(
            f"{int((~seen).sum())} of {n} images got no embedding from the worker processes; "
            "check that every process can write to the shared directory."
        )
    return out


def _embed_distributed(
    extractor: EmbeddingExtractor,
    paths: Sequence[str | Path],
    transform: Any,
    dim: int,
    *,
    batch_size: int,
    num_workers: int,
    progress: ProgressFn | None,
    compute: Compute,
    shared_dir: str | Path | None,
) -> np.ndarray:
    if compute.strategy == "auto" and compute.num_nodes == 1:
        # "ddp_spawn" works from any running program; "ddp" would re-run the whole command per process
        compute = replace(compute, strategy="ddp_spawn")
    base = Path(shared_dir) if shared_dir is not None else Path(tempfile.gettempdir())
    # every process of a launcher-started run must find the same directory: name it after the work itself
    digest = hashlib.sha1("\n".join(str(p) for p in paths).encode() + str(dim).encode()).hexdigest()[:16]
    directory = base / f"alabel-embed-{digest}"
    directory.mkdir(parents=True, exist_ok=True)
    writer = _IndexedVectorWriter(directory, len(paths), dim)
    loader = DataLoader(
        _Indexed(ImagePathDataset(paths, transform, decode=_decoder(transform))),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )
    if progress is not None:
        progress(0.0, f"Embedding on {compute.processes} processes")
    trainer = quiet_trainer(compute=compute, inference_mode=True, callbacks=[writer])
    try:
        trainer.predict(extractor, dataloaders=loader, return_predictions=False)
        result = writer.result if writer.result is not None else gather_parts(directory, len(paths), dim)
    finally:
        if writer.result is None or trainer.global_rank == 0:
            shutil.rmtree(directory, ignore_errors=True)
    if progress is not None:
        progress(1.0, "Embeddings ready")
    return result


_M_TOP_PAD = -2  # glibc mallopt parameter
_DEFAULT_TOP_PAD = 128 * 1024
_heap_lock = threading.Lock()
_heap_users = 0


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextmanager
def _reusable_heap() -> Iterator[None]:
    """Keep freed heap memory mapped while embedding, then hand it back (glibc only; a no-op elsewhere).

    A forward pass frees and reallocates hundreds of MB of activations per batch. glibc returns the top of the
    heap to the kernel after each free, so every batch page-faults the same memory back in: on two cores that
    cost more system time than the convolutions (measured: 3.4M page faults and 9 s of system time for 256
    images at 224 px, against 0.7M and 2 s with the padding). ``M_TOP_PAD`` of 1 GB keeps it; ``malloc_trim``
    returns it at the end so the app does not keep the peak.
    """
    global _heap_users
    libc = _libc()
    if libc is None:
        yield
        return
    with _heap_lock:
        _heap_users += 1
        libc.mallopt(_M_TOP_PAD, 1 << 30)
    try:
        yield
    finally:
        with _heap_lock:
            _heap_users -= 1
            if _heap_users == 0:
                libc.mallopt(_M_TOP_PAD, _DEFAULT_TOP_PAD)
                libc.malloc_trim(0)
