"""How many images one import and one project may take: limits a host sets, each with its own message."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.archives import IngestLimits
from app.core.ingest import ingest
from tests.image_files import noise, save


def _images(folder: Path, n: int, start: int = 0) -> list[Path]:
    return [save(noise(seed=start + i), folder / f"img{start + i}.png") for i in range(n)]


def test_one_import_brings_at_most_the_set_number_of_images(store, tmp_path: Path) -> None:
    files = _images(tmp_path / "a", 5)
    report = ingest(store, [str(f) for f in files], limits=IngestLimits(max_images=3))
    assert len(report.imported) == 3
    assert [r.source for r in report.rejected] == [str(f) for f in files[3:]]
    assert all("at most 3 images" in r.reason and "ALABEL_MAX_UPLOAD_IMAGES" in r.reason for r in report.rejected)


def test_a_project_holds_at_most_the_set_number_of_images(store, tmp_path: Path) -> None:
    limits = IngestLimits(max_pool=4)
    assert len(ingest(store, [str(f) for f in _images(tmp_path / "a", 3)], limits=limits).imported) == 3
    report = ingest(store, [str(f) for f in _images(tmp_path / "b", 3, start=10)], limits=limits)
    assert len(report.imported) == 1 and store.count_images() == 4
    assert len(report.rejected) == 2 and all("ALABEL_MAX_POOL" in r.reason for r in report.rejected)
    full = ingest(store, [str(f) for f in _images(tmp_path / "c", 1, start=20)], limits=limits)
    assert full.imported == [] and "at most 4 images" in full.rejected[0].reason


def test_the_counts_come_from_the_environment_and_are_unlimited_by_default() -> None:
    assert (IngestLimits.from_env({}).max_images, IngestLimits.from_env({}).max_pool) == (None, None)
    limits = IngestLimits.from_env({"ALABEL_MAX_UPLOAD_IMAGES": "500", "ALABEL_MAX_POOL": "20000"})
    assert (limits.max_images, limits.max_pool) == (500, 20000)
    with pytest.raises(ValueError, match="ALABEL_MAX_POOL"):
        IngestLimits.from_env({"ALABEL_MAX_POOL": "lots"})
