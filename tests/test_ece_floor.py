"""The ECE floor benchmark: labels drawn from the probabilities themselves leave only sampling noise."""

from __future__ import annotations

import numpy as np

from app.core.calibration import expected_calibration_error
from benchmarks.ece_floor import floor


def test_certain_probabilities_have_no_noise_and_unsure_ones_some_that_shrinks_with_more_images():
    rng = np.random.default_rng(0)
    certain = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 200)]
    assert np.all(floor(certain, 20, rng) == 0.0)
    unsure = rng.dirichlet(np.ones(3) * 2, size=300).astype(np.float32)
    small, large = floor(unsure[:60], 200, rng), floor(np.tile(unsure, (10, 1)), 200, rng)
    assert small.mean() > large.mean() > 0  # the noise of 60 images is larger than that of 3,000
    # against labels not drawn from them, the same probabilities measure far above their noise
    assert expected_calibration_error(unsure, unsure.argmin(axis=1)) > small.max()
