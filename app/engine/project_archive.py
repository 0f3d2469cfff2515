"""A whole project as one zip: take a project from a laptop to a Space and home again (`app.engine.project_import`
opens it).

The zip holds ``project.db`` (a consistent copy made with SQLite's backup API, never the raw file of a WAL
database), ``images/``, ``checkpoints/``, ``model_files/`` (an imported model's weights), optionally
``embeddings/``, and ``manifest.json``: the format, the app's version, the database's schema version, every image's
path and sha256, and every file with its sha256.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from app.core.archives import unsafe_entry
from app.core.atomic import atomic_path
from app.core.errors import AppError
from app.core.ingest import IMAGES_DIR
from app.core.store import ProjectStore

FORMAT = "alabel-project"
FORMAT_VERSION = 1
APP_VERSION = "0.1.0"  # pyproject.toml's version
MANIFEST = "manifest.json"
DATABASE = ProjectStore.DB_NAME
MODEL_FILES = "model_files"
EMBEDDINGS = "embeddings"
FOLDERS = (IMAGES_DIR, "checkpoints", MODEL_FILES, EMBEDDINGS)
CHUNK = 1 << 20
_DEFLATED = (".db", ".json")  # text-like files; images, weights and embeddings barely compress

CHANGED = (
    "The image file '{path}' no longer matches its sha256 in the project (it was changed on disk), so the project "
    "was not exported. Put the original file back, or delete the project's image and import it again."
)
GONE = "The image file '{path}' of the project is missing, so the project was not exported. Put it back first."


# ----------------------------------------------------------------------------------------------------- export
def snapshot_database(db_path: Path, out: Path) -> None:
    """Copy a live SQLite database to `out` with SQLite's backup API: a consistent copy of every committed
    transaction (the WAL's included), as a single file (rollback journal, no WAL beside it)."""
    source = sqlite3.connect(db_path)
    target = sqlite3.connect(out)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
        source.close()


def export_project(store: ProjectStore, out: Path, *, embeddings: bool = True) -> Path:
    """Write the project of `store` as one zip at `out` (whole or not at all); returns `out`.

    Args:
        embeddings: include the cached embeddings (they can be computed again, but that takes a while).

    Raises:
        AppError: an image file is missing or no longer matches its sha256.
        OSError: a file could not be read or written.
    """
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="alabel-project-") as scratch:
        database = Path(scratch) / DATABASE
        snapshot_database(store.db_path, database)  # first: every model file it names is already on disk
        images = _image_files(store.root, database)
        folders = FOLDERS[1:] if embeddings else FOLDERS[1:-1]
        others = [(path.relative_to(store.root).as_posix(), path) for path in _files(store.root, folders)]
        files: dict[str, str] = {}
        with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            files[DATABASE] = _add(zf, database, DATABASE)
            for entry, path, sha256 in images:
                files[entry] = _add(zf, path, entry)
                if files[entry] != sha256:
                    raise AppError(CHANGED.format(path=path))
            for entry, path in others:
                files[entry] = _add(zf, path, entry)
            manifest = _manifest(database, [(entry, sha256) for entry, _, sha256 in images], files, embeddings)
            zf.writestr(zipfile.ZipInfo(MANIFEST, time.localtime()[:6]), json.dumps(manifest), zipfile.ZIP_DEFLATED)
    return out


def _image_files(root: Path, database: Path) -> list[tuple[str, Path, str]]:
    """(entry in the zip, file, sha256) of every image of the database copy; an image stored outside ``images/``
    gets its content-addressed name there, and the copy says so."""
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute("SELECT id, path, sha256 FROM images ORDER BY id").fetchall()
        found = []
        for image_id, path, sha256 in rows:
            file = root / path
            entry = PurePosixPath(path)
            if entry.is_absolute() or unsafe_entry(path) or entry.parts[:1] != (IMAGES_DIR,):
                entry = PurePosixPath(IMAGES_DIR, sha256[:2], sha256 + entry.suffix.lower())
                connection.execute("UPDATE images SET path = ? WHERE id = ?", (entry.as_posix(), image_id))
            if not file.is_file():
                raise AppError(GONE.format(path=path))
            found.append((entry.as_posix(), file, sha256))
        connection.commit()
    finally:
        connection.close()
    return found


def _files(root: Path, folders: tuple[str, ...]) -> Iterator[Path]:
    """The regular files below `folders` of `root`, skipping hidden ones (temporary files of unfinished saves)."""
    for folder in folders:
        base = root / folder
        if base.is_dir() and not base.is_symlink():
            for path in sorted(base.rglob("*")):
                parts = path.relative_to(root).parts
                if path.is_file() and not path.is_symlink() and not any(p.startswith(".") for p in parts):
                    yield path


def _add(zf: zipfile.ZipFile, path: Path, entry: str) -> str:
    """Write `path` into `zf` as `entry`, hashing the bytes as they go in; returns their sha256."""
    info = zipfile.ZipInfo.from_file(path, entry)
    info.compress_type = zipfile.ZIP_DEFLATED if path.suffix in _DEFLATED else zipfile.ZIP_STORED
    digest = hashlib.sha256()
    with path.open("rb") as src, zf.open(info, "w") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()


def _manifest(database: Path, images: list[tuple[str, str]], files: dict[str, str], embeddings: bool) -> dict[str, Any]:
    connection = sqlite3.connect(database)
    try:
        schema = connection.execute("PRAGMA user_version").fetchone()[0]
        row = connection.execute("SELECT value FROM settings WHERE key = 'name'").fetchone()
    finally:
        connection.close()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "app_version": APP_VERSION,
        "schema_version": schema,
        "project": None if row is None else json.loads(row[0]),
        "created": time.time(),
        "embeddings": embeddings,
        "images": [{"path": path, "sha256": sha256} for path, sha256 in images],
        "files": files,
    }
