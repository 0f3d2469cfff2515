"""The label history's SQL, inside the store's transaction: append annotations (one, or a grid page at once) and
take back the newest one (a whole page when it came from one).

Each annotation says how it was made (`method`): "single" (one image in the labeling panel), "accepted_guess"
(the model's guess taken with one key), "grid_page" (a page of the review grid), "more_like_this" (a page of an
image's nearest neighbours); annotations made together from one page share its `page` id.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from app.core import batch_rows, label_rows
from app.core.errors import StoreError

METHODS = ("single", "accepted_guess", "grid_page", "more_like_this", "import")
SELECT = """SELECT a.id, a.image_id, l.name AS label, a.annotator, a.created_at, a.round, a.strategy,
    a.score, a.seconds, a.undone, a.method, a.page FROM annotations a JOIN labels l ON l.id = a.label_id"""


@dataclass(frozen=True)
class NewAnnotation:
    """One label to append, with why its image was picked and how it was given."""

    image_id: int
    label: str
    annotator: str = "user"
    round: int = 0
    strategy: str | None = None
    score: float | None = None
    seconds: float | None = None
    method: str = "single"
    page: str | None = None


def insert(conn: sqlite3.Connection, rows: Sequence[NewAnnotation]) -> list[int]:
    """Append `rows` (each becomes its image's current label) and mark their batch items labeled; returns ids."""
    ids = []
    now = time.time()
    for row in rows:
        if row.method not in METHODS:
            raise StoreError(f"Unknown labeling method '{row.method}'. Use one of: {', '.join(METHODS)}.")
        label_id = label_rows.label_id(conn, row.label)
        if conn.execute("SELECT 1 FROM images WHERE id = ?", (int(row.image_id),)).fetchone() is None:
            raise StoreError(f"There is no image with id {row.image_id} in this project.")
        cursor = conn.execute(
            """INSERT INTO annotations (image_id, annotator, round, strategy, score, seconds, label_id, created_at,
            method, page) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (int(row.image_id), row.annotator, int(row.round), row.strategy, row.score, row.seconds, label_id, now)
            + (row.method, row.page),
        )
        batch_rows.mark_labeled(conn, int(row.image_id))
        ids.append(int(cursor.lastrowid))
    return ids


def undo_newest(conn: sqlite3.Connection, annotator: str | None) -> list[sqlite3.Row]:
    """Mark the newest non-undone annotation (of `annotator`, if given) undone, with every other of its page;
    returns their rows (newest first), empty when there is nothing to undo."""
    where = "a.undone = 0" + ("" if annotator is None else " AND a.annotator = :who")
    newest = conn.execute(f"{SELECT} WHERE {where} ORDER BY a.id DESC LIMIT 1", {"who": annotator}).fetchone()
    if newest is None:
        return []
    rows = [newest]
    if newest["page"] is not None:
        sql = f"{SELECT} WHERE {where} AND a.page = :page ORDER BY a.id DESC"
        rows = conn.execute(sql, {"who": annotator, "page": newest["page"]}).fetchall()
    for row in rows:
        conn.execute("UPDATE annotations SET undone = 1 WHERE id = ?", (row["id"],))
        batch_rows.after_undo(conn, row["image_id"], row["id"])
    return rows
