"""The batch table inside a store transaction: replace, extend, claim. `ProjectStore` wraps each in one write.

Every function takes the transaction's connection, so what it reads and what it writes see the same state: an
image labeled by another thread or process is never put back into the batch.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from app.core.errors import StoreError
from app.core.records import BatchItem

Pick = tuple[int, str, float | None]  # (image_id, strategy, score)
NOT_IN_PROJECT = "The batch refers to an image that is not in this project."


def labeled_among(conn: sqlite3.Connection, image_ids: Sequence[int]) -> set[int]:
    """The images of `image_ids` that have a current (not undone) label."""
    found: set[int] = set()
    for start in range(0, len(image_ids), 500):
        chunk = [int(i) for i in image_ids[start : start + 500]]
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT DISTINCT image_id FROM annotations WHERE undone = 0 AND image_id IN ({marks})"
        found.update(row[0] for row in conn.execute(sql, chunk))
    return found


def replace(conn: sqlite3.Connection, picked: Sequence[Pick], keep_claims_after: float, size: int | None) -> None:
    """The new batch: images on somebody's screen first (with their claims), then the unlabeled picks."""
    held = [
        tuple(r)
        for r in conn.execute(
            """SELECT image_id, strategy, score, claimed_by, claimed_at FROM batch WHERE status = 'pending'
            AND claimed_by IS NOT NULL AND claimed_at >= ? ORDER BY position""",
            (time.time() - keep_claims_after,),
        )
    ]
    labeled = labeled_among(conn, [row[0] for row in picked])
    fresh = [row for row in picked if row[0] not in labeled]
    new = {row[0]: row for row in fresh}
    rows = [(*new.pop(h[0], tuple(h[:3])), h[3], h[4]) for h in held]
    rest = [row for row in fresh if row[0] in new]
    rows += [(*row, None, None) for row in (rest if size is None else rest[: max(0, size)])]
    conn.execute("DELETE FROM batch")
    try:
        conn.executemany(
            "INSERT INTO batch (position, image_id, strategy, score, claimed_by, claimed_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(pos, *row) for pos, row in enumerate(rows)],
        )
    except sqlite3.IntegrityError as exc:
        raise StoreError(NOT_IN_PROJECT) from exc


def append(conn: sqlite3.Connection, items: Sequence[Pick]) -> None:
    """Picks after the current batch, leaving out images already in it or labeled."""
    start = conn.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM batch").fetchone()[0]
    present = {row[0] for row in conn.execute("SELECT image_id FROM batch")}
    rows, seen = [], present | labeled_among(conn, [int(item[0]) for item in items])
    for image_id, strategy, score in items:
        if int(image_id) in seen:
            continue
        seen.add(int(image_id))
        rows.append((start + len(rows), int(image_id), str(strategy), None if score is None else float(score)))
    try:
        conn.executemany("INSERT INTO batch (position, image_id, strategy, score) VALUES (?, ?, ?, ?)", rows)
    except sqlite3.IntegrityError as exc:
        raise StoreError(NOT_IN_PROJECT) from exc


def claim(conn: sqlite3.Connection, client_id: str, stale_after: float) -> BatchItem | None:
    """This client's own pending image (claim refreshed), else the first free or stale one, claimed for it."""
    now = time.time()
    row = conn.execute(
        """SELECT position FROM batch WHERE status = 'pending' AND (claimed_by IS :me OR claimed_by IS NULL
        OR claimed_at IS NULL OR claimed_at < :stale) ORDER BY claimed_by IS :me DESC, position LIMIT 1""",
        {"me": client_id, "stale": now - stale_after},
    ).fetchone()
    if row is None:
        return None
    conn.execute("UPDATE batch SET claimed_by = ?, claimed_at = ? WHERE position = ?", (client_id, now, row[0]))
    return BatchItem(**dict(conn.execute("SELECT * FROM batch WHERE position = ?", (row[0],)).fetchone()))
