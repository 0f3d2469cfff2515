"""Records and schema of the project store: plain dataclasses returned by ProjectStore, and its migrations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.core.errors import StoreError

# Ordered migrations: MIGRATIONS[i] brings the schema from version i to i + 1. Never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE labels (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, position INTEGER NOT NULL);
    CREATE TABLE images (id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, path TEXT NOT NULL,
        original_name TEXT NOT NULL, source TEXT NOT NULL, size_bytes INTEGER NOT NULL,
        width INTEGER NOT NULL, height INTEGER NOT NULL, added_at REAL NOT NULL);
    CREATE TABLE annotations (id INTEGER PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES images(id), label_id INTEGER NOT NULL REFERENCES labels(id),
        annotator TEXT NOT NULL, created_at REAL NOT NULL, round INTEGER NOT NULL DEFAULT 0,
        strategy TEXT, score REAL, seconds REAL, undone INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX annotations_current ON annotations (undone, image_id, label_id);
    CREATE INDEX annotations_image ON annotations (image_id);
    CREATE INDEX annotations_label ON annotations (label_id);
    CREATE INDEX annotations_annotator ON annotations (annotator, undone);
    CREATE TABLE rounds (number INTEGER PRIMARY KEY, created_at REAL NOT NULL, labeled INTEGER NOT NULL,
        strategy TEXT NOT NULL, seconds REAL NOT NULL, metrics TEXT NOT NULL, checkpoint TEXT);
    CREATE TABLE batch (position INTEGER PRIMARY KEY,
        image_id INTEGER NOT NULL UNIQUE REFERENCES images(id), strategy TEXT NOT NULL, score REAL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'labeled', 'skipped')),
        claimed_by TEXT, claimed_at REAL);
    CREATE INDEX batch_status ON batch (status, position);
    """,
    "ALTER TABLE batch ADD COLUMN overlap INTEGER NOT NULL DEFAULT 0",
    """ALTER TABLE annotations ADD COLUMN method TEXT NOT NULL DEFAULT 'single';
    ALTER TABLE annotations ADD COLUMN page TEXT""",
)
SCHEMA_VERSION: int = len(MIGRATIONS)


@dataclass(frozen=True)
class ImageRow:
    """One imported image; ``path`` is relative to the project folder (posix) unless it lives elsewhere."""

    id: int
    sha256: str
    path: str
    original_name: str
    source: str
    size_bytes: int
    width: int
    height: int
    added_at: float


@dataclass(frozen=True)
class Annotation:
    """One entry of the append-only labeling history."""

    id: int
    image_id: int
    label: str
    annotator: str
    created_at: float
    round: int
    strategy: str | None
    score: float | None
    seconds: float | None
    undone: bool
    method: str = "single"
    page: str | None = None


@dataclass(frozen=True)
class BatchItem:
    """One image of the current batch; ``status`` is "pending", "labeled" or "skipped".

    ``overlap`` marks an image two different annotators should label (shared labeling): it is "labeled" after its
    first label and stays open to a second annotator until one labels it (or skips it, which ends that wish).
    """

    position: int
    image_id: int
    strategy: str
    score: float | None
    status: str
    claimed_by: str | None
    claimed_at: float | None
    overlap: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "overlap", bool(self.overlap))  # SQLite hands back 0 or 1


@dataclass(frozen=True)
class RoundRow:
    """One finished training round (numbers start at 1)."""

    number: int
    created_at: float
    labeled: int
    strategy: str
    seconds: float
    metrics: dict
    checkpoint: str | None


def opt_float(value: float | None) -> float | None:
    """None, or a plain float (numpy scalars included)."""
    return None if value is None else float(value)


def to_json(value: Any, what: str) -> str:
    """JSON for a settings or metrics value; numpy values become plain numbers and lists.

    Raises:
        StoreError: the value is not plain data (`what` names it in the message).
    """

    def plain(item: Any) -> Any:
        if hasattr(item, "tolist"):  # numpy scalars and arrays
            return item.tolist()
        raise TypeError(f"{type(item).__name__} is not JSON serialisable")

    try:
        return json.dumps(value, default=plain)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} could not be saved because it is not plain data ({exc}).") from exc
