"""Import images from folders, files, zip archives and CSV lists into a project.

Each image is streamed (hashed in chunks, zip entries extracted one at a time to a temporary file), checked with
`probe_image` (fully decoded, pixel limit checked from the header first), then moved atomically into the
project as ``images/<sha[:2]>/<sha256><ext>`` with its original bytes. Only then is it recorded in the store, so
nothing that failed a check is ever stored. Bad inputs never raise: each becomes a `Rejection` with a reason, and
the rest of the import continues.

Duplicates (same bytes, within one import or already in the project) are reported, not added again. When a
duplicate comes with a label and the existing image has none yet, that label is applied (so a folder can be
imported first and its labels CSV afterwards).

What zip archives may unpack is bounded (`IngestLimits`, see `app.core.archives`). Each import stages its files in
its own ``<project>/.incoming-*`` folder: beside ``images/`` (the same file system, so the final move is atomic) but
not in it, since ``images/`` is served to the browser and staged bytes are unchecked. `clean_staging` removes the
staging folders that killed imports left behind (also those older versions left inside ``images/``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from app.core.archives import (
    MAX_FILE_BYTES,
    TOO_BIG,
    EntryReader,
    IngestLimits,
    UnpackBudget,
    UnpackLimitError,
    over_counts,
)
from app.core.errors import BadImageError, StoreError
from app.core.images import DEFAULT_MAX_PIXELS, probe_image
from app.core.progress import CountProgressFn
from app.core.sources import NOT_REGULAR, FileItem, Item, Rejection, ZipItem, os_reason, plan_source

try:
    import fcntl
except ImportError:  # Windows: staging folders are recognised as stale by age alone
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from app.core.store import ProjectStore

__all__ = ["Duplicate", "IngestLimits", "IngestReport", "Rejection", "clean_staging", "ingest"]

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
IMAGES_DIR = "images"
STAGING_PREFIX = ".incoming-"
STAGING_LOCK = "owner.lock"
STALE_SECONDS = 3600.0

CHANGED = "The file changed while it was being imported; import it again when nothing is writing to it."
ZIP_ENTRY_DAMAGED = "The file inside the zip archive is damaged; create the zip again and import it."
ZIP_METHOD = "The zip uses a compression method the app cannot read; create it again with standard compression."
UNEXPECTED = "The file could not be imported because of an unexpected error ({detail}); please report this."


@dataclass(frozen=True)
class Duplicate:
    """An input whose bytes are already in the project.

    Attributes:
        source: the input, as in `Rejection.source`.
        image_id: the image already stored with the same bytes.
    """

    source: str
    image_id: int


@dataclass
class IngestReport:
    """What one import did.

    Attributes:
        imported: ids of the newly added images, in import order.
        duplicates: inputs whose bytes were already in the project (or earlier in this import).
        rejected: inputs that were not imported, each with its reason.
        labeled: images that received a label from this import (new images and unlabeled duplicates).
        new_labels: labels this import added to the project, in order of first use.
    """

    imported: list[int] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    labeled: int = 0
    new_labels: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One sentence, e.g. "Imported 10 images, 2 duplicates, 1 rejected."."""
        images = _plural(len(self.imported), "image")
        duplicates = _plural(len(self.duplicates), "duplicate")
        return f"Imported {images}, {duplicates}, {len(self.rejected)} rejected."


