"""Importing a whole-project zip (written by `app.engine.project_archive.export_project`): check it, then open it
under a free name.

The zip checks every import gets come first (`app.core.archives`: the entry count before the zip is opened,
overlapping entries, zip slip, compression ratio, declared and unpacked size against `IngestLimits` and the free disk
space); then only project files may be in it, the schema version must be one this app knows (a newer one is
refused), every file must match the manifest's sha256 and every image the sha256 in the database. The files are
unpacked in ``<projects>/.importing-*/``, which no project list shows; only when every check passed is the folder
renamed to a free project name ("birds", else "birds 2", ...). A refused or failed import leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from app.core.archives import (
    ENV_MAX_IMAGES,
    ENV_MAX_POOL,
    MAX_FILE_BYTES,
    EntryReader,
    IngestLimits,
    UnpackBudget,
    entry_count_problem,
    entry_problem,
    layout_problem,
    over_counts,
    unsafe_entry,
)
from app.core.errors import IngestError
from app.core.ingest import IMAGES_DIR
from app.core.store import SCHEMA_VERSION, ProjectStore
from app.engine.project_archive import CHUNK, DATABASE, FOLDERS, FORMAT, FORMAT_VERSION, MANIFEST, MODEL_FILES

STAGING_PREFIX = ".importing-"
STALE_SECONDS = 3600.0
MAX_MANIFEST_BYTES = 256 << 20
_NAME_CHARS = re.compile(r"[^\w .-]")
_MAX_NAME = 58  # room for " 999" within a project name's 64 characters

REFUSED = "The project zip was not imported: {reason}"
NOT_A_ZIP = "the file is not a zip archive (or it is damaged). Export the project again and import that file."
NOT_AN_EXPORT = (
    "it has no manifest.json, so it is not a whole-project export of this app. Export the project with "
    "'Whole project (zip)' or `python -m app export-project`, then import that file."
)
FOREIGN = (
    "its manifest.json is not one of this app's project exports. Export the project with 'Whole project (zip)' or "
    "`python -m app export-project`, then import that file."
)
NO_DATABASE = "it has no project database (project.db), so there is no project to open. Export the project again."
NEWER = (
    "it was exported by a newer version of the app ({what} {found}; this app knows {known}). Update the app, then "
    "import the project again."
)
DAMAGED = "{what} is damaged or was changed after the export. Export the project again."
BAD_IMAGE = (
    "the image '{path}' does not match the sha256 in the project's database (its bytes were changed or damaged). "
    "Export the project again from the original."
)
SLIP = (
    "its entry '{name}' has an absolute path or goes up with '..', which could write outside the projects folder. "
    "Export the project again with this app."
)
TOO_MANY = (
    f"it holds {{count:,}} images and this app takes at most {{allowed:,}} in one import or project; set "
    f"{ENV_MAX_IMAGES} and {ENV_MAX_POOL} to allow more."
)
MISSING = "the file '{path}' that the project needs is not in the zip. Export the project again."
OUTSIDE = (
    "its {what} points outside the project ('{value}'), and a project zip may only use its own files. Export the "
    "project again with this app."
)
SERVER_FOLDER = (
    "its model is a folder of the computer it was made on ('{value}'), which a shared server does not open. Import "
    "the model's weights file with 'Start from your own model' instead, then import the project again."
)
SOURCES = ("bundled", "hub", "file", "random")  # lit_models.backbones.SOURCES
LOCAL_NAMES = ("local-dir:", "file:", "/", "~", ".", "\\")  # model names that read a folder of the server


class ProjectArchiveError(IngestError):
    """A project zip that is refused as a whole; nothing of it was kept."""

    def __init__(self, reason: str) -> None:
        super().__init__(REFUSED.format(reason=reason))


@dataclass(frozen=True)
class ImportedProject:
    """What an import brought: the project's new name, the name it had, its images and labeled images."""

    name: str
    original_name: str
    images: int
    labeled: int


