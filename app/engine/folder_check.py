"""`python -m app check-labels`: likely-wrong labels of any labeled folder or CSV, no project needed.

The images are imported into a scratch project (as `python -m app simulate` does; kept in `--work-dir` so the next
run reuses the embeddings) and embedded once; the labels are this run's (read from the folder names or the CSV),
not any an earlier run left in the scratch project. The ranking is the app's (`app.engine.label_check`).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from app.core.atomic import atomic_write_text
from app.core.csv_safety import safe_csv_text
from app.core.errors import AppError
from app.core.settings import ProjectSettings
from app.core.sources import LABEL_COLUMNS, plan_source
from app.core.store import ProjectStore
from app.engine.label_check import MIN_LABELS, Suspect, find_suspects
from app.engine.session import ActiveLearningSession

SCRATCH = "check-labels"  # the scratch project's folder in --work-dir
COLUMNS = ["path", "label", "suggested", "score"]
_CSV_ROW = re.compile(r" row \d+ \((?P<cell>.*)\)$")  # a CSV item's source: "<csv> row <n> (<path as given>)"


@dataclass(frozen=True)
class LabeledImage:
    """One image of the input: its path as given (under PATH for a folder, the CSV's cell) and its label."""

    path: str
    label: str


@dataclass(frozen=True)
class FolderCheck:
    """What `check_folder` found.

    Attributes:
        images: labeled images checked (one per distinct image).
        rejected: inputs that could not be imported (unreadable, not an image ...).
        suspects: (path, suspect), most suspicious first.
    """

    images: int
    rejected: int
    suspects: list[tuple[str, Suspect]]


def folder_settings(backbone: str, weights: str | None, image_size: int | None) -> ProjectSettings:
    """The scratch project's settings: the backbone (bundled, a hub name, or a checked local weights file)."""
    source = "file" if weights else ("bundled" if backbone == "tf_efficientnet_lite0" else "hub")
    return ProjectSettings(backbone=backbone, backbone_source=source, weights=weights, image_size=image_size)


def labeled_inputs(data: str) -> dict[str, LabeledImage]:
    """This run's labeled images by import source, from a class-folder layout or a CSV of path,label.

    Raises:
        AppError: the path is missing or not a folder or CSV, the CSV lacks its columns, or nothing is labeled.
    """
    src = Path(data).expanduser()
    if not src.exists():
        raise AppError(f"'{data}' does not exist; give a class-folder directory or a CSV of path,label.")
    if not src.is_dir() and src.suffix.lower() != ".csv":
        raise AppError(f"'{data}' is neither a folder nor a .csv file; give class folders or a CSV of path,label.")
    plan = plan_source(src, labels_from_folders=src.is_dir())
    if not plan.items and plan.rejected:
        raise AppError(f"'{data}': {plan.rejected[0].reason}")
    found = {item.source: LabeledImage(_given_path(item.source), item.label) for item in plan.items if item.label}
    if not found and src.is_dir():
        raise AppError(f"No labeled images in '{data}': put each class's images in a folder named after it.")
    if not found:
        raise AppError(f"'{data}' has no label column; name one {', '.join(LABEL_COLUMNS[:2])} (path,label).")
    return found


def _given_path(source: str) -> str:
    match = _CSV_ROW.search(source)
    return match.group("cell") if match else source


def _check_count(labels: list[str]) -> None:
    used = sorted(set(labels))
    if len(used) < 2:
        raise AppError(f"Every image has the label '{used[0]}'; check-labels needs at least two labels in use.")
    if len(labels) < MIN_LABELS:
        raise AppError(f"Only {len(labels)} labeled images; check-labels needs at least {MIN_LABELS}.")


def check_folder(
    data: str, settings: ProjectSettings, *, work_dir: str | None = None, log: Callable[[str], None] = print
) -> FolderCheck:  # fmt: skip
    """Import, embed and check the labeled images of `data` (class folders or a CSV of path,label).

    Args:
        settings: the scratch project's (see `folder_settings`).
        work_dir: keep the scratch project (images, embeddings) here; None = a temporary folder.

    Raises:
        AppError: bad input (see `labeled_inputs`), one label only, or too few images.
    """
    inputs = labeled_inputs(data)
    _check_count([image.label for image in inputs.values()])
    with tempfile.TemporaryDirectory(prefix="alabel-check-") as tmp:
        root = Path(work_dir).expanduser() / SCRATCH if work_dir else Path(tmp) / SCRATCH
        fresh = not (root / ProjectStore.DB_NAME).exists()
        session = ActiveLearningSession(ProjectStore(root, create=fresh), settings)
        try:
            session.store.update_settings(name=SCRATCH, settings=settings.to_dict())
            report = session.add_data([Path(data).expanduser()], labels_from_folders=Path(data).is_dir())
            log(f"{data}: {report.summary()}")
            x_all = session.ensure_embeddings()
            image_of = {row.source: row.id for row in session.store.images()}
            image_of.update({d.source: d.image_id for d in report.duplicates})
            return _judge(inputs, image_of, session.store.image_ids(), x_all, len(report.rejected))
        finally:
            session.close()


def _judge(
    inputs: dict[str, LabeledImage], image_of: dict[str, int], ids: list[int], x_all: np.ndarray, rejected: int
) -> FolderCheck:
    """The suspects among the imported inputs (the first input of each distinct image counts)."""
    row_of = {image_id: row for row, image_id in enumerate(ids)}
    chosen: dict[int, LabeledImage] = {}
    for source, image in inputs.items():
        image_id = image_of.get(source)
        if image_id is not None and image_id in row_of:
            chosen.setdefault(image_id, image)
    labels = [image.label for image in chosen.values()]
    _check_count(labels)
    names = list(dict.fromkeys(labels))
    index = {name: i for i, name in enumerate(names)}
    image_ids = list(chosen)
    x = x_all[[row_of[i] for i in image_ids]]
    y = np.array([index[label] for label in labels], dtype=np.int64)
    suspects = find_suspects(image_ids, x, y, names)
    return FolderCheck(len(image_ids), rejected, [(chosen[s.image_id].path, s) for s in suspects])


def write_suspects(path: str | Path, found: FolderCheck, top: int | None = None) -> Path:
    """The suspects (the first `top`; None = all) as a CSV of path, label, suggested, score, most suspicious first;
    spreadsheet-safe cells."""
    rows = [[p, s.label, s.suggested, s.score] for p, s in found.suspects[:top]]
    return atomic_write_text(path, safe_csv_text(pd.DataFrame(rows, columns=COLUMNS)), newline="")


def summary(found: FolderCheck, shown: int = 10) -> str:
    """A few lines for the terminal: images checked, how many are suspected, the first `shown` of them."""
    share = len(found.suspects) / max(found.images, 1)
    lines = [f"Checked {found.images} labeled images: {len(found.suspects)} suspected ({share:.1%})."]
    if found.rejected:
        lines.append(f"{found.rejected} inputs could not be imported and were left out.")
    if found.suspects:
        lines.append(f"Most likely wrong (of {len(found.suspects)}):")
        lines += [f"  {s.score:.2f}  {p}: '{s.label}', maybe '{s.suggested}'" for p, s in found.suspects[:shown]]
    return "\n".join(lines)
