"""The class-folder zip export: every path part fits a file system, and different labels get different folders."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from app.core.filenames import MAX_PART_BYTES, UniqueNames, cap_utf8, safe_part
from app.core.store import ProjectStore
from app.engine.exports import class_zip
from tests.image_files import noise, save

LONG = "é" * 300
LONG_TWIN = "a" * 200 + "b" * 100
LONG_TWIN_2 = "a" * 200 + "c" * 100


def _add(store: ProjectStore, index: int, name: str, label: str) -> int:
    path = save(noise((8, 8), seed=index), store.root / "images" / f"{index}.png")
    image_id = store.add_image(
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        path=path,
        original_name=name,
        source=name,
        size_bytes=path.stat().st_size,
        width=8,
        height=8,
    )
    store.add_annotation(image_id, label)
    return image_id


def test_parts_are_capped_at_a_character_boundary() -> None:
    assert cap_utf8("aé", 2) == "a" and cap_utf8("aé", 3) == "aé"
    part = safe_part(LONG)
    assert part == "é" * (MAX_PART_BYTES // 2) and len(part.encode()) == MAX_PART_BYTES
    name = safe_part("x" * 300 + ".jpeg", keep_extension=True)
    assert name.endswith(".jpeg") and len(name.encode()) == MAX_PART_BYTES
    assert safe_part(" ... ") == "unnamed" and safe_part("a/b?c") == "a_b_c"


def test_unique_names_never_share_a_folder() -> None:
    names = UniqueNames()
    parts = [
        names.claim(label, tag=f"_{i}") for i, label in enumerate([LONG_TWIN, LONG_TWIN_2, "Cat", "cat", "a/b", "a?b"])
    ]
    assert len({p.casefold() for p in parts}) == len(parts)
    assert all(len(p.encode()) <= MAX_PART_BYTES for p in parts)


def test_class_zip_with_long_and_similar_labels_extracts(store: ProjectStore, tmp_path: Path) -> None:
    labels = [LONG, LONG_TWIN, LONG_TWIN_2, "Cat", "cat"]
    store.ensure_labels(labels)
    long_name = "ü" * 200 + ".png"
    for i, label in enumerate(labels):
        for j, name in enumerate([long_name, long_name, f"{i}.png"]):
            _add(store, 10 * i + j, name, label)
    label_of_sha = {img.sha256: store.label_of(img.id) for img in store.images()}

    archive = class_zip(store, tmp_path / "classes.zip")
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "out")
        folders_of: dict[str, set[str]] = {}
        for name in names:
            label = label_of_sha[hashlib.sha256(zf.read(name)).hexdigest()]
            folders_of.setdefault(label, set()).add(name.split("/")[0])
    assert len(names) == len(set(names)) == len(label_of_sha) == 15
    assert all(len(part.encode()) <= MAX_PART_BYTES for name in names for part in name.split("/"))
    assert all(name.endswith(".png") for name in names)
    assert sorted(folders_of) == sorted(labels) and all(len(f) == 1 for f in folders_of.values())
    assert len({next(iter(f)).casefold() for f in folders_of.values()}) == len(labels)
    extracted = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(extracted) == 15
