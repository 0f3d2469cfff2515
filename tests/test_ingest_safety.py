"""Folder imports stay inside the chosen folder; staging folders left by killed imports are cleaned up."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core import read_once
from app.core.ingest import IngestReport, Rejection, clean_staging, ingest
from app.core.store import ProjectStore
from tests.image_files import noise, save

REPO = Path(__file__).resolve().parents[1]
FILE_OUTSIDE = (
    "The file is a link to a file outside the chosen folder, so it was not imported; "
    "copy the image into the folder, or import the folder the link points to."
)
FOLDER_OUTSIDE = (
    "The folder is a link to a folder outside the chosen folder, so it was not searched; "
    "import the folder the link points to on its own."
)


def staging_folders(project: Path) -> list[Path]:
    """The staging folders in the project folder, and in its images folder (where older versions staged)."""
    places = (project, project / "images")
    return sorted(
        path for place in places if place.is_dir() for path in place.iterdir() if path.name.startswith(".incoming-")
    )


# ------------------------------------------------------------------------------------------------ symlinks
def test_folder_import_refuses_links_that_leave_the_folder(store: ProjectStore, tmp_path: Path) -> None:
    folder = tmp_path / "chosen"
    good = save(noise(seed=1), folder / "cats" / "good.png")
    secret = save(noise(seed=2), tmp_path / "elsewhere" / "secret.png")
    (folder / "cats" / "outside.png").symlink_to(secret)
    (folder / "cats" / "x.png").symlink_to("/etc/passwd")
    (folder / "cats" / "relative.png").symlink_to(Path("..", "..", "elsewhere", "secret.png"))
    (folder / "alias.png").symlink_to(good)  # a link to a file inside the folder is fine
    (folder / "linked").symlink_to(secret.parent, target_is_directory=True)

    report = ingest(store, [folder], labels_from_folders=True)

    assert report.summary() == "Imported 1 image, 1 duplicate, 4 rejected."
    assert sorted(report.rejected, key=lambda r: r.source) == [
        Rejection(str(folder / "cats" / "outside.png"), FILE_OUTSIDE),
        Rejection(str(folder / "cats" / "relative.png"), FILE_OUTSIDE),
        Rejection(str(folder / "cats" / "x.png"), FILE_OUTSIDE),
        Rejection(str(folder / "linked"), FOLDER_OUTSIDE),
    ]
    [row] = store.images()
    assert row.source == str(folder / "alias.png")
    assert (store.root / row.path).read_bytes() == good.read_bytes()
    assert [d.source for d in report.duplicates] == [str(good)]
    assert store.label_of(row.id) == "cats"  # the duplicate under cats/ labels the image imported via the alias


def test_a_chosen_folder_that_is_itself_a_link_is_searched(store: ProjectStore, tmp_path: Path) -> None:
    real = tmp_path / "real"
    save(noise(seed=3), real / "a.png")
    (real / "b.png").symlink_to(real / "a.png")
    link = tmp_path / "shortcut"
    link.symlink_to(real, target_is_directory=True)

    report = ingest(store, [link])

    assert report.summary() == "Imported 1 image, 1 duplicate, 0 rejected."


# ------------------------------------------------------------------------------------------------ staging
KILL_DURING_IMPORT = """
import os, signal, sys
from app.core.ingest import ingest
from app.core.store import ProjectStore

def die(done, total, source):
    if done == 1:
        os.kill(os.getpid(), signal.SIGKILL)

