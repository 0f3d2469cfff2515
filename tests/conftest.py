"""Shared fixtures: real images (scikit-learn's handwritten digits) written as PNG files."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spin-waiting threads on small ops

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

DIGITS_PER_CLASS = 10
DIGIT_SIZE = 32


def write_digits(root: Path, per_class: int = DIGITS_PER_CLASS, size: int = DIGIT_SIZE) -> list[Path]:
    """Write the first `per_class` digits of each class as ``root/<digit>/<i>.png`` (grayscale, `size` pixels)."""
    digits = load_digits()
    paths: list[Path] = []
    for digit in range(10):
        folder = root / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        for i, index in enumerate(np.flatnonzero(digits.target == digit)[:per_class]):
            pixels = (digits.images[index] * (255 / 16)).round().astype(np.uint8)
            image = Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST)
            path = folder / f"{i}.png"
            image.save(path)
            paths.append(path)
    return paths


@pytest.fixture
def digits_dir(tmp_path: Path) -> Path:
    """Class-folder layout ``<tmp>/digits/<digit>/<i>.png``: 10 classes x 10 distinct 32x32 grayscale PNGs."""
    root = tmp_path / "digits"
    write_digits(root)
    return root


@pytest.fixture
def digit_pngs(digits_dir: Path) -> list[Path]:
    """The 100 PNG files of `digits_dir`, ordered by digit, then index."""
    return [digits_dir / str(digit) / f"{i}.png" for digit in range(10) for i in range(DIGITS_PER_CLASS)]


@pytest.fixture
def store(tmp_path: Path):
    """An empty project store in ``<tmp>/project``, closed after the test."""
    from app.core.store import ProjectStore

    project = ProjectStore(tmp_path / "project")
    yield project
    project.close()
