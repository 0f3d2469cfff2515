"""Turn the sources a person picked (folders, image files, zip archives, CSV lists) into a plan of images to import.

Planning only lists names: no image is opened here, so planning 10,000 images costs little memory. Every problem
found while planning (a missing file, a zip entry that escapes its archive, an unreadable CSV, ...) becomes a
`Rejection` with a reason written for the person importing.

Label rules:
    * Folders with ``labels_from_folders=True`` follow the class-folder layout ``root/<class>/.../<image>``: the
      label is the first folder below the chosen folder; images directly in the chosen folder get no label.
    * Zip archives use the same rule inside the archive. When everything sits in one top folder that itself holds
      class folders (a zipped ``dataset/<class>/<image>`` folder), that top folder is the root.
    * CSV files take labels from their label column (empty cell = unlabeled), whatever ``labels_from_folders``.
    * Image files picked one by one get no label.
    Labels are kept as written (only surrounding spaces are removed): "1", "2" and "10" are three labels.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import zipfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from app.core.archives import (
    ZIP_SLIP,
    IngestLimits,
    UnpackBudget,
    entry_count_problem,
    entry_problem,
    layout_problem,
    unsafe_entry,
)
from app.core.errors import IngestError
from app.core.images import IMAGE_EXTENSIONS

PATH_COLUMNS = ("path", "image", "filename", "file", "filepath", "image_path", "file_path", "imagepath", "file_name")
LABEL_COLUMNS = ("label", "class", "category", "target", "class_name", "label_name")
_JUNK_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini"})
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

_TYPES = ", ".join(sorted(IMAGE_EXTENSIONS))
MISSING_SOURCE = "The file or folder does not exist; check the path and try again."
MISSING_FILE = "The file does not exist; check the path and try again."
UNSUPPORTED_TYPE = "'{ext}' is not a supported image type; the app imports {types} files."
UNSUPPORTED_SOURCE = (
    "This is not a supported image type, zip archive or CSV list; the app imports {types} files, .zip and .csv."
)
NESTED_LIST = "Zip and CSV files inside a folder are not opened; import this file on its own."
NESTED_IN_ZIP = "Zip and CSV files inside a zip archive are not opened; unpack it and import this file on its own."
NOT_REGULAR = "This is a named pipe, socket or device, not a regular file, so it was not read; import image files only."
EMPTY_FOLDER = "The folder contains no image files; check that you picked the right folder."
EMPTY_ZIP = "The zip archive contains no image files; check that you picked the right archive."
BAD_ZIP = "The file is not a valid zip archive or it is damaged; create the zip again and import it."
CSV_EMPTY = "The CSV file is empty; add a header row with an image path column and one row per image."
CSV_NO_ROWS = "The CSV file has a header but no rows; add one row per image."
CSV_NOT_UTF8 = "The CSV file is not UTF-8 text; save it as 'CSV UTF-8' and import it again."
CSV_UNREADABLE = "The CSV file could not be read as a table ({detail}); check that it is a comma-separated file."
CSV_NO_PATH_COLUMN = (
    "The CSV file has no image path column. Columns found: {found}. "
    "Name the column with the image paths one of: {accepted} (the first row must be the header)."
)
ROW_NO_PATH = "The row has no image path; fill in the path or delete the row."
ROW_URL = "Web addresses are not downloaded; download the images and list their local paths."
ROW_OUTSIDE = (
    "The path points outside the CSV's folder and the allowed folders, so it was not imported; "
    "move the image next to the CSV or add its folder to the allowed folders."
)
ROW_FOLDER = "The path is a folder, not an image file; list image files in the CSV, or import the folder itself."
LINK_OUTSIDE = (
    "The file is a link to a file outside the chosen folder, so it was not imported; "
    "copy the image into the folder, or import the folder the link points to."
)
LINKED_FOLDER_OUTSIDE = (
    "The folder is a link to a folder outside the chosen folder, so it was not searched; "
    "import the folder the link points to on its own."
)


@dataclass(frozen=True)
class Rejection:
    """An input that was not imported.

    Attributes:
        source: what was rejected, as the person would recognise it: a path, ``archive.zip:entry`` or
            ``list.csv row 3 (path)``.
        reason: a sentence saying what is wrong and what to do.
    """

    source: str
    reason: str


@dataclass(frozen=True)
class FileItem:
    """An image file on disk to import."""

    path: Path  # where to read it
    name: str  # file name as referenced (its extension is kept)
    source: str
    label: str | None = None


@dataclass(frozen=True)
class ZipItem:
    """One entry of a zip archive to import."""

    archive: Path
    index: int  # position in the archive's infolist()
    name: str
    source: str
    label: str | None = None


Item = FileItem | ZipItem


@dataclass
class Plan:
    """What to import (in order) and what was already refused."""

    items: list[Item] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def plan_source(
    source: str | Path,
    *,
    labels_from_folders: bool = False,
    allowed_roots: Sequence[str | Path] = (),
    budget: UnpackBudget | None = None,
) -> Plan:
    """List the images one source provides.

    Args:
        source: a folder, an image file, a ``.zip`` archive or a ``.csv`` list.
        labels_from_folders: read labels from class folders (folders and zip archives only).
        allowed_roots: folders, besides the CSV's own folder, that CSV paths may point into.
        budget: what the import may unpack from zip archives; None: the limits from the environment.

    Returns:
        The plan; problems are in `Plan.rejected`, never raised.
    """
    path = Path(source).expanduser()
    name = str(source)
    try:
        if path.is_dir():
            return _plan_folder(path, labels_from_folders)
        if not path.exists():
            return Plan(rejected=[Rejection(name, MISSING_SOURCE)])
        if not is_regular(path):  # reading a named pipe would wait for a writer forever
            return Plan(rejected=[Rejection(name, NOT_REGULAR)])
        suffix = path.suffix.lower()
        if suffix == ".zip":
            return _plan_zip(path, labels_from_folders, budget or UnpackBudget(IngestLimits.from_env()))
        if suffix == ".csv":
            return _plan_csv(path, allowed_roots)
        if suffix in IMAGE_EXTENSIONS:
            return Plan(items=[FileItem(path=path, name=path.name, source=name)])
        return Plan(rejected=[Rejection(name, UNSUPPORTED_SOURCE.format(types=_TYPES))])
    except IngestError as exc:
        return Plan(rejected=[Rejection(name, str(exc))])
    except OSError as exc:
        return Plan(rejected=[Rejection(name, os_reason(exc))])


def is_hidden(name: str) -> bool:
    """Files and folders skipped silently: dot-files (.DS_Store, ._x), __MACOSX, Thumbs.db, desktop.ini."""
    return name.startswith(".") or name.lower() in _JUNK_NAMES


def is_regular(path: Path) -> bool:
    """True for a regular file (links followed); False for named pipes, sockets, devices, folders and the missing.

    Opening a named pipe waits for a writer, and a device can be endless, so only regular files are ever opened.
    """
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def natural_key(text: str) -> tuple:
    """Sort key that puts "2" before "10"."""
    return tuple(int(part) if part.isdecimal() else part.lower() for part in re.split(r"(\d+)", text))


def _clean_label(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def os_reason(exc: OSError) -> str:
    """A sentence for a file-system error."""
    if isinstance(exc, FileNotFoundError):
        return MISSING_FILE
    if isinstance(exc, PermissionError):
        return "The file could not be opened (permission denied); check who may read it."
    if exc.errno == errno.ENOSPC:
        return "The disk is full; free some space and import again."
    detail = exc.strerror or type(exc).__name__
    return f"The file could not be read ({detail}); check that the disk or network share is available."


# ------------------------------------------------------------------------------------------------ folders
def _plan_folder(root: Path, labels_from_folders: bool) -> Plan:
    """Links (to files or folders) whose target is outside the chosen folder are refused; os.walk does not enter
    linked folders, so a link to a folder inside it adds nothing that is not found at its real place."""
    plan = Plan()
    real_root = Path(os.path.realpath(root))

    def unreadable(error: OSError) -> None:
        plan.rejected.append(Rejection(str(error.filename or root), os_reason(error)))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = sorted((d for d in dirnames if not is_hidden(d)), key=natural_key)
        for dirname in dirnames:
            if _link_outside(Path(dirpath) / dirname, real_root):
                plan.rejected.append(Rejection(str(Path(dirpath) / dirname), LINKED_FOLDER_OUTSIDE))
        rel_dir = Path(dirpath).relative_to(root)
        for filename in sorted(filenames, key=natural_key):
            if is_hidden(filename):
                continue
            path = Path(dirpath) / filename
            suffix = path.suffix.lower()
            if _link_outside(path, real_root):
                plan.rejected.append(Rejection(str(path), LINK_OUTSIDE))
                continue
            if not is_regular(path):
                plan.rejected.append(Rejection(str(path), NOT_REGULAR))
                continue
            if suffix not in IMAGE_EXTENSIONS:
                reason = NESTED_LIST if suffix in (".zip", ".csv") else UNSUPPORTED_TYPE
                plan.rejected.append(Rejection(str(path), reason.format(ext=suffix or filename, types=_TYPES)))
                continue
            label = _clean_label(rel_dir.parts[0]) if labels_from_folders and rel_dir.parts else None
            real = Path(os.path.realpath(path)) if path.is_symlink() else path  # the checked target, not the link
            plan.items.append(FileItem(path=real, name=filename, source=str(path), label=label))
    if not plan.items and not plan.rejected:
        plan.rejected.append(Rejection(str(root), EMPTY_FOLDER))
    return plan


def _link_outside(path: Path, real_root: Path) -> bool:
    """True for a symbolic link whose target (followed to the end) is outside `real_root`."""
    return path.is_symlink() and not _within(Path(os.path.realpath(path)), [real_root])


# ------------------------------------------------------------------------------------------------ zip archives
def _plan_zip(path: Path, labels_from_folders: bool, budget: UnpackBudget) -> Plan:
    """Refuses the whole archive when its layout or declared size is a zip bomb's (see `app.core.archives`)."""
    try:
        problem = entry_count_problem(path, budget.limits.max_zip_entries)  # before ZipFile reads every record
        if problem is not None:
            raise IngestError(problem)
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise IngestError(BAD_ZIP) from exc
    problem = layout_problem(infos, path.stat().st_size)
    if problem is not None:
        raise IngestError(problem)
    plan = Plan()
    candidates: list[tuple[int, zipfile.ZipInfo, list[str]]] = []
    for index, info in enumerate(infos):
        if info.is_dir():
            continue
        name = info.filename
        source = f"{path}:{name}"
        if unsafe_entry(name):
            plan.rejected.append(Rejection(source, ZIP_SLIP))
            continue
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if not parts or any(is_hidden(part) for part in parts):
            continue
        suffix = Path(parts[-1]).suffix.lower()
        if suffix not in IMAGE_EXTENSIONS:
            reason = NESTED_IN_ZIP if suffix in (".zip", ".csv") else UNSUPPORTED_TYPE
            reason = reason.format(ext=suffix or parts[-1], types=_TYPES)
        else:
            reason = entry_problem(info, budget.limits.max_ratio)
        if reason is not None:
            plan.rejected.append(Rejection(source, reason))
        else:
            candidates.append((index, info, parts))
    problem = budget.declared_problem(sum(info.file_size for _, info, _ in candidates))
    if problem is not None:
        raise IngestError(problem)
    wrapped = _is_wrapped([parts for _, _, parts in candidates])
    for index, info, parts in candidates:
        inner = parts[1:] if wrapped else parts
        label = _clean_label(inner[0]) if labels_from_folders and len(inner) >= 2 else None
        plan.items.append(
            ZipItem(archive=path, index=index, name=parts[-1], source=f"{path}:{info.filename}", label=label)
        )
    if not plan.items and not plan.rejected:
        plan.rejected.append(Rejection(str(path), EMPTY_ZIP))
    return plan


