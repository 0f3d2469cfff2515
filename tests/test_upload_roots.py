"""A CSV uploaded with images reaches only the files of its own upload, never other visitors' uploads."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from app.core.ingest import ingest
from app.core.store import ProjectStore
from app.ui.uploads import collect_sources
from tests.image_files import noise, save

OUTSIDE = "The path points outside the CSV's folder and the allowed folders"


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture
def upload_dir(tmp_path: Path) -> Path:
    """Gradio's upload folder: <up>/aaa/img1.png uploaded now, <up>/bbb/secret.png uploaded by someone else."""
    up = tmp_path / "gradio"
    save(noise((16, 16), seed=1), up / "aaa" / "img1.png")
    save(noise((16, 16), seed=2), up / "bbb" / "secret.png")
    return up


def test_csv_rows_cannot_reach_other_uploads(store: ProjectStore, upload_dir: Path) -> None:
    secret = upload_dir / "bbb" / "secret.png"
    table = _write_csv(
        upload_dir / "ccc" / "list.csv",
        [["img1.png", "cat"], ["../bbb/secret.png", "dog"], [str(secret), "dog"]],
    )
    sources = collect_sources(files=[str(upload_dir / "aaa" / "img1.png"), str(table)])
    for root in sources.allowed_roots:
        assert not secret.is_relative_to(root) and Path(root) != upload_dir

    store.ensure_labels(["cat", "dog"])
    report = ingest(store, sources.paths, allowed_roots=sources.allowed_roots)
    assert [img.original_name for img in store.images()] == ["img1.png"]
    assert store.label_counts() == {"cat": 1, "dog": 0}
    outside = [r for r in report.rejected if r.reason.startswith(OUTSIDE)]
    assert len(outside) == 2 and all("secret.png" in r.source for r in outside)


def test_local_mode_still_lets_csv_rows_point_anywhere(store: ProjectStore, upload_dir: Path) -> None:
    secret = upload_dir / "bbb" / "secret.png"
    table = _write_csv(upload_dir / "ccc" / "list.csv", [["img1.png", "cat"], [str(secret), "dog"]])
    sources = collect_sources(files=[str(upload_dir / "aaa" / "img1.png"), str(table)], allow_local_paths=True)
    assert os.path.abspath(os.sep) in sources.allowed_roots

    store.ensure_labels(["cat", "dog"])
    report = ingest(store, sources.paths, allowed_roots=sources.allowed_roots)
    assert sorted(img.original_name for img in store.images()) == ["img1.png", "secret.png"]
    assert not report.rejected
