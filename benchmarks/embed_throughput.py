"""Embedding throughput: the full pipeline (decode + transform + Lightning predict) vs the raw model forward.

The pipeline is `lit_models.embed.embed_paths` on real image files; the reference ("raw") is the same model called
on tensors that are already decoded, transformed and batched (same resolution, batch size and memory format, and
the same allocator setting as the pipeline), so the ratio is what decoding, the DataLoader and the Trainer cost on
top of the convolutions. "raw_plain_heap" is the same loop with glibc's default heap trimming, as a plain
`model(x)` loop runs.

    python -m benchmarks.embed_throughput                         # bundled Lite0 at 224 and 64 px
    python -m benchmarks.embed_throughput --sizes 64 --images 512 --workers 0,1,2

Images: scikit-learn's digits written as 64-pixel PNGs (`--kind digits`, cheap to decode) or 320x320 JPEG crops
of scikit-learn's two sample photos (`--kind photos`, a realistic decode cost). Target (docs/benchmarks.md):
pipeline >= 0.8x raw.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import lit_models  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
from app.core.images import load_rgb
from lit_models.backbones import BackboneSpec, eval_transform, load_backbone
from lit_models.embed import _reusable_heap, embed_paths


def write_images(folder: Path, kind: str, n: int) -> list[Path]:
    """`n` image files of the given kind in `folder`."""
    if kind == "digits":
        from app.engine.demo import write_digits

        paths = write_digits(folder, size=64)
        return [paths[i % len(paths)] for i in range(n)]
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        photo = photos[i % len(photos)]
        y, x = rng.integers(0, photo.shape[0] - 320), rng.integers(0, photo.shape[1] - 320)
        path = folder / f"photo_{i:04d}.jpg"
        Image.fromarray(photo[y : y + 320, x : x + 320]).save(path, quality=90)
        paths.append(path)
    return paths


def raw_forward(model: torch.nn.Module, batches: list[torch.Tensor], *, padded_heap: bool) -> float:
    """Images per second of `model(x)` on ready batches (inference mode, channels-last, as the extractor).

    With `padded_heap`, inside the same allocator setting as `embed_paths` (the fairest reference for the ratio).
    """
    n = sum(len(b) for b in batches)
    with torch.inference_mode(), _reusable_heap() if padded_heap else contextlib.nullcontext():
        model(batches[0][:2].contiguous(memory_format=torch.channels_last))  # warm-up
        start = time.perf_counter()
        for b in batches:
            model(b.contiguous(memory_format=torch.channels_last)).float()
        return n / (time.perf_counter() - start)


def pipeline(backbone, paths: list[Path], batch_size: int, workers: int) -> float:
    """Images per second of `embed_paths` over the files."""
    start = time.perf_counter()
    out = embed_paths(backbone, paths, batch_size=batch_size, num_workers=workers, accelerator="cpu")
    seconds = time.perf_counter() - start
    assert out.shape == (len(paths), backbone.num_features)
    return len(paths) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224,64", help="comma-separated input sizes in pixels")
    parser.add_argument("--images", type=int, default=0, help="images per run (default: 256 at >=128 px, else 1024)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", default="0", help="DataLoader workers to try, comma-separated (default 0)")
    parser.add_argument("--kind", choices=("digits", "photos"), default="digits")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell; the best is reported")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    workers = [int(w) for w in args.workers.split(",") if w.strip()] or [None]
    results = []
    print(f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            n = args.images or (256 if size >= 128 else 1024)
            paths = write_images(Path(tmp) / f"{args.kind}-{size}", args.kind, n)
            backbone = load_backbone(BackboneSpec(image_size=size))
            transform = eval_transform(backbone.data_config)
            tensors = torch.stack([transform(load_rgb(p)) for p in paths])
            batches = list(torch.split(tensors, args.batch_size))
            t = time.perf_counter()
            for p in paths[: min(len(paths), 256)]:
                transform(load_rgb(p))
            decode = min(len(paths), 256) / (time.perf_counter() - t)
            worker_counts = [_default_workers() if w is None else w for w in workers]
            best: dict[str, float] = {}
            for _ in range(args.repeats):  # interleaved, so a busy moment hits every variant alike
                runs = {
                    "plain": raw_forward(backbone.model, batches, padded_heap=False),
                    "raw": raw_forward(backbone.model, batches, padded_heap=True),
                    **{f"w{w}": pipeline(backbone, paths, args.batch_size, w) for w in worker_counts},
                }
                best = {k: max(v, best.get(k, 0.0)) for k, v in runs.items()}
            for w in worker_counts:
                pipe, raw = best[f"w{w}"], best["raw"]
                row = {
                    "size": size, "kind": args.kind, "images": n, "batch_size": args.batch_size, "workers": w,
                    "raw_img_s": round(raw, 1), "raw_plain_heap_img_s": round(best["plain"], 1),
                    "pipeline_img_s": round(pipe, 1), "ratio": round(pipe / raw, 3),
                    "decode_transform_img_s_one_core": round(decode, 1),
                }  # fmt: skip
                results.append(row)
                print(json.dumps(row), flush=True)
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")


def _default_workers() -> int:
    from lit_models.data import default_num_workers

    return default_num_workers()


if __name__ == "__main__":
    main()
