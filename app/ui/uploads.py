"""Turn what the upload widgets received into sources for `ActiveLearningSession.add_data`.

Browsers upload each file on its own (Gradio stores it as ``<upload dir>/<hash>/<name>``), so a CSV that lists
images by name cannot find the images uploaded next to it. When a CSV comes with uploaded images, its rows that
do not point at an existing file are matched to the uploaded files by file name, through a rewritten copy. The
upload folder holds every visitor's uploads, so only the matched files themselves are allowed to the CSV, never
their folders.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.core.atomic import atomic_path
from app.core.errors import IngestError
from app.core.ingest import IngestReport
from app.core.markup import code, escape_inline, escape_markdown
from app.core.sources import PATH_COLUMNS, find_column, read_csv_table


@dataclass
class Sources:
    """What to import, in order: images and folders first, CSV lists last (so their labels reach them).

    Attributes:
        paths: files and folders for `add_data`.
        allowed_roots: folders CSV rows may point into, and single files they may name, besides each CSV's own
            folder.
        notes: sentences for the person about how the sources were read.
    """

    paths: list[str] = field(default_factory=list)
    allowed_roots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    return [str(v) for v in value if v]


def collect_sources(
    *,
    folder_files: Sequence[str] | None = None,
    files: Sequence[str] | None = None,
    local_folder: str | None = None,
    allow_local_paths: bool = False,
) -> Sources:
    """Gather the sources of one import.

    Args:
        folder_files: files of an uploaded folder (Gradio passes every file of the folder).
        files: individually uploaded files: images, zip archives, and CSV lists of image paths (with or without
            a label column), told apart by their extension.
        local_folder: a folder path typed by the person (only used when `allow_local_paths`).
        allow_local_paths: the app runs for one person on this computer, so typed paths and CSV rows may point
            anywhere on it.

    Raises:
        IngestError: nothing was given, or a typed folder does not exist.
    """
    out = Sources()
    picked = _as_list(files)
    csv_files = [f for f in picked if f.lower().endswith(".csv")]
    uploaded = _as_list(folder_files) + [f for f in picked if f not in csv_files]
    out.paths += uploaded
    if local_folder and local_folder.strip():
        if not allow_local_paths:
            raise IngestError("Folder paths can only be used when the app runs on your own computer; upload instead.")
        folder = Path(local_folder.strip()).expanduser()
        if not folder.exists():
            raise IngestError(f"The folder '{local_folder.strip()}' does not exist; check the path and try again.")
        out.paths.append(str(folder))
    if allow_local_paths:
        out.allowed_roots.append(os.path.abspath(os.sep))
    for csv_path in csv_files:
        out.paths.append(_match_uploaded(Path(csv_path), uploaded, out) if uploaded else csv_path)
    if not out.paths:
        raise IngestError("Choose a folder, images, a zip file or a CSV file to import first.")
    return out


def _match_uploaded(csv_path: Path, uploaded: list[str], out: Sources) -> str:
    """Point the CSV rows that name an uploaded image (by file name) at the uploaded copy.

    The matched files (not their folders) join `out.allowed_roots`: other rows still reach only the CSV's own
    folder, not other uploads.
    """
    try:
        table = read_csv_table(csv_path)
    except IngestError:
        return str(csv_path)  # the import reports why the CSV cannot be read
    column = find_column(list(table.columns), PATH_COLUMNS)
    if column is None:
        return str(csv_path)
    by_name: dict[str, str | None] = {}
    for path in uploaded:
        name = Path(path).name
        by_name[name] = None if name in by_name else path  # a name uploaded twice is ambiguous
    matched: list[str] = []
    cells = []
    for cell in table[column].tolist():
        text = str(cell).strip()
        target = Path(text.replace("\\", "/")).expanduser() if text else None
        exists = target is not None and (target if target.is_absolute() else csv_path.parent / target).exists()
        found = by_name.get(target.name) if target is not None and not exists else None
        if found:
            matched.append(found)
        cells.append(found or cell)
    if not matched:
        return str(csv_path)
    table[column] = cells
    rewritten = csv_path.with_name(f"{csv_path.stem}.matched.csv")
    with atomic_path(rewritten) as tmp:
        table.to_csv(tmp, index=False)
    out.allowed_roots += sorted({os.path.realpath(p) for p in matched})
    out.notes.append(f"{len(matched)} row(s) of {csv_path.name} were matched to uploaded images by file name.")
    return str(rewritten)


def report_markdown(report: IngestReport, notes: Sequence[str] = (), limit: int = 30) -> str:
    """The ingestion report for the page: counts, then each rejected file with its reason.

    Labels, file names, notes and reasons are escaped: they show as text, never as Markdown or HTML.
    """
    imported, duplicates, rejected = len(report.imported), len(report.duplicates), report.rejected
    head = [f"**Imported {imported:,}** · duplicates {duplicates:,} · rejected {len(rejected):,}"]
    if report.labeled:
        head.append(f"{report.labeled:,} image(s) came with a label.")
    if report.new_labels:
        head.append("New labels: " + ", ".join(escape_markdown(label) for label in report.new_labels) + ".")
    text = "  \n".join(head + [escape_inline(note) for note in notes])
    if rejected:
        items = [f"- {code(_short(r.source))}: {escape_inline(r.reason)}" for r in rejected[:limit]]
        if len(rejected) > limit:
            items.append(f"- … and {len(rejected) - limit:,} more.")
        text += "\n\n" + "\n".join(items)
    return text


def _short(source: str) -> str:
    """A rejected source without the upload folder in front of it."""
    return Path(source).name if os.sep in source else source
