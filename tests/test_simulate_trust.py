"""`python -m app simulate` reports, per strategy and seed, the numbers the app would show."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.engine import simulate as sim

RUN_KEYS = {"seed", "labels", "accuracy", "estimate", "estimate_low", "estimate_high", "ece", "stop_at"}


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 8)) * 4
    y = np.arange(n) % 3
    return (centers[y] + rng.normal(size=(n, 8))).astype(np.float32), y


def test_simulate_writes_one_run_per_seed_with_the_apps_numbers(tmp_path: Path, monkeypatch) -> None:
    (x, y), (x_test, y_test) = blobs(150, 0), blobs(60, 1)
    monkeypatch.setattr(sim, "load_embeddings", lambda cfg, log: (x, y, x_test, y_test, ["a", "b", "c"]))
    out = tmp_path / "sim.json"
    cfg = sim.SimulationConfig(
        data=str(tmp_path), strategies=["random", "margin"], initial=10, batch=10, budget=60, seeds=2, out=str(out),
        max_epochs=3,
    )  # fmt: skip

    sim.simulate(cfg, log=lambda m: None)

    results = json.loads(out.read_text())
    for name in ("random", "margin"):
        entry = results["strategies"][name]
        assert {"labels", "accuracy", "accuracy_std", "seconds_per_round"} <= set(entry)  # the existing keys stay
        runs = entry["runs"]
        assert [r["seed"] for r in runs] == [0, 1] and all(set(r) == RUN_KEYS for r in runs)
        for r in runs:
            assert r["labels"] == [10, 20, 30, 40, 50, 60]
            assert all(len(r[k]) == 6 for k in RUN_KEYS - {"seed", "stop_at"})
            shown = [i for i, e in enumerate(r["estimate"]) if e is not None]
            assert shown and shown == list(range(shown[0], 6))  # once there are enough random checks, every point
            assert all(r["estimate_low"][i] <= r["estimate"][i] <= r["estimate_high"][i] for i in shown)
            assert all(0 <= e <= 1 for e in r["ece"])
            assert r["stop_at"] is None or r["stop_at"] in r["labels"]


def test_audit_labels_are_drawn_from_the_oracle_and_counted_in_the_budget() -> None:
    (x, y), (x_test, y_test) = blobs(150, 0), blobs(60, 1)
    rows, audit = sim.initial_picks(x, 20, 0, audit_share=0.1)
    assert len(rows) == 20 and audit.sum() == 2
    curve = sim.run_curve(
        x, y, x_test, y_test, num_classes=3, strategy="margin", initial_rows=rows, batch=10, budget=50, seed=0,
        max_epochs=3, trust=True, audit_share=0.1, initial_audit=audit,
    )  # fmt: skip
    assert curve.labels == [20, 30, 40, 50]  # one audit image of each batch of 10 is part of the 10
    # 2 random checks at first, one more per batch: the fifth (enough for an estimate) comes with the 50th label
    assert curve.estimate[:3] == [None, None, None] and curve.estimate[3] is not None


def test_simulate_takes_the_share_of_random_checks_from_the_command_line() -> None:
    import pytest

    from app.cli import _simulate_parser
    from app.core.errors import AppError

    args = _simulate_parser().parse_args(["--data", ".", "--audit-share", "0.2"])
    assert args.audit_share == 0.2
    assert _simulate_parser().parse_args(["--data", "."]).audit_share == 0.1
    with pytest.raises(AppError, match="--audit-share"):
        sim.SimulationConfig(data=".", strategies=["random"], audit_share=1.0).check()
