"""The batch table inside a store transaction: replace, extend, claim, and the status a label, an undo or a skip
leaves. `ProjectStore` wraps each in one write.

Every function takes the transaction's connection, so what it reads and what it writes see the same state: an
image labeled by another thread or process is never put back into the batch.

Shared labeling (the project setting ``overlap``): about that share of every new batch's images, and of every
extension, is marked ``overlap`` (the images of the lowest seeded hash of their id, so the choice is stable). Such
an image is "labeled" after its first label, as any other, so a round counts it once; it then waits for a second,
different annotator (its claim is released) and is never offered again to an annotator who labeled it. When a
round replaces the batch, images still waiting for their second label are kept after the new ones (the most
recently first-labeled, at most ``batch_size`` of them), so a lone annotator's batch does not keep growing.
Claims hand out waiting images before unlabeled ones, so a second label follows the first closely.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Sequence

from app.core.audit import AUDIT
from app.core.errors import StoreError
from app.core.records import BatchItem

Pick = tuple[int, str, float | None]  # (image_id, strategy, score)
NOT_IN_PROJECT = "The batch refers to an image that is not in this project."
_COLUMNS = "image_id, strategy, score, claimed_by, claimed_at, overlap, status"
_INSERT = f"INSERT INTO batch (position, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
# Distinct annotators whose label of the batch row `b` stands, and whether :who is one of them.
_LABELERS = "(SELECT COUNT(DISTINCT a.annotator) FROM annotations a WHERE a.image_id = b.image_id AND a.undone = 0)"
_BY_WHO = "EXISTS (SELECT 1 FROM annotations a WHERE a.image_id = b.image_id AND a.undone = 0 AND a.annotator = :who)"
# A row waiting for its second annotator (any but those who labeled it).
_WAITING = f"b.overlap = 1 AND b.status = 'labeled' AND {_LABELERS} = 1"
# A row :who may be handed: pending, or (when :who is known) waiting for a second label they have not given.
_OPEN = f"(b.status = 'pending' OR (:who IS NOT NULL AND {_WAITING} AND NOT {_BY_WHO}))"


def shared_setting(conn: sqlite3.Connection) -> tuple[float, int, int]:
    """The project's ``overlap`` fraction, ``seed`` and ``batch_size`` from its stored settings.

    A store without settings (0.0, 0, 10): no overlap.
    """
    row = conn.execute("SELECT value FROM settings WHERE key = 'settings'").fetchone()
    values = json.loads(row[0]) if row is not None else {}
    values = values if isinstance(values, dict) else {}
    return float(values.get("overlap") or 0.0), int(values.get("seed") or 0), int(values.get("batch_size") or 10)


def overlap_flags(image_ids: Sequence[int], fraction: float, seed: int) -> list[bool]:
    """Which of `image_ids` two annotators should label: round(fraction x n) of them, by a seeded hash of the id.

    The same ids, fraction and seed always give the same choice, whatever their order.
    """
    count = int(fraction * len(image_ids) + 0.5) if fraction > 0 else 0
    rank = sorted(image_ids, key=lambda i: hashlib.sha256(f"{seed}:{int(i)}".encode()).hexdigest())
    chosen = set(rank[:count])
    return [i in chosen for i in image_ids]


def waiting_second(conn: sqlite3.Connection, annotator: str | None = None) -> list[int]:
    """Batch images waiting for a second annotator (one `annotator` may give: not labeled by them), in order."""
    sql = f"SELECT b.image_id FROM batch b WHERE {_WAITING} AND NOT {_BY_WHO} ORDER BY b.position"
    return [row[0] for row in conn.execute(sql, {"who": annotator})]


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
    """The new batch: images on somebody's screen first (with their claims), then the unlabeled picks, then the
    images still waiting for a second annotator (see the module's notes).

    With a `size`, the images kept on screen count toward it (a tab holds the image it shows and the one it fetched
    ahead), so a batch has the size the person set rather than that many new picks plus the ones kept.
    """
    held = [
        tuple(r)
        for r in conn.execute(
            f"""SELECT {_COLUMNS} FROM batch WHERE status = 'pending' AND claimed_by IS NOT NULL
            AND claimed_at >= ? ORDER BY position""",
            (time.time() - keep_claims_after,),
        )
    ]
    labeled = labeled_among(conn, [row[0] for row in picked])
    fresh = [row for row in picked if row[0] not in labeled]
    new = {row[0]: row for row in fresh}
    rows = [(*new.pop(h[0], tuple(h[:3])), *h[3:]) for h in held]
    rest = [row for row in fresh if row[0] in new]
    rest = rest if size is None else _trim(rest, size - len(rows), size)
    fraction, seed, keep = shared_setting(conn)
    flags = overlap_flags([row[0] for row in rest], fraction, seed)
    rows += [(*row, None, None, int(flag), "pending") for row, flag in zip(rest, flags, strict=True)]
    rows += _still_waiting(conn, limit=keep)
    conn.execute("DELETE FROM batch")
    try:
        conn.executemany(_INSERT, [(pos, *row) for pos, row in enumerate(rows)])
    except sqlite3.IntegrityError as exc:
        raise StoreError(NOT_IN_PROJECT) from exc


def _trim(picks: Sequence[Pick], room: int, size: int) -> list[Pick]:
    """The first `size` picks cut down to `room`: strategy picks go first, from the end, so the batch keeps its
    random checks (audit picks) when images kept on screen take some of its places."""
    kept = list(picks[: max(0, size)])
    for i in range(len(kept) - 1, -1, -1):
        if len(kept) <= room:
            break
        if kept[i][1] != AUDIT:
            del kept[i]
    return kept[: max(0, room)]


def _still_waiting(conn: sqlite3.Connection, limit: int) -> list[tuple]:
    """Up to `limit` rows waiting for a second annotator, the most recently first-labeled, in batch order."""
    first = "(SELECT MIN(a.id) FROM annotations a WHERE a.image_id = b.image_id AND a.undone = 0)"
    sql = f"SELECT {_COLUMNS}, b.position FROM batch b WHERE {_WAITING} ORDER BY {first} DESC LIMIT ?"
    kept = sorted(conn.execute(sql, (max(0, limit),)).fetchall(), key=lambda r: r[-1])
    return [tuple(r)[:-1] for r in kept]


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
    fraction, seed, _ = shared_setting(conn)
    flags = overlap_flags([row[1] for row in rows], fraction, seed)
    try:
        conn.executemany(_INSERT, [(*row, None, None, int(f), "pending") for row, f in zip(rows, flags, strict=True)])
    except sqlite3.IntegrityError as exc:
        raise StoreError(NOT_IN_PROJECT) from exc


def claim(
    conn: sqlite3.Connection, client_id: str, stale_after: float, annotator: str | None = None
) -> BatchItem | None:
    """This client's own open image (claim refreshed), else the first free or stale one waiting for a second label
    `annotator` may give, else the first free or stale pending one; claimed for it.

    Without an `annotator` no image is handed out for a second label.
    """
    now = time.time()
    row = conn.execute(
        f"""SELECT b.position FROM batch b WHERE {_OPEN} AND (b.claimed_by IS :me OR b.claimed_by IS NULL
        OR b.claimed_at IS NULL OR b.claimed_at < :stale)
        ORDER BY b.claimed_by IS :me DESC, b.status = 'pending', b.position LIMIT 1""",
        {"me": client_id, "stale": now - stale_after, "who": annotator},
    ).fetchone()
    if row is None:
        return None
    conn.execute("UPDATE batch SET claimed_by = ?, claimed_at = ? WHERE position = ?", (client_id, now, row[0]))
    return BatchItem(**dict(conn.execute("SELECT * FROM batch WHERE position = ?", (row[0],)).fetchone()))


def reserve(conn: sqlite3.Connection, image_id: int, client_id: str, annotator: str | None = None) -> bool:
    """Claim one open, unclaimed batch image for `client_id` ahead of time (see `claim`); False if it is not free."""
    sql = f"""UPDATE batch SET claimed_by = :me, claimed_at = :now WHERE position IN (SELECT b.position FROM batch b
        WHERE b.image_id = :id AND b.claimed_by IS NULL AND {_OPEN})"""
    params = {"me": client_id, "now": time.time(), "id": image_id, "who": annotator}
    return conn.execute(sql, params).rowcount == 1


def mark_labeled(conn: sqlite3.Connection, image_id: int) -> None:
    """The image's batch row is "labeled"; an overlap row that now waits for its second annotator is released."""
    conn.execute("UPDATE batch SET status = 'labeled' WHERE image_id = ?", (image_id,))
    _release_if_waiting(conn, image_id)


def after_undo(conn: sqlite3.Connection, image_id: int, annotation_id: int) -> None:
    """The batch row of an image whose annotation `annotation_id` was just undone.

    It goes back to "pending" (its claim kept) unless somebody labeled the image again after that annotation. An
    overlap row stays done while any label of it stands, waiting for a second annotator again: the tab of the one
    who undid their second label keeps it; when a first label was undone under a second one, it is released.
    """
    standing = conn.execute(
        "SELECT MAX(id) FROM annotations WHERE image_id = ? AND undone = 0", (image_id,)
    ).fetchone()[0]
    later = standing is not None and standing > annotation_id
    overlap = conn.execute("SELECT overlap FROM batch WHERE image_id = ?", (image_id,)).fetchone()
    if overlap is not None and overlap[0] and standing is not None:
        if later:
            _release_if_waiting(conn, image_id)
        return
    if not later:
        conn.execute("UPDATE batch SET status = 'pending' WHERE image_id = ?", (image_id,))


def _release_if_waiting(conn: sqlite3.Connection, image_id: int) -> None:
    conn.execute(
        f"""UPDATE batch SET claimed_by = NULL, claimed_at = NULL WHERE image_id = ?
        AND position IN (SELECT b.position FROM batch b WHERE {_WAITING})""",
        (image_id,),
    )


def set_status(conn: sqlite3.Connection, image_id: int, status: str) -> None:
    """Set a batch row's status. Skipping an image waiting for its second label ends that wish instead (it keeps
    its first label and is offered to nobody again).

    Raises:
        StoreError: the image is not in the batch.
    """
    if status == "skipped":
        waiting = f"SELECT b.position FROM batch b WHERE {_WAITING}"
        sql = f"UPDATE batch SET overlap = 0 WHERE image_id = ? AND position IN ({waiting})"
        if conn.execute(sql, (image_id,)).rowcount:
            return
    if conn.execute("UPDATE batch SET status = ? WHERE image_id = ?", (status, image_id)).rowcount == 0:
        raise StoreError(f"The image with id {image_id} is not in the current batch.")
