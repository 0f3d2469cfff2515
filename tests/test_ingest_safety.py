"""Folder imports stay inside the chosen folder; staging folders left by killed imports are cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core.ingest import Rejection, clean_staging, ingest
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


@pytest.fixture
def store(tmp_path: Path):
    project = ProjectStore(tmp_path / "project")
    yield project
    project.close()


def staging_folders(images: Path) -> list[Path]:
    return sorted(path for path in images.iterdir() if path.name.startswith(".incoming-"))


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
    assert len(staging_folders(images)) == 2

    session = ActiveLearningSession.open(tmp_path, "p")
    try:
        assert staging_folders(images) == []
        assert {path: path.read_bytes() for path in images.rglob("*.png") if path in kept} == kept
        assert all((project / row.path).is_file() for row in session.store.images())
    finally:
        session.close()


def test_cleaning_keeps_the_staging_folder_of_a_running_import(
    store: ProjectStore, tmp_path: Path, digits_dir: Path
) -> None:
    images = store.root / "images"
    fresh = images / ".incoming-fresh"  # no owner lock yet, but just made: it may be an import starting up
    fresh.mkdir(parents=True)
    seen: list[tuple[list[Path], list[Path]]] = []

    def clean_while_importing(done: int, total: int | None, source: str) -> None:
        if done == 1:
            seen.append((clean_staging(images), staging_folders(images)))

    ingest(store, [digits_dir / "0"], progress=clean_while_importing)

    [(removed, during)] = seen
    assert removed == []
    assert len(during) == 2 and fresh in during  # the running import's folder and the fresh one both stay
    assert staging_folders(images) == [fresh]  # the import removed its own folder when it finished
    assert clean_staging(images, max_age=0) == [fresh]
    assert staging_folders(images) == []