def import_project(
    archive: str | os.PathLike[str],
    projects_dir: str | os.PathLike[str],
    *,
    limits: IngestLimits | None = None,
    allow_local_paths: bool = True,
) -> ImportedProject:
    """Check a project zip, unpack it into a staging folder and, when every check passed, make it the project of a
    free name in `projects_dir` (the exported name, else "<name> 2", "<name> 3", ...).

    Args:
        archive: a zip written by `export_project`.
        projects_dir: the folder of projects it joins.
        limits: what the zip may hold and unpack (default: `IngestLimits.from_env`).
        allow_local_paths: the project's model may be a folder of this computer (a timm ``local-dir:`` name); off
            on a server others share.

    Raises:
        ProjectArchiveError: the zip is refused; the message says why. Nothing was kept.
    """
    archive, projects = Path(archive), Path(projects_dir)
    if not archive.is_file():
        raise ProjectArchiveError(f"there is no file '{archive}'.")
    limits = limits or IngestLimits.from_env()
    projects.mkdir(parents=True, exist_ok=True)
    _clean_stale_staging(projects)
    budget = UnpackBudget(limits, free_bytes=shutil.disk_usage(projects).free)
    with _checked_zip(archive, budget) as (zf, infos):
        manifest = _read_manifest(zf, infos[MANIFEST], budget)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=projects))
        try:
            root = staging / "project"
            hashes = _unpack(zf, [info for name, info in infos.items() if name != MANIFEST], root, budget)
            found = _check_contents(root, manifest, hashes, limits)
            _check_references(root / DATABASE, hashes, allow_local_paths)
            return _land(root, projects, found)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _checked_zip(path: Path, budget: UnpackBudget) -> Iterator[tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]]:
    """The open zip and its files by name, once the zip checks of `app.core.archives` passed (the entry count before
    the zip is opened) and every entry is a project file."""
    problem = entry_count_problem(path, budget.limits.max_zip_entries)
    if problem is not None:
        raise ProjectArchiveError(problem)
    try:
        zf = zipfile.ZipFile(path)
        infos = zf.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise ProjectArchiveError(NOT_A_ZIP) from exc
    with zf:
        yield zf, _project_entries(path, infos, budget)


def _project_entries(path: Path, infos: list[zipfile.ZipInfo], budget: UnpackBudget) -> dict[str, zipfile.ZipInfo]:
    """The zip's files by name; refuses the whole zip for a zip bomb's layout, a name that escapes (zip slip), a
    file that is no part of a project, an entry too large or too compressed, or a total over the budget."""
    problem = layout_problem(infos, path.stat().st_size)
    if problem is not None:
        raise ProjectArchiveError(problem)
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        if unsafe_entry(name):
            raise ProjectArchiveError(SLIP.format(name=name))
        if info.is_dir():
            continue
        parts = name.split("/")
        known = name in (MANIFEST, DATABASE) or (len(parts) > 1 and parts[0] in FOLDERS)
        if not known or "\\" in name or any(part in ("", ".") for part in parts) or name in entries:
            raise ProjectArchiveError(f"it holds '{name}', which is not a file of a project exported by this app.")
        problem = entry_problem(info, budget.limits.max_ratio)
        if problem is not None:
            raise ProjectArchiveError(f"{problem} (entry '{name}')")
        entries[name] = info
    if MANIFEST not in entries:
        raise ProjectArchiveError(NOT_AN_EXPORT)
    if DATABASE not in entries:
        raise ProjectArchiveError(NO_DATABASE)
    problem = budget.declared_problem(sum(info.file_size for info in entries.values()))
    if problem is not None:
        raise ProjectArchiveError(problem)
    return entries


def _read_manifest(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: UnpackBudget) -> dict[str, Any]:
    """The manifest, once its format and versions are ones this app reads."""
    try:
        with EntryReader(zf.open(info), MAX_MANIFEST_BYTES, budget) as src:
            manifest = json.loads(src.read(MAX_MANIFEST_BYTES + 1))
    except IngestError as exc:  # the unpacking budget, or a manifest over its size limit
        raise ProjectArchiveError(f"{exc} (entry '{MANIFEST}')") from exc
    except (ValueError, zipfile.BadZipFile) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ProjectArchiveError(DAMAGED.format(what="its manifest.json")) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ProjectArchiveError(FOREIGN)
    versions = (("format_version", "export format", FORMAT_VERSION), ("schema_version", "schema", SCHEMA_VERSION))
    for key, what, known in versions:
        found = manifest.get(key)
        if not isinstance(found, int):
            raise ProjectArchiveError(DAMAGED.format(what="its manifest.json"))
        if found > known:
            raise ProjectArchiveError(NEWER.format(what=what, found=found, known=known))
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("images"), list):
        raise ProjectArchiveError(DAMAGED.format(what="its manifest.json"))
    return manifest


