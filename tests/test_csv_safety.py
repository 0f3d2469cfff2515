"""Exported CSVs open safely in a spreadsheet: text that would start a formula is written with a leading quote."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from app.core.csv_safety import neutralize_cell, neutralize_frame
from app.core.store import ProjectStore
from app.engine.exports import labels_csv, provenance_json

FORMULA_LABELS = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)"]
FORMULA_NAMES = ["\tsheet.png", "\rsheet.png", "=cmd.png", "@name.png", "-minus.png"]


@pytest.fixture
def store(tmp_path: Path):
    project = ProjectStore(tmp_path / "project")
    yield project
    project.close()


def _label_images(store: ProjectStore, pairs: list[tuple[str, str]]) -> None:
    store.ensure_labels(dict.fromkeys(label for _, label in pairs))
    for i, (name, label) in enumerate(pairs):
        image_id = store.add_image(
            sha256=f"{i:064x}", path=f"images/{i}.png", original_name=name, source=name, size_bytes=1, width=1, height=1
        )
        store.add_annotation(image_id, label)


def test_cells_that_start_a_formula_get_a_quote() -> None:
    for text in [*FORMULA_LABELS, "\tx", "\rx"]:
        assert neutralize_cell(text) == "'" + text
    for value in ["plain", "a=b", "", "'=already quoted", 3, -2.5, None]:
        assert neutralize_cell(value) == value


def test_frames_keep_numbers_and_neutralize_text() -> None:
    frame = pd.DataFrame({"image_id": [1, -2], "score": [-0.5, 0.25], "label": ["-2+3", "ok"]})
    safe = neutralize_frame(frame)
    assert safe["label"].tolist() == ["'-2+3", "ok"]
    assert safe["image_id"].tolist() == [1, -2] and safe["score"].tolist() == [-0.5, 0.25]
    assert frame["label"].tolist() == ["-2+3", "ok"]  # the input is left as it was


def test_labels_csv_is_neutralized_and_provenance_keeps_the_exact_text(store: ProjectStore, tmp_path: Path) -> None:
    labels = [*FORMULA_LABELS, "plain", "plain", "plain"]
    pairs = list(zip(FORMULA_NAMES + ["ok.png", "=last.png"], labels, strict=True))
    _label_images(store, pairs)

    path = labels_csv(store, tmp_path / "labels.csv")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["original_name"], r["label"]) for r in rows] == [
        (neutralize_cell(name), neutralize_cell(label)) for name, label in pairs
    ]
    assert rows[0]["label"] == '\'=HYPERLINK("http://x","y")' and rows[1]["original_name"] == "'\rsheet.png"
    for row in rows:
        for column in ("original_name", "label", "path"):
            assert not row[column].startswith(("=", "+", "-", "@", "\t", "\r"))
    assert [r["image_id"] for r in rows] == [str(i) for i in range(1, len(pairs) + 1)]
    assert pd.api.types.is_integer_dtype(pd.read_csv(path)["image_id"])

    prov = json.loads(provenance_json(store, tmp_path / "provenance.json").read_text(encoding="utf-8"))
    assert [(item["original_name"], item["label"]) for item in prov["images"]] == pairs
    assert prov["labels"] == list(dict.fromkeys(labels))
