"""Embedding speed of the bundled backbones, interleaved (the speed cost of a better bundled backbone).

    python -m benchmarks.le_speed --images 192 --repeats 2

Embeds the same benchmark patches (`benchmarks.patches`) with each bundled EfficientNet-Lite at its own input size
(Lite0 224 px, Lite1 240 px, Lite2 260 px) through the app's embedder, the backbones taking turns; prints the
best images/s of each and its ratio to Lite0.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import lit_models  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
from benchmarks.features import class_files
from benchmarks.patches import write_patches
from lit_models.backbones import BUNDLED_WEIGHTS, BackboneSpec, load_backbone
from lit_models.embed import embed_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default="/tmp/alabel-benchmarks/label-efficiency")
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    files = class_files(write_patches(Path(args.work_dir) / "patches"))[0][::7][: args.images]
    backbones = {arch: load_backbone(BackboneSpec(arch=arch, source="bundled")) for arch in BUNDLED_WEIGHTS}
    best = dict.fromkeys(backbones, 0.0)
    for _ in range(args.repeats):
        for arch, backbone in backbones.items():
            start = time.perf_counter()
            embed_paths(backbone, files, batch_size=64)
            best[arch] = max(best[arch], len(files) / (time.perf_counter() - start))
    print(f"{len(files)} images, best of {args.repeats}; load {os.getloadavg()[0]:.1f}")
    for arch, speed in best.items():
        size = backbones[arch].data_config["input_size"][1]
        print(f"  {arch} ({size} px): {speed:.1f} img/s = {speed / best['tf_efficientnet_lite0']:.2f}x Lite0")


if __name__ == "__main__":
    main()
