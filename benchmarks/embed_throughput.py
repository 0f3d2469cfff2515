"""Embedding throughput: the full pipeline (decode + transform + Lightning predict) vs the raw model forward.

The pipeline is `lit_models.embed.embed_paths` on real image files; the reference ("raw") is the same model called
on tensors that are already decoded, transformed and batched (same resolution, batch size and memory format, and
the same allocator setting as the pipeline), so the ratio is what decoding, the DataLoader and the Trainer cost on
top of the convolutions. "raw_plain_heap" is the same loop with glibc's default heap trimming, as a plain
`model(x)` loop runs.

    python -m benchmarks.embed_throughput                         # bundled Lite0 at 224 and 64 px
    python -m benchmarks.embed_throughput --sizes 64 --images 512 --workers 0,1,2

Rows also give the least CPU time per image (all threads, loader processes included) of raw and pipeline, which a
busy machine disturbs less than wall time, and the one-core cost of decoding + transforming one image (the
decoder embed_paths uses, and PIL's for comparison). The 1-minute load average is printed before every round.

Images: scikit-learn's digits written as 64-pixel PNGs (`--kind digits`, cheap to decode) or 320x320 JPEG crops
of scikit-learn's two sample photos (`--kind photos`, a realistic decode cost). Target (docs/benchmarks.md):
pipeline >= 0.8x raw.
"""

from __future__ import annotations

import os

# Before torch loads, as the app does (app/__main__.py): OpenMP reads it once. `import lit_models` sets it too, but
# only when it comes first, and isort puts it after torch: the benchmark used to run with spin-waiting threads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from app.core.images import load_rgb  # noqa: E402
from lit_models.backbones import BackboneSpec, eval_transform, load_backbone  # noqa: E402
from lit_models.decode import decode_uint8  # noqa: E402
from lit_models.embed import _reusable_heap, embed_paths, uint8_transform  # noqa: E402
from lit_models.trainer import CPU  # noqa: E402


def write_images(folder: Path, kind: str, n: int) -> list[Path]:
    """`n` image files of the given kind in `folder`."""
    if kind == "digits":
        from app.engine.demo import write_digits

        paths = write_digits(folder, size=64)
        return [paths[i % len(paths)] for i in range(n)]
    from sklearn.datasets import load_sample_images

    folder.mkdir(parents=True, exist_ok=True)
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


def cpu_seconds() -> float:
    """User + system CPU time of this process, its threads and its finished children (loader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def per_image_us(fn, paths: list[Path]) -> float:
    """Microseconds per image of `fn(path)` in this thread, best of 3 passes."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for p in paths:
            fn(p)
        best = min(best, (time.perf_counter() - start) / len(paths))
    return best * 1e6


def _decode_transform(decode, transform, path: Path) -> None:
    transform(decode(str(path)))


def pipeline(backbone, paths: list[Path], batch_size: int, workers: int) -> float:
    """Images per second of `embed_paths` over the files."""
    start = time.perf_counter()
    out = embed_paths(backbone, paths, batch_size=batch_size, num_workers=workers, compute=CPU)
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
    policy = os.environ.get("OMP_WAIT_POLICY")
    print(f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, OMP_WAIT_POLICY {policy}")
    print(f"load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            n = args.images or (256 if size >= 128 else 1024)
            paths = write_images(Path(tmp) / f"{args.kind}-{size}", args.kind, n)
            backbone = load_backbone(BackboneSpec(image_size=size))
            transform = eval_transform(backbone.data_config)
            tensors = torch.stack([transform(load_rgb(p)) for p in paths])
            batches = list(torch.split(tensors, args.batch_size))
            fast, _, _ = uint8_transform(backbone.data_config)
            sample = paths[: min(len(paths), 256)]
            decode_pil = per_image_us(partial(_decode_transform, load_rgb, fast), sample)  # PIL, as before
            decode_fast = per_image_us(partial(_decode_transform, decode_uint8, fast), sample)  # what embed_paths uses
            worker_counts = [_default_workers() if w is None else w for w in workers]
            variants = {
                "plain": partial(raw_forward, backbone.model, batches, padded_heap=False),
                "raw": partial(raw_forward, backbone.model, batches, padded_heap=True),
                **{f"w{w}": partial(pipeline, backbone, paths, args.batch_size, w) for w in worker_counts},
            }
            best: dict[str, float] = {}
            cpu: dict[str, float] = {}  # least CPU time per image seen: steadier than wall time on a busy machine
            loads = [os.getloadavg()[0]]
            for _ in range(args.repeats):  # interleaved, so a busy moment hits every variant alike
                for name, run in variants.items():
                    before = cpu_seconds()
                    best[name] = max(run(), best.get(name, 0.0))
                    cpu[name] = min((cpu_seconds() - before) / n * 1e3, cpu.get(name, float("inf")))
                loads.append(os.getloadavg()[0])
            for w in worker_counts:
                pipe, raw = best[f"w{w}"], best["raw"]
                row = {
                    "size": size, "kind": args.kind, "images": n, "batch_size": args.batch_size, "workers": w,
                    "raw_img_s": round(raw, 1), "raw_plain_heap_img_s": round(best["plain"], 1),
                    "pipeline_img_s": round(pipe, 1), "ratio": round(pipe / raw, 3),
                    "raw_cpu_ms_per_img": round(cpu["raw"], 3), "pipeline_cpu_ms_per_img": round(cpu[f"w{w}"], 3),
                    "decode_transform_us_per_img": round(decode_fast, 1),
                    "decode_transform_pil_us_per_img": round(decode_pil, 1),
                    "load_avg_1min": [round(v, 2) for v in loads],
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
