"""Import images from folders, files, zip archives and CSV lists into a project.

Each input is read once (`app.core.read_once`), capped at the file limit (`MAX_FILE_BYTES`; zip entries also by
what the import may still unpack): one of up to `IN_MEMORY_BYTES` (32 MB: nearly every image) is read whole into
memory and hashed, checked for a duplicate and probed (`probe_bytes`: fully decoded, pixel limit checked from the header
first) from those bytes, which are then written to a staging file; a larger one is streamed into the staging file
(hashed as it is written) and probed there. Only one input is held at a time. The staging file is moved atomically
into the project as ``images/<sha[:2]>/<sha256><ext>`` with its original bytes, and only then is its row queued;
rows (with their import labels) are recorded in transactions of up to `BATCH_ROWS` images or `BATCH_SECONDS`, so
nothing that failed a check is ever stored and no row points at a file that is not complete in place. A batch
that cannot be recorded takes its files with it; a killed import may leave the files of its last batch in
``images/`` without rows (complete, at their content address, so a later import of the same bytes reuses them).
Bad inputs never raise: each becomes a `Rejection` with a reason, and the rest of the import continues.

Duplicates (same bytes, within one import or already in the project) are reported, not added again. When a
duplicate comes with a label and the existing image has none yet, that label is applied (so a folder can be
imported first and its labels CSV afterwards).

What zip archives may unpack is bounded (`IngestLimits`, see `app.core.archives`). Each import stages its files in
its own ``<project>/.incoming-*`` folder (see `app.core.staging`); `clean_staging` removes the ones killed imports
left behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from app.core import read_once
from app.core.archives import (
    MAX_FILE_BYTES,
    EntryReader,
    IngestLimits,
    UnpackBudget,
    UnpackLimitError,
    over_counts,
)
from app.core.errors import BadImageError, StoreError
from app.core.image_rows import NewImage
from app.core.images import DEFAULT_MAX_PIXELS, ImageInfo, probe_bytes, probe_image
from app.core.progress import CountProgressFn
from app.core.sources import FileItem, Item, Rejection, ZipItem, os_reason, plan_source
from app.core.staging import IMAGES_DIR, STAGING_PREFIX, clean_staging, new_staging

if TYPE_CHECKING:
    from app.core.store import ProjectStore

__all__ = ["IMAGES_DIR", "STAGING_PREFIX", "Duplicate", "IngestLimits", "IngestReport", "Rejection", "clean_staging"]
__all__ += ["ingest"]

logger = logging.getLogger(__name__)

BATCH_ROWS = 500  # the most images one transaction records
BATCH_SECONDS = 1.0  # a batch is recorded once it is this old, however few images it holds

ZIP_ENTRY_DAMAGED = "The file inside the zip archive is damaged; create the zip again and import it."
ZIP_METHOD = "The zip uses a compression method the app cannot read; create it again with standard compression."
UNEXPECTED = "The file could not be imported because of an unexpected error ({detail}); please report this."
STORE_FAILED = (
    "The project database could not record the imported images ({detail}); the images of this batch were not "
    "imported. Check that the disk is not full and the project folder is writable, then import again."
)


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
            then after every image (its row may still wait for its batch's transaction). Exceptions it raises
            stop the import (images already done are recorded and stay imported).
        annotator: recorded on the label annotations this import creates.
        limits: what zip archives may unpack (never more than the free disk space), how many images one import and
            one project may hold; None: `IngestLimits.from_env`.

    Returns:
        The report; bad inputs (including a whole bad CSV or zip) are in `IngestReport.rejected`.

    Raises:
        StoreError: the project database cannot be written (images recorded by earlier batches stay imported;
            the failed batch's files are removed).
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
        importer.flush()
    finally:  # also records the images done before an error (or a progress callback) stopped the import
        importer.close()
    return report


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@dataclass(frozen=True)
class _Pending:
    """An image moved into ``images/`` whose row waits for its batch's transaction."""

    item: Item
    row: NewImage
    final: Path
    existed: bool  # the file was there before this import moved it in (an earlier, interrupted import left it)


