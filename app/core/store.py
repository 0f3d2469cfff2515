"""ProjectStore: the one SQLite file that holds every piece of a project's state.

Design notes:
- WAL journal, ``foreign_keys=ON``, ``synchronous=NORMAL``: a committed write survives a crash or ``kill -9``
  of the app (only a power cut may lose the last few commits; the file never corrupts).
- One connection per thread (and per process); every write is one ``BEGIN IMMEDIATE`` transaction, committed
  before the method returns. ``busy_timeout`` plus a retry with backoff means concurrent threads and processes
  wait for each other instead of surfacing "database is locked".
- Annotations are append-only; the current label of an image is its newest annotation that is not undone.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from app.core import annotation_rows, batch_rows, image_rows, label_rows
from app.core.annotation_rows import NewAnnotation
from app.core.errors import StoreError
from app.core.image_rows import NewImage, Recorded
from app.core.records import MIGRATIONS, SCHEMA_VERSION, Annotation, BatchItem, ImageRow, RoundRow, opt_float, to_json

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Annotation", "BatchItem", "ImageRow", "ProjectStore", "RoundRow"]

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
RETRY_SECONDS = 120.0
BATCH_STATUSES = ("pending", "labeled", "skipped")

# Newest non-undone annotation per image. SQLite returns the bare label_id from the row holding MAX(id).
_CURRENT = "SELECT image_id, label_id, MAX(id) AS ann_id FROM annotations WHERE undone = 0 GROUP BY image_id"
_ANNOTATION_SELECT = annotation_rows.SELECT


def _annotation(row: sqlite3.Row) -> Annotation:
    return Annotation(**{**dict(row), "undone": bool(row["undone"])})


class ProjectStore:
    """All persistent state of one project, safe to share between threads and processes."""

    DB_NAME = "project.db"

    def __init__(self, project_dir: str | Path, *, create: bool = True) -> None:
        """Open (and, if allowed, create) the project database.

        Args:
            project_dir: Project folder; ``project.db`` lives directly inside it.
            create: When False a missing database raises StoreError instead of being created.
        """
        self.root = Path(project_dir).expanduser().resolve()
        self.db_path = self.root / self.DB_NAME
        if not self.db_path.exists():
            if not create:
                raise StoreError(f"No project found at '{self.root}'. Check the folder or create a new project.")
            self.root.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        self._retry(lambda: self._conn().execute("PRAGMA journal_mode=WAL"))
        self._migrate()

    # ----------------------------------------------------------------------------------------- plumbing
    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("The project store is closed; open the project again.")
        if os.getpid() != self._pid:  # forked child: never reuse the parent's connections
            self._pid, self._local, self._conns = os.getpid(), threading.local(), []
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            with self._conns_lock:  # also close the connections of threads that have ended
                for _, dead in (pair for pair in self._conns if not pair[0].is_alive()):
                    dead.close()
                self._conns = [pair for pair in self._conns if pair[0].is_alive()]
                self._conns.append((threading.current_thread(), conn))
            self._local.conn = conn
        return conn

    def _retry(self, attempt: Callable[[], T]) -> T:
        delay, deadline = 0.005, time.monotonic() + RETRY_SECONDS
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc).lower() or "busy" in str(exc).lower()
                if not busy or time.monotonic() > deadline:
                    raise StoreError(
                        f"The project database could not be used ({exc}). "
                        "Check that the disk is not full and the project folder is writable, then try again."
                    ) from exc
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.5)

    def _tx(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run ``work`` in one transaction (BEGIN IMMEDIATE for writes), retrying when the database is busy."""
        conn = self._conn()

        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._retry(attempt)

    def _one(self, sql: str, params: Sequence[Any] | dict = ()) -> sqlite3.Row | None:
        return self._tx(lambda c: c.execute(sql, params).fetchone(), write=False)

    def _all(self, sql: str, params: Sequence[Any] | dict = ()) -> list[sqlite3.Row]:
        return self._tx(lambda c: c.execute(sql, params).fetchall(), write=False)

    def _update(self, sql: str, params: Sequence[Any], missing: str) -> None:
        """Run one UPDATE; raise StoreError(missing) when it matched no row."""

        def work(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, params).rowcount == 0:
                raise StoreError(missing)

        self._tx(work)

    def _migrate(self) -> None:
        def work(conn: sqlite3.Connection) -> None:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"This project was saved by a newer version of the app (schema {version}, this app knows "
                    f"{SCHEMA_VERSION}). Update the app to open it."
                )
            for script in MIGRATIONS[version:]:  # not executescript(): it would commit mid-transaction
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

        self._tx(work)

    def close(self) -> None:
        """Close every connection this store opened; the store cannot be used afterwards."""
        with self._conns_lock:
            for _, conn in self._conns:
                conn.close()
            self._conns = []
            self._closed = True

    def __enter__(self) -> ProjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------- settings
    def settings(self) -> dict:
        rows = self._all("SELECT key, value FROM settings ORDER BY key")
        return {row["key"]: json.loads(row["value"]) for row in rows}

    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
        return default if row is None else json.loads(row["value"])

    def update_settings(self, **values: Any) -> None:
        """Store JSON-serialisable values under their keys (existing keys are replaced)."""
        encoded = [(key, to_json(value, f"The setting '{key}'")) for key, value in values.items()]
        sql = "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
        self._tx(lambda c: c.executemany(sql, encoded))

    # ----------------------------------------------------------------------------------------- labels
    def labels(self) -> list[str]:
        rows = self._all("SELECT name FROM labels ORDER BY position, id")
        return [row["name"] for row in rows]

    def add_label(self, name: str) -> None:
        """Append a label at the end of the list (the name is stripped)."""
        cleaned = label_rows.clean(name)
        self._tx(lambda c: label_rows.insert(c, cleaned))

    def ensure_labels(self, names: Iterable[str]) -> list[str]:
        """Add the labels that do not exist yet, in the given order; return the newly added names."""
        wanted = list(dict.fromkeys(label_rows.clean(name) for name in names))

        def work(conn: sqlite3.Connection) -> list[str]:
            existing = {row["name"] for row in conn.execute("SELECT name FROM labels")}
            added = [name for name in wanted if name not in existing]
            for name in added:
                label_rows.insert(conn, name)
            return added

        return self._tx(work)

    def rename_label(self, old: str, new: str) -> None:
        """Rename a label; its annotations follow because they reference the label by id."""
        cleaned = label_rows.clean(new)
        self._tx(lambda conn: label_rows.rename(conn, old, cleaned))

    def merge_labels(self, source: str, target: str) -> None:
        """Move every annotation of ``source`` to ``target`` and remove ``source``."""
        self._tx(lambda conn: label_rows.merge(conn, source, target))

    def delete_label(self, name: str) -> None:
        """Delete an unused label; raises LabelInUseError if any annotation (even an undone one) uses it."""
        self._tx(lambda conn: label_rows.delete(conn, name))

    # ----------------------------------------------------------------------------------------- images
    def add_image(
        self,
        *,
        sha256: str,
        path: str | Path,
        original_name: str,
        source: str,
        size_bytes: int,
        width: int,
        height: int,
    ) -> int | None:
        """Record an image; returns its new id, or None when an image with the same hash already exists."""
        rel = Path(path)
        if rel.is_absolute() and rel.is_relative_to(self.root):
            rel = rel.relative_to(self.root)
        values = (sha256, rel.as_posix(), original_name, source, int(size_bytes), int(width), int(height), time.time())

        def work(conn: sqlite3.Connection) -> int | None:
            cursor = conn.execute(image_rows.INSERT, values)
            return cursor.lastrowid if cursor.rowcount == 1 else None

        return self._tx(work)

    def add_images(self, rows: Sequence[NewImage]) -> Recorded:
        """Record many images, each with its import label, in one transaction (all of them, or none); a row whose
        hash is already stored gets None and writes nothing. See `image_rows.insert`."""
        return self._tx(lambda conn: image_rows.insert(conn, rows))

    def image_id_for_hash(self, sha256: str) -> int | None:
        row = self._one("SELECT id FROM images WHERE sha256 = ?", (sha256,))
        return None if row is None else row["id"]

    def get_image(self, image_id: int) -> ImageRow:
        row = self._one("SELECT * FROM images WHERE id = ?", (int(image_id),))
        if row is None:
            raise StoreError(f"There is no image with id {image_id} in this project.")
        return ImageRow(**dict(row))

    def images(self) -> list[ImageRow]:
        rows = self._all("SELECT * FROM images ORDER BY id")
        return [ImageRow(**dict(row)) for row in rows]

    def image_ids(self) -> list[int]:
        return [row[0] for row in self._all("SELECT id FROM images ORDER BY id")]

    def count_images(self) -> int:
        return self._one("SELECT COUNT(*) FROM images")[0]

    def image_path(self, image_id: int) -> Path:
        """Absolute path of the image file."""
        return self.root / self.get_image(image_id).path

    # ----------------------------------------------------------------------------------------- annotations
    def add_annotation(
        self,
        image_id: int,
        label: str,
        *,
        annotator: str = "user",
        round: int = 0,
        strategy: str | None = None,
        score: float | None = None,
        seconds: float | None = None,
        method: str = "single",
        page: str | None = None,
    ) -> int:
        """Append an annotation (it becomes the image's current label) and mark its batch item "labeled"."""
        row = NewAnnotation(int(image_id), label, annotator, int(round), strategy, opt_float(score))
        row = replace(row, seconds=opt_float(seconds), method=method, page=page)
        return self._tx(lambda conn: annotation_rows.insert(conn, [row]))[0]

    def add_annotations(self, rows: Sequence[NewAnnotation]) -> list[int]:
        """Append several annotations in one transaction (a grid page: all of them, or none)."""
        return self._tx(lambda conn: annotation_rows.insert(conn, rows))

    def undo_last(self, annotator: str | None = None) -> Annotation | None:
        """Mark the newest non-undone annotation (of ``annotator``, if given) undone and return it; one made from a
        grid page takes the rest of its page with it (see `annotation_rows.undo_newest`).

        Its image's batch item, if still in the batch, goes back to "pending" (the claim is kept), unless somebody
        labeled the image again after this annotation: then it stays done (see `batch_rows.after_undo`).
        """
        rows = self._tx(lambda conn: annotation_rows.undo_newest(conn, annotator))
        return Annotation(**{**dict(rows[0]), "undone": True}) if rows else None

    def current_labels(self) -> dict[int, str]:
        """Current label of every labeled image, by image id."""
        sql = f"SELECT c.image_id, l.name FROM ({_CURRENT}) c JOIN labels l ON l.id = c.label_id"
        return dict(self._all(sql))

    def label_of(self, image_id: int) -> str | None:
        sql = """SELECT l.name FROM annotations a JOIN labels l ON l.id = a.label_id
            WHERE a.image_id = ? AND a.undone = 0 ORDER BY a.id DESC LIMIT 1"""
        row = self._one(sql, (int(image_id),))
        return None if row is None else row["name"]

    def history(self, image_id: int | None = None) -> list[Annotation]:
        """Every annotation, undone ones included, oldest first (optionally of one image)."""
        where, params = ("", ()) if image_id is None else ("WHERE a.image_id = ?", (int(image_id),))
        return [_annotation(row) for row in self._all(f"{_ANNOTATION_SELECT} {where} ORDER BY a.id", params)]

    def picked_by(self, strategy: str) -> set[int]:
        """Ids of the images with a label (not undone) given while a batch listed them as picked by `strategy`."""
        sql = "SELECT DISTINCT image_id FROM annotations WHERE undone = 0 AND strategy = ?"
        return {int(row[0]) for row in self._all(sql, (strategy,))}

    def label_counts(self) -> dict[str, int]:
        """Number of images whose current label is each label, in label order (0 for unused labels)."""
        sql = f"""SELECT l.name, COUNT(c.image_id) FROM labels l LEFT JOIN ({_CURRENT}) c ON c.label_id = l.id
            GROUP BY l.id ORDER BY l.position, l.id"""
        return dict(self._all(sql))

    # ----------------------------------------------------------------------------------------- rounds
    def add_round(
        self, *, labeled: int, strategy: str, seconds: float, metrics: dict, checkpoint: str | None = None
    ) -> int:
        """Record a finished round; returns its number (1 for the first)."""
        encoded = to_json(metrics, "The round's metrics")

        def work(conn: sqlite3.Connection) -> int:
            number = conn.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM rounds").fetchone()[0]
            conn.execute(
                "INSERT INTO rounds (number, created_at, labeled, strategy, seconds, metrics, checkpoint)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (number, time.time(), int(labeled), strategy, float(seconds), encoded, checkpoint),
            )
            return number

        return self._tx(work)

    def rounds(self) -> list[RoundRow]:
        rows = self._all("SELECT * FROM rounds ORDER BY number")
        return [RoundRow(**{**dict(row), "metrics": json.loads(row["metrics"])}) for row in rows]

    def latest_round(self) -> RoundRow | None:
        """The newest round, or None before the first; reads that one row only (cheap enough for a status poll)."""
        row = self._one("SELECT * FROM rounds ORDER BY number DESC LIMIT 1")
        return None if row is None else RoundRow(**{**dict(row), "metrics": json.loads(row["metrics"])})

    def current_round(self) -> int:
        """Number of rounds recorded so far (0 before the first)."""
        return self._one("SELECT COUNT(*) FROM rounds")[0]

    def set_round_checkpoint(self, number: int, checkpoint: str) -> None:
        sql = "UPDATE rounds SET checkpoint = ? WHERE number = ?"
        self._update(sql, (checkpoint, number), f"There is no round {number} in this project.")

    # ----------------------------------------------------------------------------------------- batch
    def set_batch(
        self,
        items: Sequence[tuple[int, str, float | None]],
        *,
        keep_claims_after: float = 600.0,
        size: int | None = None,
    ) -> None:
        """Replace the current batch with ``(image_id, strategy, score)`` items, pending and unclaimed.

        Images of the old batch that are still pending and were claimed less than ``keep_claims_after`` seconds
        ago are on somebody's screen: they stay in the batch, first and with their claims (a new pick of the same
        image gives its strategy and score), so nobody else is handed them and the batch counts them.

        Picks that are labeled by the time the batch is written (a label made while the round that picked them was
        running) are dropped in the same transaction, so no image is handed out again once labeled. ``size``
        keeps the batch at that many images, the kept ones included, with the first of the remaining new picks
        (callers pass spare picks for that reason).
        """
        picked = [(int(image_id), str(strategy), opt_float(score)) for image_id, strategy, score in items]
        if len({row[0] for row in picked}) != len(picked):
            raise StoreError("The batch lists the same image twice. Each image can appear only once in a batch.")

        self._tx(lambda conn: batch_rows.replace(conn, picked, keep_claims_after, size))

    def extend_batch(self, items: Sequence[tuple[int, str, float | None]]) -> None:
        """Append ``(image_id, strategy, score)`` items after the current batch, pending and unclaimed.

        Images already in the batch, and images labeled meanwhile, are left out.
        """
        self._tx(lambda conn: batch_rows.append(conn, items))

    def batch(self) -> list[BatchItem]:
        rows = self._all("SELECT * FROM batch ORDER BY position")
        return [BatchItem(**dict(row)) for row in rows]

    def set_batch_status(self, image_id: int, status: str) -> None:
        if status not in BATCH_STATUSES:
            raise StoreError(f"Unknown batch status '{status}'. Use one of: {', '.join(BATCH_STATUSES)}.")

        self._tx(lambda conn: batch_rows.set_status(conn, int(image_id), status))

    def reserve(self, image_id: int, client_id: str, annotator: str | None = None) -> bool:
        """Claim a pending, unclaimed batch image (with ``annotator``: or one waiting for their second label) for
        ``client_id`` ahead of time; False if it is not free."""
        return self._tx(lambda conn: batch_rows.reserve(conn, int(image_id), client_id, annotator))

    def claim_next(
        self, client_id: str, *, stale_after: float = 600.0, annotator: str | None = None
    ) -> BatchItem | None:
        """Atomically claim the next pending batch item for ``client_id``.

        Returns the first pending item already claimed by this client (its claim is refreshed), else the first
        pending item that is unclaimed or whose claim is older than ``stale_after`` seconds. Returns None when no
        pending item is left or every pending item is freshly claimed by another client. With ``annotator``, images
        waiting for a second label they may give come before the unclaimed pending ones (see `batch_rows.claim`).
        """
        return self._tx(lambda conn: batch_rows.claim(conn, client_id, stale_after, annotator))

    def waiting_second(self, annotator: str | None = None) -> list[int]:
        """Batch images labeled once that wait for a second annotator (with ``annotator``: one they may be)."""
        return self._tx(lambda conn: batch_rows.waiting_second(conn, annotator), write=False)
