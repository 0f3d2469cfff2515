"""The offline demo project: scikit-learn's 1,797 handwritten digits, ready to label."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from app.core.progress import ProgressFn
from app.core.settings import CONFIG_DIR, load_settings
from app.engine.session import ActiveLearningSession

DEMO_NAME = "digits-demo"
DEMO_LABELS = [str(d) for d in range(10)]


def write_digits(folder: Path, *, size: int = 64, class_folders: bool = False, limit: int | None = None) -> list[Path]:
    """Write sklearn's 8x8 digits as `size`-pixel grayscale PNGs; returns the paths.

    Args:
        class_folders: put each image under `folder/<digit>/` (a labeled layout) instead of flat.
        limit: write only the first `limit` images.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    n = len(digits.images) if limit is None else min(limit, len(digits.images))
    for i in range(n):
        pixels = (255 - digits.images[i] * (255 / 16)).clip(0, 255).astype(np.uint8)  # dark ink on white
        img = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.NEAREST)
        target = folder / str(digits.target[i]) if class_folders else folder
        target.mkdir(exist_ok=True)
        path = target / f"digit_{i:04d}.png"
        img.save(path)
        paths.append(path)
    return paths


def open_or_create_demo(projects_dir: str | Path, progress: ProgressFn | None = None) -> ActiveLearningSession:
    """Open the demo project, creating it (images imported, first batch picked) on first use."""
    report = progress or (lambda f, m: None)
    if DEMO_NAME in ActiveLearningSession.list_projects(projects_dir):
        session = ActiveLearningSession.open(projects_dir, DEMO_NAME)
    else:
        settings = load_settings(CONFIG_DIR / "demo.yaml")
        session = ActiveLearningSession.create(projects_dir, DEMO_NAME, DEMO_LABELS, settings)
        with tempfile.TemporaryDirectory(prefix="digits-") as tmp:
            report(0.0, "Writing the digit images")
            paths = write_digits(Path(tmp))
            session.add_data(paths)
    session.ensure_batch(progress=report)
    return session