class _Importer:
    """Imports items one at a time; keeps the open zip archive, the unpack budget, a locked staging folder inside
    the project (stale staging folders of earlier imports are removed first) and the batch of rows to record."""

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
        self.staging, self._owner = new_staging(store.root)
        self._archive_path: Path | None = None
        self._archive: zipfile.ZipFile | None = None
        self._infos: list[zipfile.ZipInfo] = []
        self._folders: set[str] = set()  # the images/<xx> folders known to exist
        self._pending: list[_Pending] = []
        self._pending_hashes: set[str] = set()
        self._batch_started = 0.0

    def close(self) -> None:
        """Record the batch still pending (the images done so far stay imported), then release everything."""
        try:
            self.flush()
        finally:
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
        """Import one item; returns a rejection reason, or None when imported (its row pending) or duplicate.

        The input is read once: a small one into memory, where it is hashed, checked for a duplicate, probed and
        written to the staging file; a large one straight into the staging file (hashed as it is written)."""
        if isinstance(item, FileItem):
            read = read_once.read_file(item.path, temp)
            if isinstance(read, str):
                return read
        else:
            with self._open_entry(item) as src:
                read = read_once.read_stream(src, temp)
        if self._duplicate(item, read.sha256):
            return None
        if read.data is None:
            info = probe_image(temp, max_pixels=self.max_pixels)
        else:
            info = probe_bytes(read.data, max_pixels=self.max_pixels)
            read_once.write_staged(read.data, temp)
        self._place(item, read, info, temp)
        return None

    def _place(self, item: Item, read: read_once.Read, info: ImageInfo, temp: Path) -> None:
        """Move the checked staging file into ``images/`` and queue its row (recorded only after the move, so no
        row ever points at a missing file)."""
        sha256, folder = read.sha256, read.sha256[:2]
        relative = f"{IMAGES_DIR}/{folder}/{sha256}{Path(item.name).suffix.lower()}"
        final = self.store.root / relative
        if folder not in self._folders:
            final.parent.mkdir(exist_ok=True)
            self._folders.add(folder)
        existed = final.exists()  # left by an earlier, interrupted import: same bytes by construction
        os.replace(temp, final)
        row = NewImage(sha256, relative, item.name, item.source, read.size, info.width, info.height, item.label)
        if not self._pending:
            self._batch_started = time.monotonic()
        self._pending.append(_Pending(item, replace(row, annotator=self.annotator), final, existed))
        self._pending_hashes.add(sha256)
        if len(self._pending) >= BATCH_ROWS or time.monotonic() - self._batch_started >= BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Record the pending images and their labels in one transaction. If it fails, the batch's files that
        this import brought are removed (nothing of the batch stays) and the error is raised as a StoreError."""
        pending, self._pending, self._pending_hashes = self._pending, [], set()
        if not pending:
            return
        try:
            recorded = self.store.add_images([entry.row for entry in pending])
        except BaseException as exc:
            self._discard(pending)
            if isinstance(exc, StoreError) or not isinstance(exc, Exception):
                raise
            raise StoreError(STORE_FAILED.format(detail=type(exc).__name__)) from exc
        self.report.new_labels.extend(recorded.new_labels)
        self.known_labels.update(recorded.new_labels)
        for entry, image_id in zip(pending, recorded.ids, strict=True):
            if image_id is None:  # another process added the same bytes meanwhile
                sha256 = entry.row.sha256
                if not entry.existed and self._stored_path(sha256) != entry.row.path:
                    entry.final.unlink(missing_ok=True)  # the other copy has another extension
                self._duplicate(entry.item, sha256)
                continue
            self.report.imported.append(image_id)
            self.report.labeled += entry.row.label is not None

    def _discard(self, pending: list[_Pending]) -> None:
        """Remove the files of a batch whose rows were not recorded (those another import has recorded stay)."""
        for entry in pending:
            if entry.existed:
                continue
            try:
                kept = self._stored_path(entry.row.sha256) == entry.row.path
            except Exception:  # the store cannot be read either: nothing can point at the file through it
                kept = False
            if not kept:
                entry.final.unlink(missing_ok=True)

    def _duplicate(self, item: Item, sha256: str) -> bool:
        """Report `item` as a duplicate if its bytes are stored; label the stored image if it has no label."""
        if sha256 in self._pending_hashes:
            self.flush()  # the same bytes came earlier in this batch: record them to know their id
        image_id = self.store.image_id_for_hash(sha256)
        if image_id is None:
            return False
        self.report.duplicates.append(Duplicate(item.source, image_id))
        if item.label is not None and self.store.label_of(image_id) is None:
            self._label(image_id, item.label)
        return True

    def _label(self, image_id: int, label: str) -> None:
        self.flush()  # the batch before this label, so labels and annotations keep the import's order
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