def ingest(
    store: ProjectStore,
    sources: Sequence[str | Path],
    *,
    labels_from_folders: bool = False,
    allowed_roots: Sequence[str | Path] = (),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: CountProgressFn | None = None,
    annotator: str = "import",
    limits: IngestLimits | None = None,
) -> IngestReport:
    """Import every image the sources provide into the project.

    Args:
        store: the project; images are copied under ``store.root / "images"``.
        sources: folders (searched recursively, hidden files skipped), image files, ``.zip`` archives and
            ``.csv`` lists (an image path column, optionally a label column; see `app.core.sources`).
        labels_from_folders: take labels from class folders (``root/<class>/<image>``) in folders and zips.
        allowed_roots: folders, besides each CSV's own folder, that CSV paths may point into.
        max_pixels: images with more pixels (width x height) are rejected before decoding.
        progress: called as ``progress(done, total, source)``: with total None while sources are listed,
            then after every image. Exceptions it raises stop the import (images already done stay imported).
        annotator: recorded on the label annotations this import creates.
        limits: what zip archives may unpack (never more than the free disk space), how many images one import and
            one project may hold; None: `IngestLimits.from_env`.

    Returns:
        The report; bad inputs (including a whole bad CSV or zip) are in `IngestReport.rejected`.

    Raises:
        StoreError: the project database cannot be written (images imported before that stay imported).
        ValueError: `limits` is None and an ``ALABEL_MAX_...`` variable is not a number.
    """
    report = IngestReport()
    limits = IngestLimits.from_env() if limits is None else limits
    importer = _Importer(store, max_pixels, annotator, report, limits)
    try:
        items = importer.plan(sources, progress, labels_from_folders, allowed_roots)
        allowed, reason = over_counts(len(items), store.count_images(), limits)
        report.rejected.extend(Rejection(item.source, reason) for item in items[allowed:] if reason)
        items = items[:allowed]
        for done, item in enumerate(items, start=1):
            importer.run(item)
            if progress is not None:
                progress(done, len(items), item.source)
    finally:
        importer.close()
    return report


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class _Importer:
    """Imports items one at a time; keeps the open zip archive, the unpack budget and a locked staging folder
    inside the project (stale staging folders of earlier imports are removed first)."""

    def __init__(
        self, store: ProjectStore, max_pixels: int, annotator: str, report: IngestReport, limits: IngestLimits
    ) -> None:
        self.store = store
        self.images_dir = images_dir = store.root / IMAGES_DIR
        images_dir.mkdir(parents=True, exist_ok=True)
        clean_staging(store.root)
        self.budget = UnpackBudget(limits, free_bytes=shutil.disk_usage(images_dir).free)
        self.max_pixels = max_pixels
        self.annotator = annotator
        self.report = report
        self.known_labels = set(store.labels())
        # Staging beside images/ keeps the final os.replace on one file system (atomic), out of what is served.
        self.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=store.root))
        self._owner = _lock_staging(self.staging)
        self._archive_path: Path | None = None
        self._archive: zipfile.ZipFile | None = None
        self._infos: list[zipfile.ZipInfo] = []

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
            self._archive = None
        shutil.rmtree(self.staging, ignore_errors=True)
        if self._owner is not None:
            self._owner.close()  # after the removal: a cleaner never sees the folder unlocked while it exists

    def plan(
        self,
        sources: Sequence[str | Path],
        progress: CountProgressFn | None,
        by_folder: bool,
        roots: Sequence[str | Path],
    ) -> list[Item]:
        """Everything the sources provide, in order; what planning refused goes straight to the report."""
        items: list[Item] = []
        for source in sources:
            if progress is not None:
                progress(0, None, str(source))
            plan = plan_source(source, labels_from_folders=by_folder, allowed_roots=roots, budget=self.budget)
            items.extend(plan.items)
            self.report.rejected.extend(plan.rejected)
        return items

    def run(self, item: Item) -> None:
        if isinstance(item, ZipItem) and self.budget.stopped:
            self.report.rejected.append(Rejection(item.source, self.budget.stop_reason()))
            return
        temp = self.staging / "incoming.part"
        try:
            reason = self._import(item, temp)
        except StoreError:
            raise  # the project itself cannot be written: not a problem of this input
        except UnpackLimitError as exc:
            reason = str(exc)
        except BadImageError as exc:
            reason = str(exc)
        except zipfile.BadZipFile:
            reason = ZIP_ENTRY_DAMAGED
        except NotImplementedError:
            reason = ZIP_METHOD
        except OSError as exc:
            reason = os_reason(exc)
        except Exception as exc:  # one odd file must not stop the import of the others
            logger.exception("Unexpected error importing %s", item.source)
            reason = UNEXPECTED.format(detail=type(exc).__name__)
        finally:
            temp.unlink(missing_ok=True)
        if reason is not None:
            self.report.rejected.append(Rejection(item.source, reason))

    # ------------------------------------------------------------------------------------------------ steps
    def _import(self, item: Item, temp: Path) -> str | None:
        """Import one item; returns a rejection reason, or None when imported or found duplicate."""
        if isinstance(item, FileItem):
            status = item.path.stat()
            if not stat.S_ISREG(status.st_mode):  # replaced by a named pipe or a device since it was planned
                return NOT_REGULAR
            if status.st_size > MAX_FILE_BYTES:
                return TOO_BIG
            sha256, size = _hash_file(item.path)
            if self._duplicate(item, sha256):
                return None
            with item.path.open("rb") as src:
                copied_sha, _ = _copy_hashing(src, temp)
            if copied_sha != sha256:
                return CHANGED
        else:
            with self._open_entry(item) as src:
                sha256, size = _copy_hashing(src, temp)
            if self._duplicate(item, sha256):
                return None
        info = probe_image(temp, max_pixels=self.max_pixels)
        suffix = Path(item.name).suffix.lower()
        final = self.images_dir / sha256[:2] / f"{sha256}{suffix}"
        relative = final.relative_to(self.store.root).as_posix()
        final.parent.mkdir(exist_ok=True)
        existed = final.exists()  # left by an earlier, interrupted import: same bytes by construction
        os.replace(temp, final)
        try:
            image_id = self.store.add_image(
                sha256=sha256,
                path=relative,
                original_name=item.name,
                source=item.source,
                size_bytes=size,
                width=info.width,
                height=info.height,
            )
        except Exception:
            if not existed:
                final.unlink(missing_ok=True)
            raise
        if image_id is None:  # another process added the same bytes meanwhile
            if not existed and self._stored_path(sha256) != relative:
                final.unlink(missing_ok=True)  # the other copy has another extension
            self._duplicate(item, sha256)
            return None
        self.report.imported.append(image_id)
        if item.label is not None:
            self._label(image_id, item.label)
        return None

    def _duplicate(self, item: Item, sha256: str) -> bool:
        """Report `item` as a duplicate if its bytes are stored; label the stored image if it has no label."""
        image_id = self.store.image_id_for_hash(sha256)
        if image_id is None:
            return False
        self.report.duplicates.append(Duplicate(item.source, image_id))
        if item.label is not None and self.store.label_of(image_id) is None:
            self._label(image_id, item.label)
        return True

    def _label(self, image_id: int, label: str) -> None:
        if label not in self.known_labels:
            self.report.new_labels.extend(self.store.ensure_labels([label]))
            self.known_labels.add(label)
        self.store.add_annotation(image_id, label, annotator=self.annotator, strategy="import")
        self.report.labeled += 1

    def _stored_path(self, sha256: str) -> str | None:
        image_id = self.store.image_id_for_hash(sha256)
        return None if image_id is None else self.store.get_image(image_id).path

    def _open_entry(self, item: ZipItem) -> EntryReader:
        """Open one entry; the archive stays open while consecutive items come from it."""
        archive = self._archive
        if archive is None or self._archive_path != item.archive:
            if archive is not None:
                archive.close()
            self._archive = None
            archive = zipfile.ZipFile(item.archive)
            self._archive, self._archive_path, self._infos = archive, item.archive, archive.infolist()
        return EntryReader(archive.open(self._infos[item.index]), MAX_FILE_BYTES, self.budget)