def _is_wrapped(entries: list[list[str]]) -> bool:
    """True when every entry sits in one top folder that itself holds class folders (a zipped dataset folder)."""
    return (
        len(entries) > 0
        and len({parts[0] for parts in entries}) == 1
        and all(len(parts) >= 2 for parts in entries)
        and any(len(parts) >= 3 for parts in entries)
    )


# ------------------------------------------------------------------------------------------------ CSV lists
def read_csv_table(path: Path) -> pd.DataFrame:
    """Read a CSV as text cells (no number or NA conversion). Comma, semicolon and tab separators are accepted.

    Raises:
        IngestError: the file is empty, not UTF-8, or not a table.
    """

    def read(sep: str) -> pd.DataFrame:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", sep=sep, skipinitialspace=True)

    try:
        table = read(",")
        if len(table.columns) == 1:
            header = str(table.columns[0])
            for sep in (";", "\t"):
                if sep in header:
                    table = read(sep)
                    break
    except UnicodeDecodeError as exc:
        raise IngestError(CSV_NOT_UTF8) from exc
    except pd.errors.EmptyDataError as exc:
        raise IngestError(CSV_EMPTY) from exc
    except (pd.errors.ParserError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "parser error"
        raise IngestError(CSV_UNREADABLE.format(detail=detail)) from exc
    return table


def find_column(columns: Sequence[str], accepted: Sequence[str]) -> str | None:
    """The first column whose name (case-insensitive, spaces ignored) is in `accepted`, by `accepted` order."""
    by_name: dict[str, str] = {}
    for column in columns:
        by_name.setdefault(str(column).strip().lower().replace(" ", "_"), column)
    for name in accepted:
        if name in by_name:
            return by_name[name]
    return None


def _within(path: Path, roots: Collection[Path]) -> bool:
    """True when `path` is one of `roots` or lies under one (a set of roots is checked in time of the depth)."""
    allowed = roots if isinstance(roots, (set, frozenset)) else set(roots)
    return path in allowed or any(parent in allowed for parent in path.parents)


def _plan_csv(path: Path, allowed_roots: Sequence[str | Path]) -> Plan:
    table = read_csv_table(path)
    path_column = find_column(list(table.columns), PATH_COLUMNS)
    if path_column is None:
        found = ", ".join(f"'{column}'" for column in table.columns) or "none"
        raise IngestError(CSV_NO_PATH_COLUMN.format(found=found, accepted=", ".join(PATH_COLUMNS)))
    if table.empty:
        raise IngestError(CSV_NO_ROWS)
    label_column = find_column([c for c in table.columns if c != path_column], LABEL_COLUMNS)
    folder = Path(os.path.realpath(path.parent))
    roots = {folder} | {Path(os.path.realpath(Path(root).expanduser())) for root in allowed_roots}
    paths = table[path_column].tolist()
    labels = table[label_column].tolist() if label_column is not None else [None] * len(paths)
    plan = Plan()
    for row, (cell, label) in enumerate(zip(paths, labels, strict=True), start=2):  # row 1 is the header
        cell = str(cell).strip()
        source = f"{path} row {row}" + (f" ({cell})" if cell else "")
        reason = None
        if not cell:
            reason = ROW_NO_PATH
        elif _URL.match(cell):
            reason = ROW_URL
        else:
            if os.sep == "/" and "\\" in cell:
                cell = cell.replace("\\", "/")  # paths written on Windows
            target = Path(cell).expanduser()
            resolved = Path(os.path.realpath(target if target.is_absolute() else folder / target))
            suffix = target.suffix.lower()
            if not _within(resolved, roots):
                reason = ROW_OUTSIDE
            elif resolved.is_dir():
                reason = ROW_FOLDER
            elif not resolved.exists():
                reason = MISSING_FILE
            elif not is_regular(resolved):
                reason = NOT_REGULAR
            elif suffix not in IMAGE_EXTENSIONS:
                reason = UNSUPPORTED_TYPE.format(ext=suffix or target.name, types=_TYPES)
        if reason is not None:
            plan.rejected.append(Rejection(source, reason))
            continue
        plan.items.append(FileItem(path=resolved, name=target.name, source=source, label=_clean_label(label)))
    return plan
