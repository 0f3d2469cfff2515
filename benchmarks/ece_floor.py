"""How far the test-set ECE of digits can be from 0 by chance alone, for probabilities calibrated by construction.

A head on n random pool labels gives test probabilities p. Drawing each test image's label from its own p makes p
perfectly calibrated for those labels, so the ECE measured against them is pure sampling noise of 539 test images
in 15 bins. Its distribution is the floor under the ECE target of `benchmarks.trust` (docs/benchmarks.md, section 7).

    python -m benchmarks.ece_floor --draws 2000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import lit_models  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
from app.core.calibration import expected_calibration_error
from app.engine.simulate import SimulationConfig, load_embeddings
from benchmarks.le_data import folder_of
from benchmarks.trust import DEFAULT_WORK_DIR


def floor(probs: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """ECE of `probs` against labels drawn from `probs` themselves, `draws` times."""
    cumulative = probs.cumsum(axis=1)
    out = np.empty(draws)
    for i in range(draws):
        drawn = (cumulative < rng.random((len(probs), 1))).sum(axis=1).clip(0, probs.shape[1] - 1)
        out[i] = expected_calibration_error(probs, drawn)
    return out


def main() -> None:
    from lit_models.train import predict_proba, train_head

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR))
    parser.add_argument("--labels", default="200,300,500")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    work = Path(args.work_dir)
    cfg = SimulationConfig(data=str(folder_of("digits", work)), strategies=["random"], work_dir=str(work))
    x, y, x_test, y_test, classes = load_embeddings(cfg, log=lambda m: None)
    rng = np.random.default_rng(0)
    results = []
    for n in (int(v) for v in args.labels.split(",")):
        rows = rng.choice(len(y), n, replace=False)
        probs = predict_proba(train_head(x[rows], y[rows], len(classes)), x_test)
        noise = floor(probs, args.draws, rng)
        results.append({
            "labels": n, "test_accuracy": float((probs.argmax(axis=1) == y_test).mean()),
            "ece_measured": expected_calibration_error(probs, y_test), "floor_mean": float(noise.mean()),
            "floor_p95": float(np.quantile(noise, 0.95)), "floor_share_above_0.05": float((noise > 0.05).mean()),
        })  # fmt: skip
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