ingest(ProjectStore(sys.argv[1], create=False), [sys.argv[2]], progress=die)
"""


def test_reopening_a_project_removes_staging_left_by_a_killed_import(tmp_path: Path, digits_dir: Path) -> None:
    from app.engine.session import ActiveLearningSession

    session = ActiveLearningSession.create(tmp_path, "p", ["a", "b"])
    session.add_data([digits_dir / "0"])
    session.close()
    project, images = tmp_path / "p", tmp_path / "p" / "images"
    kept = {path: path.read_bytes() for path in images.rglob("*.png")}
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_IMPORT, str(project), str(digits_dir / "1")], cwd=REPO)
    assert killed.returncode == -9
    old = images / ".incoming-xyz"  # an old-style staging folder without an owner lock, idle for two hours
    old.mkdir()
    (old / "incoming.part").write_bytes(b"half an image")
    two_hours_ago = time.time() - 7200
    for path in (old / "incoming.part", old):
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert len(staging_folders(project)) == 2

    session = ActiveLearningSession.open(tmp_path, "p")
    try:
        assert staging_folders(project) == []
        assert {path: path.read_bytes() for path in images.rglob("*.png") if path in kept} == kept
        assert all((project / row.path).is_file() for row in session.store.images())
    finally:
        session.close()


def test_cleaning_keeps_the_staging_folder_of_a_running_import(
    store: ProjectStore, tmp_path: Path, digits_dir: Path
) -> None:
    project = store.root
    fresh = project / ".incoming-fresh"  # no owner lock yet, but just made: it may be an import starting up
    fresh.mkdir(parents=True)
    seen: list[tuple[list[Path], list[Path]]] = []

    def clean_while_importing(done: int, total: int | None, source: str) -> None:
        if done == 1:
            seen.append((clean_staging(project), staging_folders(project)))

    ingest(store, [digits_dir / "0"], progress=clean_while_importing)

    [(removed, during)] = seen
    assert removed == []
    assert len(during) == 2 and fresh in during  # the running import's folder and the fresh one both stay
    assert staging_folders(project) == [fresh]  # the import removed its own folder when it finished
    assert clean_staging(project, max_age=0) == [fresh]
    assert staging_folders(project) == []


def test_imports_stage_in_the_project_folder_not_in_the_served_images_folder(
    store: ProjectStore, digits_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = store.root / "images"
    staged: list[Path] = []
    seen: list[tuple[list[Path], list[Path]]] = []
    original = read_once.write_staged

    def write_staged(data: bytes, dest: Path) -> None:
        staged.append(dest)
        original(data, dest)

    def look(done: int, total: int | None, source: str) -> None:
        seen.append((list(images.rglob(".incoming-*")), list(store.root.glob(".incoming-*"))))

    monkeypatch.setattr(read_once, "write_staged", write_staged)
    report = ingest(store, [digits_dir / "0"], progress=look)

    assert report.summary() == "Imported 10 images, 0 duplicates, 0 rejected."
    assert len(staged) == 10 and len(seen) == 11
    assert all(not dest.is_relative_to(images) and dest.parent.parent == store.root for dest in staged)
    assert all(inside == [] and len(outside) == 1 for inside, outside in seen)  # while planning and importing
    assert list(store.root.glob(".incoming-*")) == []
    assert all((store.root / row.path).is_file() and row.path.startswith("images/") for row in store.images())


# ------------------------------------------------------------------------------------------------ named pipes
NOT_REGULAR = "This is a named pipe, socket or device, not a regular file, so it was not read; import image files only."


def finishes(run: Callable[[], IngestReport], pipes: list[Path], timeout: float = 30.0) -> IngestReport:
    """`run()`'s report; fails (and unblocks the reader) when it is still running after `timeout` seconds."""
    result: list[IngestReport] = []
    thread = threading.Thread(target=lambda: result.append(run()), daemon=True)
    thread.start()
    thread.join(timeout)
    hung = thread.is_alive()
    while thread.is_alive():  # open each pipe for writing, so a reader blocked on it gets end-of-file
        for pipe in pipes:
            with contextlib.suppress(OSError):  # no reader on this one
                os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(0.1)
    assert not hung, "the import hung on a named pipe"
    return result[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_named_pipes_in_a_folder_are_refused_and_the_import_finishes(store: ProjectStore, tmp_path: Path) -> None:
    folder = tmp_path / "chosen"
    save(noise(seed=4), folder / "cats" / "good.png")
    pipes = [folder / "cats" / "pipe.png", folder / "pipe.jpg", folder / "list.csv"]
    for pipe in pipes:
        os.mkfifo(pipe)
    os.symlink(pipes[0], folder / "cats" / "link.png")  # a link to a pipe is no better

    report = finishes(lambda: ingest(store, [folder], labels_from_folders=True), pipes)

    assert report.summary() == "Imported 1 image, 0 duplicates, 4 rejected."
    assert sorted(report.rejected, key=lambda r: r.source) == [
        Rejection(str(folder / "cats" / "link.png"), NOT_REGULAR),
        Rejection(str(folder / "cats" / "pipe.png"), NOT_REGULAR),
        Rejection(str(folder / "list.csv"), NOT_REGULAR),
        Rejection(str(folder / "pipe.jpg"), NOT_REGULAR),
    ]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_named_pipes_in_a_csv_or_picked_directly_are_refused(store: ProjectStore, tmp_path: Path) -> None:
    save(noise(seed=5), tmp_path / "good.png")
    pipes = [tmp_path / "pipe.png", tmp_path / "pipe.zip", tmp_path / "pipe.csv"]
    for pipe in pipes:
        os.mkfifo(pipe)
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\ngood.png,cat\npipe.png,cat\n", encoding="utf-8")

    report = finishes(lambda: ingest(store, [listing, *pipes]), pipes)

    assert report.summary() == "Imported 1 image, 0 duplicates, 4 rejected."
    assert report.rejected == [
        Rejection(f"{listing} row 3 (pipe.png)", NOT_REGULAR),
        *(Rejection(str(pipe), NOT_REGULAR) for pipe in pipes),
    ]


# ------------------------------------------------------------------------------------------------ nested lists
def test_zip_and_csv_files_inside_a_zip_get_a_message_about_the_zip(store: ProjectStore, tmp_path: Path) -> None:
    archive = tmp_path / "outer.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("inner.zip", b"PK")
        zf.writestr("sub/labels.csv", "path\n")

    report = ingest(store, [archive])

    nested = "Zip and CSV files inside a zip archive are not opened; unpack it and import this file on its own."
    assert report.rejected == [
        Rejection(f"{archive}:inner.zip", nested),
        Rejection(f"{archive}:sub/labels.csv", nested),
    ]
