"""An import reads each input once and records its rows in batches, without giving up crash safety."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core import annotation_rows
from app.core import ingest as ingest_module
from app.core.errors import StoreError
from app.core.ingest import Duplicate, Rejection, ingest
from app.core.store import ProjectStore
from tests.image_files import noise, save, truncated

REPO = Path(__file__).resolve().parents[1]
CORRUPT = "The file is truncated or corrupt; re-export it and import again."

_opened: list[Counter[str]] = []  # the counter of the running `counting_opens` block, if any


def _count_open(event: str, args: tuple) -> None:
    if event == "open" and _opened and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened[-1][os.path.realpath(os.fsdecode(args[0]))] += 1


sys.addaudithook(_count_open)  # audit hooks cannot be removed: it counts only inside `counting_opens`


@contextlib.contextmanager
def counting_opens() -> Iterator[Counter[str]]:
    """Every file opened by Python code (builtins.open, io.open, os.open, Path.open, PIL's Image.open, ...), by
    real path, while the block runs."""
    counter: Counter[str] = Counter()
    _opened.append(counter)
    try:
        yield counter
    finally:
        _opened.remove(counter)


def consistent(store: ProjectStore) -> list[Path]:
    """Check that every row's file is in place with the bytes its hash names and that ``images/`` holds no other
    file and no staging file; returns the stored files."""
    files = sorted(path for path in (store.root / "images").rglob("*") if path.is_file())
    rows = store.images()
    assert sorted(store.root / row.path for row in rows) == files
    for row in rows:
        assert hashlib.sha256((store.root / row.path).read_bytes()).hexdigest() == row.sha256
    assert list(store.root.glob(".incoming-*")) == []
    return files


def test_an_import_opens_each_source_file_once(store: ProjectStore, digits_dir: Path, tmp_path: Path) -> None:
    bad = truncated(save(noise(seed=7), tmp_path / "src.png"), digits_dir / "3" / "cut.png")
    twin = digits_dir / "4" / "twin.png"
    twin.write_bytes((digits_dir / "4" / "0.png").read_bytes())
    loose = save(noise(seed=8), tmp_path / "loose.jpg")
    sources = [*digits_dir.rglob("*.png"), loose]

    with counting_opens() as opened:
        report = ingest(store, [digits_dir, loose], labels_from_folders=True)

    assert report.summary() == "Imported 101 images, 1 duplicate, 1 rejected."
    assert report.rejected == [Rejection(str(bad), CORRUPT)]
    assert report.duplicates == [Duplicate(str(twin), report.imported[40])]
    assert {str(path.resolve()): opened[str(path.resolve())] for path in sources} == {
        str(path.resolve()): 1 for path in sources
    }  # hashed, checked for a duplicate, probed and staged from one read; a rejected or duplicate file too
    staged = [path for path in opened if Path(path).parent.name.startswith(".incoming-")]
    assert {Path(path).name: opened[path] for path in staged if not Path(path).name.startswith(".lock-")} == {
        "incoming.part": 101
    }  # one write per imported image, never read back
    assert len(consistent(store)) == 101


def test_an_error_mid_batch_records_the_images_done_and_nothing_half(store: ProjectStore, digits_dir: Path) -> None:
    def stop(done: int, total: int | None, source: str) -> None:
        if done == 37:
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        ingest(store, [digits_dir], labels_from_folders=True, progress=stop)

    assert store.count_images() == 37  # done before the error: recorded although their batch was not full
    assert len(store.current_labels()) == 37
    assert len(consistent(store)) == 37
    report = ingest(store, [digits_dir], labels_from_folders=True)
    assert report.summary() == "Imported 63 images, 37 duplicates, 0 rejected."
    assert len(consistent(store)) == 100 and len(store.current_labels()) == 100


def test_a_batch_the_store_cannot_record_takes_its_files_with_it(
    store: ProjectStore, digits_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "BATCH_ROWS", 10)
    monkeypatch.setattr(ingest_module, "BATCH_SECONDS", 1e9)
    original, calls = annotation_rows.insert, []

    def insert(conn: sqlite3.Connection, rows: list) -> list[int]:
        calls.append(1)
        if len(calls) == 25:  # the fifth image of the third batch, inside its transaction
            raise sqlite3.DatabaseError("disk I/O error")
        return original(conn, rows)

    monkeypatch.setattr(annotation_rows, "insert", insert)
    with pytest.raises(StoreError, match="could not record the imported images"):
        ingest(store, [digits_dir], labels_from_folders=True)

    assert store.count_images() == 20  # two whole batches; none of the third
    assert len(store.current_labels()) == 20
    assert len(consistent(store)) == 20  # the third batch's files went with it


def test_images_left_by_an_interrupted_import_are_reused(store: ProjectStore, digits_dir: Path) -> None:
    first = ingest(store, [digits_dir / "0"])
    row = store.get_image(first.imported[0])
    kept = (store.root / row.path).read_bytes()
    with sqlite3.connect(store.db_path) as conn:  # as if the import was killed before its batch was recorded
        conn.execute("DELETE FROM images")
    conn.close()

    report = ingest(store, [digits_dir / "0"])

    assert report.summary() == "Imported 10 images, 0 duplicates, 0 rejected."
    assert (store.root / store.get_image(report.imported[0]).path).read_bytes() == kept
    assert len(consistent(store)) == 10


KILL_MID_BATCH = """
import os, signal, sys
from app.core import ingest as ingest_module
from app.core.store import ProjectStore

ingest_module.BATCH_ROWS, ingest_module.BATCH_SECONDS = 10, 1e9

def die(done, total, source):
    if done == 35:
        os.kill(os.getpid(), signal.SIGKILL)

ingest_module.ingest(ProjectStore(sys.argv[1], create=False), [sys.argv[2]], labels_from_folders=True, progress=die)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_killed_import_leaves_no_row_without_its_complete_file(tmp_path: Path, digits_dir: Path) -> None:
    project = tmp_path / "p"
    ProjectStore(project).close()
    killed = subprocess.run([sys.executable, "-c", KILL_MID_BATCH, str(project), str(digits_dir)], cwd=REPO)
    assert killed.returncode == -9

    store = ProjectStore(project, create=False)
    try:
        rows = store.images()
        assert len(rows) == 30 and len(store.current_labels()) == 30  # three whole batches were recorded
        for row in rows:
            assert hashlib.sha256((project / row.path).read_bytes()).hexdigest() == row.sha256
        files = [path for path in (project / "images").rglob("*") if path.is_file()]
        assert len(files) == 35  # the five of the unrecorded batch: complete, at their content address
        for path in files:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem

        report = ingest(store, [digits_dir], labels_from_folders=True)
        assert report.summary() == "Imported 70 images, 30 duplicates, 0 rejected."
        assert len(consistent(store)) == 100 and len(store.current_labels()) == 100
    finally:
        store.close()
