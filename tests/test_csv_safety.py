"""Exported CSVs open safely in a spreadsheet: text that would start a formula is written with a leading quote."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from app.core.csv_safety import neutralize_cell, neutralize_frame
from app.core.store import ProjectStore
from app.engine.exports import labels_csv, provenance_json

FORMULA_LABELS = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)"]
FORMULA_NAMES = ["\tsheet.png", "\rsheet.png", "=cmd.png", "@name.png", "-minus.png"]


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


HIDDEN_STARTS = [" =1+1", "  +1", "\xa0=1+1", "\u3000=1+1", "\u200b=1+1", "\ufeff=1+1", "\u2060@SUM(A1)", "\n=1+1"]
FULLWIDTH_STARTS = ["\uff1d1+1", "\uff0b1+1", "\uff0d1+1", "\uff20SUM(A1)", " \u3000\uff1dcmd"]


def test_a_formula_start_behind_spaces_or_invisible_characters_gets_a_quote() -> None:
    for text in [*HIDDEN_STARTS, *FULLWIDTH_STARTS]:
        assert neutralize_cell(text) == "'" + text, repr(text)
    for value in [" plain", "\xa0a=b", "\u200b", " ", "\ufeffok", "a\uff1db"]:
        assert neutralize_cell(value) == value, repr(value)


def test_every_csv_cell_is_quoted_so_a_separator_inside_a_cell_never_splits_it(
    store: ProjectStore, tmp_path: Path
) -> None:
    pairs = [("a;=1+1.png", "a;=1+1"), ("b,=2+2.png", "x,@SUM(A1)"), ("c.png", "\u200b=3+3")]
    _label_images(store, pairs)

    text = labels_csv(store, tmp_path / "labels.csv").read_bytes().decode("utf-8")

    lines = text.split("\r\n")
    assert lines[0] == '"image_id","original_name","path","label"'
    assert lines[1].startswith('"1","a;=1+1.png","') and lines[1].endswith('","a;=1+1"')
    assert lines[3].endswith('","\'\u200b=3+3"')
    for line in filter(None, lines):  # every cell is quoted: a spreadsheet splitting on ';' or ',' keeps it whole
        [cells] = list(csv.reader([line]))
        assert line == ",".join('"' + cell.replace('"', '""') + '"' for cell in cells)
    rows = list(csv.DictReader(text.splitlines()))
    assert [(row["original_name"], row["label"]) for row in rows] == [
        (neutralize_cell(name), neutralize_cell(label)) for name, label in pairs
    ]
    assert pd.api.types.is_integer_dtype(pd.read_csv(tmp_path / "labels.csv")["image_id"])
