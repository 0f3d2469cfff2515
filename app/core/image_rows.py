"""The images table's SQL, inside the store's transaction: record imported images, many at once, each with the
label its import gave it.

An import records its images in batches of many rows (one transaction each: all of a batch, or none of it), so
that SQLite's per-transaction cost is paid once per batch, not twice per image.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from app.core import annotation_rows, label_rows
from app.core.annotation_rows import NewAnnotation

INSERT = """INSERT INTO images (sha256, path, original_name, source, size_bytes, width, height, added_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(sha256) DO NOTHING"""


@dataclass(frozen=True)
class NewImage:
    """One image to record; ``path`` is relative to the project folder (posix). With a `label`, an annotation by
    `annotator` (strategy "import") gives the new image that label; a label the project lacks is added first."""

    sha256: str
    path: str
    original_name: str
    source: str
    size_bytes: int
    width: int
    height: int
    label: str | None = None
    annotator: str = "import"


@dataclass(frozen=True)
class Recorded:
    """What `insert` did: the new id of each row (None where an image with the same hash already existed, so
    nothing of that row was written) and the labels it added to the project, in order of first use."""

    ids: list[int | None]
    new_labels: list[str]


def insert(conn: sqlite3.Connection, rows: Sequence[NewImage]) -> Recorded:
    """Record `rows` in order, with their labels."""
    now = time.time()
    ids: list[int | None] = []
    added: list[str] = []
    known = {row["name"] for row in conn.execute("SELECT name FROM labels")} if any(r.label for r in rows) else set()
    for row in rows:
        values = (row.sha256, row.path, row.original_name, row.source, int(row.size_bytes), int(row.width))
        cursor = conn.execute(INSERT, (*values, int(row.height), now))
        image_id = int(cursor.lastrowid) if cursor.rowcount == 1 else None
        ids.append(image_id)
        if image_id is None or row.label is None:
            continue
        label = label_rows.clean(row.label)
        if label not in known:
            label_rows.insert(conn, label)
            known.add(label)
            added.append(label)
        annotation_rows.insert(conn, [NewAnnotation(image_id, label, row.annotator, 0, "import")])
    return Recorded(ids, added)