def _hash_file(path: Path) -> tuple[str, int]:
    """sha256 hex digest and size of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as src:
        while chunk := src.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _copy_hashing(src: BinaryIO | EntryReader, dest: Path) -> tuple[str, int]:
    """Copy a stream into a new file in chunks; returns the sha256 hex digest and size of what was written."""
    digest, size = hashlib.sha256(), 0
    with dest.open("wb") as out:
        while chunk := src.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return digest.hexdigest(), size


# ------------------------------------------------------------------------------------------------ staging folders
def clean_staging(project_root: Path, *, max_age: float = STALE_SECONDS) -> list[Path]:
    """Remove the ``.incoming-*`` staging folders that killed imports left in `project_root` (and in its ``images/``
    folder, where older versions staged).

    Other processes, and other imports of this process, may be importing into the same project, so a folder is
    removed only when its owner is gone. Each import holds an exclusive `fcntl.flock` on the ``owner.lock`` file in
    its folder, which the system releases when the process ends (even by ``kill -9``): a folder whose lock can be
    taken is stale at once. Process ids are reused and ages alone would wait long after a kill, so neither is the
    rule; only a folder without a lock file (an import starting up, an older version, no ``flock`` on this
    system) falls back to age: it is removed after `max_age` seconds without a change in it.

    Args:
        project_root: the project folder.
        max_age: seconds without a change after which a folder without a lock file counts as stale.

    Returns:
        The folders removed.
    """
    folders: list[Path] = []
    for parent in (project_root, project_root / IMAGES_DIR):
        try:
            folders += sorted(p for p in parent.iterdir() if p.name.startswith(STAGING_PREFIX) and not p.is_symlink())
        except OSError:  # no such folder yet, or unreadable: nothing to clean there
            continue
    return [folder for folder in folders if folder.is_dir() and _remove_if_stale(folder, max_age)]


def _remove_if_stale(folder: Path, max_age: float) -> bool:
    lock = folder / STAGING_LOCK
    handle: BinaryIO | None = None
    try:
        if fcntl is not None and lock.exists():
            handle = lock.open("rb")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: its import is running
        elif time.time() - _last_change(folder) < max_age:
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True
    except OSError:
        return False
    finally:
        if handle is not None:
            handle.close()


def _last_change(folder: Path) -> float:
    return max([folder.lstat().st_mtime] + [entry.lstat().st_mtime for entry in folder.iterdir()])


def _lock_staging(staging: Path) -> BinaryIO | None:
    """Lock ``owner.lock`` in a new staging folder for as long as the returned file stays open.

    The file is locked under a temporary name and then renamed, so a cleaner never finds it unlocked while its
    import runs. None where locks are not available (the folder is then recognised as stale by age).
    """
    if fcntl is None:
        return None
    fd, temp = tempfile.mkstemp(prefix=".lock-", dir=staging)
    handle = os.fdopen(fd, "wb")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(temp, staging / STAGING_LOCK)
    except OSError:
        handle.close()
        return None
    return handle