def _unpack(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], root: Path, budget: UnpackBudget) -> dict[str, str]:
    """Unpack the entries below `root`, counting what really inflates against the budget; their sha256 by name."""
    hashes: dict[str, str] = {}
    for info in infos:
        target = root.joinpath(*info.filename.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        try:
            with EntryReader(zf.open(info), MAX_FILE_BYTES, budget) as src, target.open("xb") as dst:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
        except IngestError as exc:  # the unpacking budget, or a file over the size limit
            raise ProjectArchiveError(f"{exc} (entry '{info.filename}')") from exc
        except (zipfile.BadZipFile, EOFError, NotImplementedError) as exc:
            raise ProjectArchiveError(DAMAGED.format(what=f"the file '{info.filename}'")) from exc
        hashes[info.filename] = digest.hexdigest()
    return hashes


@dataclass(frozen=True)
class _Found:
    name: str
    images: int
    labeled: int


def _check_contents(root: Path, manifest: dict[str, Any], hashes: dict[str, str], limits: IngestLimits) -> _Found:
    """Every file against the manifest's sha256, and every image against the database's; the schema version and
    the image limits. Returns the project's name and counts."""
    recorded = manifest["files"]
    if hashes[DATABASE] != recorded.get(DATABASE):
        raise ProjectArchiveError(DAMAGED.format(what="its database"))
    found, images = _read_database(root / DATABASE)
    for path, sha256 in images.items():
        if not isinstance(path, str) or unsafe_entry(path) or PurePosixPath(path).parts[:1] != (IMAGES_DIR,):
            raise ProjectArchiveError(f"its database names the image '{path}', outside the project's images folder.")
        if path not in hashes:
            raise ProjectArchiveError(MISSING.format(path=path))
        if hashes[path] != sha256:
            raise ProjectArchiveError(BAD_IMAGE.format(path=path))
    listed = {
        i.get("path"): i.get("sha256")
        for i in manifest["images"]
        if isinstance(i, dict) and isinstance(i.get("path"), str)
    }
    if listed != images:
        raise ProjectArchiveError(DAMAGED.format(what="its list of images"))
    for name, sha256 in hashes.items():
        if recorded.get(name) != sha256:
            raise ProjectArchiveError(DAMAGED.format(what=f"the file '{name}'"))
    for name in recorded:
        if name not in hashes:
            raise ProjectArchiveError(MISSING.format(path=name))
    allowed, _ = over_counts(found.images, 0, limits)
    if allowed < found.images:
        raise ProjectArchiveError(TOO_MANY.format(count=found.images, allowed=allowed))
    return found


def _check_references(database: Path, files: dict[str, str], allow_local_paths: bool) -> None:
    """What the database names besides images stays inside the project: the model's weights are a file of the zip's
    ``model_files/``, round checkpoints are in ``checkpoints/``, a loaded checkpoint is named, not a path; and on a
    shared server the model is no folder of the computer."""
    try:
        connection = sqlite3.connect(database)
        try:
            values = dict(connection.execute("SELECT key, value FROM settings").fetchall())
            found = connection.execute("SELECT checkpoint FROM rounds WHERE checkpoint IS NOT NULL").fetchall()
            rounds = [row[0] for row in found]
        finally:
            connection.close()
        settings = json.loads(values.get("settings") or "{}")
        active = json.loads(values.get("active_model") or "null")
    except (sqlite3.Error, ValueError) as exc:
        raise ProjectArchiveError(DAMAGED.format(what="its database")) from exc
    if not isinstance(settings, dict) or not isinstance(active, dict | None):
        raise ProjectArchiveError(DAMAGED.format(what="its database"))
    weights, source = settings.get("weights"), settings.get("backbone_source", "bundled")
    if source not in SOURCES or (source == "file" and not weights):
        raise ProjectArchiveError(DAMAGED.format(what="its model settings"))
    if weights is not None:
        parts = re.split(r"[\\/]", str(weights))
        if len(parts) < 2 or parts[-2] != MODEL_FILES or f"{MODEL_FILES}/{parts[-1]}" not in files:
            raise ProjectArchiveError(OUTSIDE.format(what="model file", value=weights))
    arch = str(settings.get("backbone") or "").strip()
    if not allow_local_paths and arch.lower().startswith(LOCAL_NAMES):
        raise ProjectArchiveError(SERVER_FOLDER.format(value=arch))
    for checkpoint in rounds:
        parts = re.split(r"[\\/]", str(checkpoint))
        if len(parts) != 2 or parts[0] != "checkpoints" or parts[1] in ("", ".", ".."):
            raise ProjectArchiveError(OUTSIDE.format(what="round checkpoint", value=checkpoint))
    name = None if active is None else active.get("checkpoint")
    if name is not None and (not isinstance(name, str) or re.search(r"[\\/]|^\.", name)):
        raise ProjectArchiveError(OUTSIDE.format(what="loaded checkpoint", value=name))


def _read_database(path: Path) -> tuple[_Found, dict[str, str]]:
    """The project's name and counts, and its images (path -> sha256), read from the unpacked database."""
    try:
        connection = sqlite3.connect(path)
    except sqlite3.Error as exc:
        raise ProjectArchiveError(DAMAGED.format(what="its database")) from exc
    try:
        schema = connection.execute("PRAGMA user_version").fetchone()[0]
        if schema > SCHEMA_VERSION:
            raise ProjectArchiveError(NEWER.format(what="schema", found=schema, known=SCHEMA_VERSION))
        if connection.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise ProjectArchiveError(DAMAGED.format(what="its database"))
        images = dict(connection.execute("SELECT path, sha256 FROM images").fetchall())
        row = connection.execute("SELECT value FROM settings WHERE key = 'name'").fetchone()
        labeled = connection.execute("SELECT COUNT(DISTINCT image_id) FROM annotations WHERE undone = 0").fetchone()
    except sqlite3.Error as exc:  # not a database, or not a project's
        raise ProjectArchiveError(DAMAGED.format(what="its database")) from exc
    finally:
        connection.close()
    name = json.loads(row[0]) if row is not None else ""
    return _Found(name=str(name), images=len(images), labeled=int(labeled[0])), images


def _land(root: Path, projects: Path, found: _Found) -> ImportedProject:
    """Make the checked project in `root` the project of the first free name in `projects`."""
    base = _clean_name(found.name)
    number = 1
    while True:
        name = base if number == 1 else f"{base} {number}"
        number += 1
        final = projects.expanduser().resolve() / name
        if final.exists():
            continue
        _name_project(root, name, final)
        try:
            os.rename(root, final)
        except OSError:
            if final.exists():  # taken meanwhile by another import or a new project
                continue
            raise
        return ImportedProject(name=name, original_name=found.name, images=found.images, labeled=found.labeled)


def _clean_name(name: str) -> str:
    """A folder name a project may have, made from the exported name (letters, digits, spaces, '.', '-', '_')."""
    cleaned = re.sub(r"^[^\w]+", "", _NAME_CHARS.sub("", name)).strip()[:_MAX_NAME].rstrip()
    return cleaned or "imported project"


def _name_project(root: Path, name: str, final: Path) -> None:
    """Open the project's store (an older schema is brought up to date), record its new name, and point the
    settings at the imported model's weights in their new place."""
    with ProjectStore(root, create=False) as store:
        settings = store.get_setting("settings", {})
        weights = settings.get("weights") if isinstance(settings, dict) else None
        if isinstance(weights, str):
            parts = re.split(r"[\\/]", weights)
            if len(parts) > 1 and parts[-2] == MODEL_FILES and (root / MODEL_FILES / parts[-1]).is_file():
                settings = {**settings, "weights": str(final / MODEL_FILES / parts[-1])}
        store.update_settings(name=name, settings=settings)


def _clean_stale_staging(projects: Path) -> None:
    """Remove the staging folders of imports that were killed (unchanged for an hour)."""
    for folder in projects.glob(f"{STAGING_PREFIX}*"):
        try:
            if folder.is_dir() and not folder.is_symlink() and time.time() - folder.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue
