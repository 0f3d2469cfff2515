"""Candidates: on a big pool a round scores and selects from a fresh random sample of it, not from every image.

Scoring every unlabeled image is most of a round on a big pool (1M x 1280 float16 through the head: about 80 % of
a margin round's CPU, docs/benchmarks.md "1M images"). Above `CANDIDATES` unlabeled images, each round therefore
draws `CANDIDATES` of them uniformly at random (seeded by the round's seed, so a round is repeatable and each round
draws another sample: over rounds every image gets considered), scores those and the stop set only, and runs its
strategy on the sample (SEALS, Coleman et al. 2022, restrict selection to a candidate pool the same way; their
candidates are the labeled images' nearest neighbours, which needs a nearest-neighbour index over the pool: a
uniform sample needs none and keeps the picks' expected quality measurable). Why a sample loses little: the
top k of a uniform sample of a fraction f of the pool is, in rank, about the top k / f of the pool. Measured on
the synthetic 1M pool (docs/benchmarks.md, "1M images", "Third pass"; `benchmarks/candidates.py`): a round's 40
picks from 100k candidates rank about 200th of 1M (top 0.02 %), still near-ties between the two likeliest classes
(top-two gap 4e-5 against 4e-6) with 1 % less entropy than the whole pool's top 40, and 10 margin rounds reached
the same accuracy as rounds on the whole pool (0.9295 against 0.9301, within the seeds' spread). Audit picks are
still drawn from the whole pool (`app.core.audit`), so the accuracy estimate keeps its uniform sample.

Pools up to `CANDIDATES` images are scored and selected whole, exactly as before (every benchmark pool of the
label-efficiency suite is far smaller). The rest of the pool's probabilities are filled in after the round by
`app.engine.model_state.ModelState.complete_probs` (in the background, or on demand when asked first).
"""

from __future__ import annotations

import numpy as np

__all__ = ["CANDIDATES", "candidate_positions", "scored_rows"]

CANDIDATES = 100_000  # unlabeled images a round scores and selects from when the pool is bigger
_STREAM = 0xCA4D1  # keeps the draw apart from the audit draw, which uses the same round seed


def candidate_positions(n_pool: int, seed: int, size: int = CANDIDATES) -> np.ndarray | None:
    """Sorted positions of `size` pool images drawn uniformly at random (a repeatable draw for `seed`), or None
    when the pool holds no more than `size` images (every one is a candidate).

    Raises:
        ValueError: `size` is below 1.
    """
    if size < 1:
        raise ValueError(f"The number of candidates must be at least 1; got {size}.")
    if n_pool <= size:
        return None
    rng = np.random.default_rng([_STREAM, int(seed) % 2**63])
    return np.sort(rng.choice(n_pool, size=size, replace=False)).astype(np.int64)


def scored_rows(pool_rows: np.ndarray, candidates: np.ndarray, always: np.ndarray) -> np.ndarray:
    """The rows a round scores: the candidates' rows (`candidates` are positions into `pool_rows`) and the rows of
    `always` (say the stop set, predicted every round), sorted, each once."""
    picked = np.asarray(pool_rows, dtype=np.int64)[np.asarray(candidates, dtype=np.int64)]
    rows = np.sort(np.concatenate([picked, np.asarray(always, dtype=np.int64).reshape(-1)]))
    return rows[np.concatenate([[True], rows[1:] != rows[:-1]])] if len(rows) else rows  # np.union1d: 5x slower
