"""ingest(): folders, files, zip archives and CSV lists into a real ProjectStore, with good and hostile inputs."""

from __future__ import annotations

import hashlib
import io
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.core.images import load_rgb
from app.core.ingest import Duplicate, IngestReport, Rejection, ingest
from app.core.sources import natural_key, unsafe_entry
from app.core.store import ProjectStore
from tests.image_files import (
    animated_gif,
    bomb_png,
    exif_rotated_jpeg,
    noise,
    palette_png,
    rgba_png,
    save,
    truncated,
)

CORRUPT = "The file is truncated or corrupt; re-export it and import again."
NOT_IMAGE = "not an image the app can read"
OUTSIDE = "The path points outside the CSV's folder and the allowed folders"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored_files(store: ProjectStore) -> list[Path]:
    return sorted(path for path in (store.root / "images").rglob("*") if path.is_file())


def reasons(report: IngestReport) -> dict[str, str]:
    """Rejection reason by the last part of its source (file name, zip entry or CSV row text)."""
    return {Path(r.source.split(":")[-1].rstrip(")")).name: r.reason for r in report.rejected}


def files_outside(root: Path, project: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file() and project not in path.parents}


def assert_stored_exactly(store: ProjectStore, sources: dict[str, Path]) -> None:
    """Every image row points at a byte-identical, content-addressed copy of its source; no other files exist."""
    rows = store.images()
    assert {row.source for row in rows} == set(sources)
    for row in rows:
        original = sources[row.source]
        digest = sha256(original)
        assert row.sha256 == digest
        assert row.path == f"images/{digest[:2]}/{digest}{original.suffix.lower()}"
        assert (store.root / row.path).read_bytes() == original.read_bytes()
        assert row.size_bytes == original.stat().st_size
        assert row.original_name == original.name
    assert stored_files(store) == sorted(store.root / row.path for row in rows)


# ------------------------------------------------------------------------------------------------ folders
def test_class_folder_layout_imports_digits_with_their_labels(
    store: ProjectStore, digits_dir: Path, digit_pngs: list[Path]
) -> None:
    report = ingest(store, [digits_dir], labels_from_folders=True)

    assert report.summary() == "Imported 100 images, 0 duplicates, 0 rejected."
    assert (len(report.imported), report.duplicates, report.rejected) == (100, [], [])
    assert report.labeled == 100
    assert report.new_labels == [str(d) for d in range(10)]
    assert store.labels() == [str(d) for d in range(10)]
    assert_stored_exactly(store, {str(path): path for path in digit_pngs})
    by_source = {row.source: row for row in store.images()}
    current = store.current_labels()
    for path in digit_pngs:
        row = by_source[str(path)]
        assert (row.width, row.height) == (32, 32)
        assert current[row.id] == path.parent.name
    assert store.label_counts() == {str(d): 10 for d in range(10)}
    assert {(a.annotator, a.strategy) for a in store.history()} == {("import", "import")}
    assert report.imported == store.image_ids()


def test_folder_without_label_option_imports_unlabeled(store: ProjectStore, digits_dir: Path) -> None:
    report = ingest(store, [digits_dir])
    assert len(report.imported) == 100
    assert (report.labeled, report.new_labels) == (0, [])
    assert store.labels() == []
    assert store.current_labels() == {}


def test_images_directly_in_the_root_get_no_label(store: ProjectStore, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    save(noise(seed=1), root / "loose.png")
    save(noise(seed=2), root / "cat" / "a.png")
    save(noise(seed=3), root / "cat" / "2021" / "b.png")  # deeper folders belong to the first-level class
    report = ingest(store, [root], labels_from_folders=True)
    labels = {store.get_image(i).original_name: store.label_of(i) for i in report.imported}
    assert labels == {"loose.png": None, "a.png": "cat", "b.png": "cat"}


def test_numeric_folder_names_stay_distinct_labels(store: ProjectStore, tmp_path: Path) -> None:
    root = tmp_path / "classes"
    for seed, name in enumerate(["10", "2", "1"]):
        save(noise(seed=seed), root / name / "x.png")
    report = ingest(store, [root], labels_from_folders=True)
    assert store.labels() == ["1", "2", "10"]  # natural order, no re-mapping
    assert report.new_labels == ["1", "2", "10"]
    assert sorted(store.current_labels().values(), key=int) == ["1", "2", "10"]


def test_hidden_files_skipped_silently_and_other_files_rejected(store: ProjectStore, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    save(noise(seed=1), root / "good.png")
    save(noise(seed=2), root / ".hidden" / "secret.png")
    save(noise(seed=3), root / "__MACOSX" / "._good.png")
    save(noise(seed=4), root / "._good.png")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "Thumbs.db").write_bytes(b"junk")
    (root / "notes.txt").write_text("hello")
    (root / "README").write_text("hello")
    (root / "labels.csv").write_text("path\ngood.png\n")

    report = ingest(store, [root])

    assert len(report.imported) == 1
    assert store.images()[0].original_name == "good.png"
    assert reasons(report) == {
        "notes.txt": "'.txt' is not a supported image type; the app imports "
        ".bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp files.",
        "README": "'README' is not a supported image type; the app imports "
        ".bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp files.",
        "labels.csv": "Zip and CSV files inside a folder are not opened; import this file on its own.",
    }


def test_empty_folder_is_reported(store: ProjectStore, tmp_path: Path) -> None:
    (tmp_path / "empty" / ".git").mkdir(parents=True)
    report = ingest(store, [tmp_path / "empty"])
    message = "The folder contains no image files; check that you picked the right folder."
    assert report.rejected == [Rejection(str(tmp_path / "empty"), message)]


def test_bad_files_are_rejected_each_with_its_reason_and_the_rest_imports(
    store: ProjectStore, tmp_path: Path, digits_dir: Path, digit_pngs: list[Path]
) -> None:
    bad = digits_dir / "bad"
    bad.mkdir()
    truncated(save(noise((80, 60), seed=5), tmp_path / "whole.png"), bad / "cut.png")
    truncated(save(noise((80, 60), seed=6), tmp_path / "whole.jpg"), bad / "cut.jpg")
    (bad / "renamed.png").write_text("name,phone\nAda,555\n")
    (bad / "empty.gif").write_bytes(b"")
    bomb_png(bad / "bomb.png", 3000, 3000)
    before = files_outside(tmp_path, store.root)

    report = ingest(store, [digits_dir], labels_from_folders=True, max_pixels=1_000_000)

    assert report.summary() == "Imported 100 images, 0 duplicates, 5 rejected."
    assert reasons(report) == {
        "cut.png": CORRUPT,
        "cut.jpg": CORRUPT,
        "renamed.png": "The file is not an image the app can read (JPEG, PNG, BMP, GIF, WebP or TIFF); "
        "it may be another kind of file with an image extension.",
        "empty.gif": "The file is empty (0 bytes); re-export it and import again.",
        "bomb.png": "The image is too large (3,000 x 3,000 pixels, more than the limit of 1,000,000 pixels); "
        "resize it and import again.",
    }
    # nothing of the bad files is stored: no row, no file, not even their folder's name as a label
    assert store.labels() == [str(d) for d in range(10)]
    assert_stored_exactly(store, {str(path): path for path in digit_pngs})
    assert files_outside(tmp_path, store.root) == before
    assert [p.name for p in (store.root / "images").iterdir() if not p.is_dir() or len(p.name) != 2] == []


# ------------------------------------------------------------------------------------------------ formats
def test_every_format_is_imported_with_original_bytes(store: ProjectStore, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    files = [
        save(noise(seed=1), folder / "photo.JPG"),
        save(noise(seed=2), folder / "b.bmp"),
        save(noise(seed=3), folder / "w.webp"),
        save(noise(seed=4), folder / "t.tiff"),
        save(noise(seed=5, mode="L"), folder / "gray.png"),
        exif_rotated_jpeg(folder / "rotated.jpeg"),
        rgba_png(folder / "alpha.png"),
        palette_png(folder / "palette.png"),
        animated_gif(folder / "anim.gif"),
    ]
    report = ingest(store, [folder])

    assert report.summary() == "Imported 9 images, 0 duplicates, 0 rejected."
    assert_stored_exactly(store, {str(path): path for path in files})
    rows = {row.original_name: row for row in store.images()}
    assert rows["photo.JPG"].path.endswith(".jpg")  # extension lower-cased, bytes unchanged
    assert (rows["rotated.jpeg"].width, rows["rotated.jpeg"].height) == (20, 40)  # EXIF orientation applied
    assert (rows["photo.JPG"].width, rows["photo.JPG"].height) == (64, 48)
    for row in rows.values():
        assert load_rgb(store.root / row.path).mode == "RGB"


# ------------------------------------------------------------------------------------------------ duplicates
def test_duplicates_within_one_import_and_against_the_project(
    store: ProjectStore, tmp_path: Path, digits_dir: Path, digit_pngs: list[Path]
) -> None:
    copy = digits_dir / "9" / "copy-of-3-0.png"
    shutil.copy(digits_dir / "3" / "0.png", copy)

    first = ingest(store, [digits_dir], labels_from_folders=True)
    original_id = next(row.id for row in store.images() if row.source == str(digits_dir / "3" / "0.png"))
    assert first.summary() == "Imported 100 images, 1 duplicate, 0 rejected."
    assert first.duplicates == [Duplicate(str(copy), original_id)]
    assert store.label_of(original_id) == "3"  # the copy in folder 9 does not relabel it

    files = stored_files(store)
    second = ingest(store, [digits_dir, digit_pngs[0]], labels_from_folders=True)
    assert second.summary() == "Imported 0 images, 102 duplicates, 0 rejected."
    assert (second.labeled, second.new_labels) == (0, [])
    assert store.count_images() == 100
    assert stored_files(store) == files
    assert len(store.history()) == 100


def test_labels_csv_after_folder_labels_the_existing_images(store: ProjectStore, digits_dir: Path) -> None:
    ingest(store, [digits_dir])
    assert store.current_labels() == {}
    csv = digits_dir / "labels.csv"
    csv.write_text("path,label\n3/0.png,three\n4/0.png,\n")

    report = ingest(store, [csv])

    assert report.summary() == "Imported 0 images, 2 duplicates, 0 rejected."
    assert (report.labeled, report.new_labels) == (1, ["three"])
    three = next(row.id for row in store.images() if row.source == str(digits_dir / "3" / "0.png"))
    assert store.current_labels() == {three: "three"}


# ------------------------------------------------------------------------------------------------ single files
def test_individual_files_missing_paths_and_unsupported_sources(store: ProjectStore, tmp_path: Path) -> None:
    image = save(noise(), tmp_path / "cat" / "one.png")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    missing = tmp_path / "gone.jpg"

    report = ingest(store, [image, str(missing), text], labels_from_folders=True)

    assert len(report.imported) == 1
    assert store.label_of(report.imported[0]) is None  # a single file has no class folder
    assert report.rejected == [
        Rejection(str(missing), "The file or folder does not exist; check the path and try again."),
        Rejection(
            str(text),
            "This is not a supported image type, zip archive or CSV list; the app imports "
            ".bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp files, .zip and .csv.",
        ),
    ]


def test_progress_reports_every_file(store: ProjectStore, digits_dir: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int | None, str]] = []
    extra = save(noise(), tmp_path / "extra.png")
    ingest(store, [digits_dir, extra], progress=lambda done, total, source: calls.append((done, total, source)))

    assert calls[:1] == [(0, None, str(digits_dir))]
    counted = [call for call in calls if call[1] is not None]
    assert [done for done, _, _ in counted] == list(range(1, 102))
    assert {total for _, total, _ in counted} == {101}
    assert counted[-1] == (101, 101, str(extra))


# ------------------------------------------------------------------------------------------------ zip archives
def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
    return archive


def test_zip_of_a_class_folder_layout(store: ProjectStore, tmp_path: Path, digits_dir: Path) -> None:
    archive = zip_folder(digits_dir, tmp_path / "digits.zip", prefix="digits/")  # one wrapping top folder
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("__MACOSX/digits/0/._0.png", b"resource fork")
        zf.writestr("digits/.DS_Store", b"junk")
        zf.writestr("digits/0/", b"")  # directory entry

    report = ingest(store, [archive], labels_from_folders=True)

    assert report.summary() == "Imported 100 images, 0 duplicates, 0 rejected."
    assert store.labels() == [str(d) for d in range(10)]
    rows = store.images()
    assert rows[0].source == f"{archive}:digits/0/0.png"
    for row in rows:
        entry = row.source.split(":", 1)[1]
        original = digits_dir / entry.removeprefix("digits/")
        assert (store.root / row.path).read_bytes() == original.read_bytes()
        assert store.label_of(row.id) == original.parent.name


def test_zip_without_wrapping_folder_and_top_level_images(store: ProjectStore, tmp_path: Path) -> None:
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for seed, name in enumerate(["cat/a.png", "dog/b.png", "top.png"]):
            save(noise(seed=seed), tmp_path / "src" / name)
            zf.write(tmp_path / "src" / name, name)
    report = ingest(store, [archive], labels_from_folders=True)
    labels = {store.get_image(i).original_name: store.label_of(i) for i in report.imported}
    assert labels == {"a.png": "cat", "b.png": "dog", "top.png": None}


def test_zip_slip_entries_are_rejected_and_nothing_is_written_outside(store: ProjectStore, tmp_path: Path) -> None:
    good = save(noise(seed=1), tmp_path / "src" / "good.png").read_bytes()
    evil = save(noise(seed=2), tmp_path / "src" / "evil.png").read_bytes()
    archive = tmp_path / "upload" / "evil.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("good.png", good)
        zf.writestr("../evil.png", evil)
        zf.writestr("/abs.png", evil + b"x")
        zf.writestr("imgs/../../up.png", evil + b"y")
        zf.writestr("C:/windows.png", evil + b"z")
        zf.writestr("fake.png", b"I am text")
        zf.writestr("nested.zip", b"PK")
    before = files_outside(tmp_path, store.root)

    report = ingest(store, [archive])

    slip = (
        "The zip entry has an absolute path or goes up with '..', which could write outside the project; "
        "it was not extracted. Re-create the zip from a normal folder."
    )
    assert report.summary() == "Imported 1 image, 0 duplicates, 6 rejected."
    by_source = {r.source: r.reason for r in report.rejected}
    for entry in ("../evil.png", "/abs.png", "imgs/../../up.png", "C:/windows.png"):
        assert by_source[f"{archive}:{entry}"] == slip
    assert NOT_IMAGE in by_source[f"{archive}:fake.png"]
    assert "inside a zip archive are not opened" in by_source[f"{archive}:nested.zip"]
    assert files_outside(tmp_path, store.root) == before
    assert [path.read_bytes() for path in stored_files(store)] == [good]


def test_file_that_is_not_a_zip(store: ProjectStore, tmp_path: Path) -> None:
    fake = tmp_path / "photos.zip"
    fake.write_text("this is not an archive")
    save(noise((200, 200)), tmp_path / "src" / "big.png")
    cut = truncated(zip_folder(tmp_path / "src", tmp_path / "whole.zip"), tmp_path / "cut.zip")

    report = ingest(store, [fake, cut])

    message = "The file is not a valid zip archive or it is damaged; create the zip again and import it."
    assert report.rejected == [Rejection(str(fake), message), Rejection(str(cut), message)]
    assert store.count_images() == 0


def test_empty_zip_is_reported(store: ProjectStore, tmp_path: Path) -> None:
    archive = tmp_path / "empty.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("__MACOSX/.x", b"")
    report = ingest(store, [archive])
    assert [r.reason for r in report.rejected] == [
        "The zip archive contains no image files; check that you picked the right archive."
    ]


# ------------------------------------------------------------------------------------------------ CSV lists
@pytest.mark.parametrize(
    ("path_header", "label_header"),
    [
        ("path", "label"),
        ("Image", "Class"),
        ("FILENAME", "category"),
        ("file", "Target"),
        ("filepath", "LABEL"),
        ("image_path", "class"),
    ],
)
def test_csv_header_names_are_accepted_case_insensitively(
    store: ProjectStore, digits_dir: Path, path_header: str, label_header: str
) -> None:
    csv = digits_dir / "list.csv"
    csv.write_text(f"{path_header},{label_header},notes\n3/0.png,three,x\n4/1.png,four,y\n")
    report = ingest(store, [csv])
    assert report.summary() == "Imported 2 images, 0 duplicates, 0 rejected."
    assert sorted(store.current_labels().values()) == ["four", "three"]


def test_csv_labels_stay_strings_and_relative_paths_use_the_csv_folder(
    store: ProjectStore, tmp_path: Path, digits_dir: Path
) -> None:
    lists = digits_dir / "lists"
    lists.mkdir()
    csv = lists / "labels.csv"
    csv.write_text(
        "image,label\n"
        "../1/0.png,1\n"
        "../2/0.png,2\n"
        "../1/1.png, 10 \n"  # spaces around a label are not part of it
        "../0/0.png,01\n"
        "../0/1.png,\n"  # empty label: imported unlabeled
        "../3/0.png,NA\n"  # no NA conversion
    )
    assert ingest(store, [csv]).summary() == "Imported 0 images, 0 duplicates, 6 rejected."  # ../ leaves lists/
    assert store.labels() == []

    report = ingest(store, [csv], allowed_roots=[digits_dir])

    assert report.summary() == "Imported 6 images, 0 duplicates, 0 rejected."
    assert store.labels() == ["1", "2", "10", "01", "NA"]
    assert report.labeled == 5
    by_source = {Path(row.source.split("(")[1].rstrip(")")).as_posix(): row for row in store.images()}
    assert store.images()[0].source == f"{csv} row 2 (../1/0.png)"
    assert store.label_of(by_source["../1/1.png"].id) == "10"
    assert store.label_of(by_source["../0/1.png"].id) is None
    assert (store.root / by_source["../2/0.png"].path).read_bytes() == (digits_dir / "2" / "0.png").read_bytes()


def test_csv_paths_outside_the_allowed_roots_are_rejected(store: ProjectStore, tmp_path: Path) -> None:
    outside = save(noise(seed=1), tmp_path / "private" / "secret.png")
    inside = save(noise(seed=2), tmp_path / "shared" / "data" / "ok.png")
    csv = tmp_path / "shared" / "data" / "list.csv"
    csv.write_text(f"path\nok.png\n../../private/secret.png\n{outside}\n")

    report = ingest(store, [csv])
    assert [row.original_name for row in store.images()] == [inside.name]
    assert [(r.source, r.reason[: len(OUTSIDE)]) for r in report.rejected] == [
        (f"{csv} row 3 (../../private/secret.png)", OUTSIDE),
        (f"{csv} row 4 ({outside})", OUTSIDE),
    ]

    allowed = ingest(store, [csv], allowed_roots=[tmp_path / "private"])
    assert allowed.summary() == "Imported 1 image, 2 duplicates, 0 rejected."


def test_csv_rows_with_problems_are_rejected_one_by_one(store: ProjectStore, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    save(noise(seed=1), folder / "good.png")
    truncated(save(noise((80, 60), seed=2), tmp_path / "whole.png"), folder / "cut.png")
    (folder / "sub").mkdir()
    (folder / "notes.txt").write_text("x")
    csv = folder / "list.csv"
    csv.write_text("path,label\ngood.png,a\n,b\nmissing.png,c\ncut.png,d\nsub,e\nnotes.txt,f\nhttps://x.org/a.png,g\n")

    report = ingest(store, [csv])

    assert report.summary() == "Imported 1 image, 0 duplicates, 6 rejected."
    assert store.labels() == ["a"]  # labels of rejected rows are not added
    assert [(r.source, r.reason) for r in report.rejected] == [
        (f"{csv} row 3", "The row has no image path; fill in the path or delete the row."),
        (f"{csv} row 4 (missing.png)", "The file does not exist; check the path and try again."),
        (
            f"{csv} row 6 (sub)",
            "The path is a folder, not an image file; list image files in the CSV, or import the folder itself.",
        ),
        (
            f"{csv} row 7 (notes.txt)",
            "'.txt' is not a supported image type; the app imports "
            ".bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp files.",
        ),
        (
            f"{csv} row 8 (https://x.org/a.png)",
            "Web addresses are not downloaded; download the images and list their local paths.",
        ),
        (f"{csv} row 5 (cut.png)", CORRUPT),  # found while importing, after the listing problems
    ]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "The CSV file is empty; add a header row with an image path column and one row per image."),
        (b"path,label\n", "The CSV file has a header but no rows; add one row per image."),
        (
            b"picture,kind\na.png,cat\n",
            "The CSV file has no image path column. Columns found: 'picture', 'kind'. Name the column with the "
            "image paths one of: path, image, filename, file, filepath, image_path, file_path, imagepath, file_name "
            "(the first row must be the header).",
        ),
        (
            "path,label\ncaf\u00e9.png,caf\u00e9\n".encode("latin-1"),
            "The CSV file is not UTF-8 text; save it as 'CSV UTF-8' and import it again.",
        ),
        (b'path,label\n"a.png,cat\n', None),  # unbalanced quote: a parse error
    ],
)
def test_unusable_csv_files_are_rejected_as_a_whole(
    store: ProjectStore, tmp_path: Path, content: bytes, reason: str | None
) -> None:
    csv = tmp_path / "list.csv"
    csv.write_bytes(content)
    report = ingest(store, [csv])
    assert len(report.rejected) == 1
    assert report.rejected[0].source == str(csv)
    if reason is None:
        assert report.rejected[0].reason.startswith("The CSV file could not be read as a table")
    else:
        assert report.rejected[0].reason == reason
    assert store.count_images() == 0
    assert store.labels() == []


def test_csv_with_bom_semicolons_and_non_ascii_names(store: ProjectStore, tmp_path: Path) -> None:
    save(noise(seed=1), tmp_path / "café.png")
    save(noise(seed=2), tmp_path / "b.png")
    csv = tmp_path / "list.csv"
    csv.write_bytes("\ufeffPath;Label\ncafé.png;gâteau\nb.png;1\n".encode())
    report = ingest(store, [csv])
    assert report.summary() == "Imported 2 images, 0 duplicates, 0 rejected."
    assert store.labels() == ["gâteau", "1"]
    assert store.images()[0].original_name == "café.png"


# ------------------------------------------------------------------------------------------------ streaming
def test_import_streams_instead_of_holding_images_in_memory(store: ProjectStore, tmp_path: Path) -> None:
    folder = tmp_path / "big"
    for seed in range(16):
        save(noise((512, 512), seed=seed), folder / f"{seed}.bmp")  # 768 kB each, 12 MB in all
    archive = zip_folder(folder, tmp_path / "big.zip", prefix="zipped/")
    total = sum(path.stat().st_size for path in folder.iterdir())
    assert total > 12_000_000

    tracemalloc.start()
    try:
        report = ingest(store, [folder, archive])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert report.summary() == "Imported 16 images, 16 duplicates, 0 rejected."
    assert peak < 6_000_000  # a few 1 MB chunks, never all the files


def test_no_temporary_files_are_left_behind(store: ProjectStore, tmp_path: Path, digits_dir: Path) -> None:
    archive = zip_folder(digits_dir, tmp_path / "d.zip")
    bad = tmp_path / "bad.png"
    bad.write_text("x")
    ingest(store, [archive, bad, digits_dir])
    leftovers = [p for p in (store.root / "images").rglob("*") if p.name.startswith(".") or p.suffix == ".part"]
    assert leftovers == []
    assert len(stored_files(store)) == 100


def test_store_is_reopened_with_everything(tmp_path: Path, digits_dir: Path) -> None:
    first = ProjectStore(tmp_path / "p")
    report = ingest(first, [digits_dir], labels_from_folders=True)
    first.close()
    again = ProjectStore(tmp_path / "p", create=False)
    try:
        assert again.image_ids() == report.imported
        assert len(again.current_labels()) == 100
        assert Image.open(again.image_path(report.imported[0])).size == (32, 32)
    finally:
        again.close()


def test_password_protected_zip_entry(store: ProjectStore, tmp_path: Path) -> None:
    archive = tmp_path / "locked.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("secret.png", save(noise(), tmp_path / "x.png").read_bytes())
    data = bytearray(archive.read_bytes())
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        data[data.index(signature) + flag_offset] |= 0x1  # "encrypted" flag
    archive.write_bytes(bytes(data))

    report = ingest(store, [archive])
    assert report.rejected == [
        Rejection(
            f"{archive}:secret.png",
            "The file is password-protected inside the zip; create the zip without a password.",
        )
    ]


@pytest.mark.slow
def test_ten_thousand_images_from_a_zip(store: ProjectStore, tmp_path: Path) -> None:
    archive = tmp_path / "many.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(10_000):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, format="PNG")
            zf.writestr(f"set/{i % 10}/{i}.png", buffer.getvalue())
    done: list[int] = []

    report = ingest(store, [archive], labels_from_folders=True, progress=lambda d, total, source: done.append(d))

    assert report.summary() == "Imported 10000 images, 0 duplicates, 0 rejected."
    assert store.count_images() == 10_000
    assert store.label_counts() == {str(d): 1000 for d in range(10)}
    assert done[-1] == 10_000
    assert len(done) >= 10_000  # progress after every image
    assert len(stored_files(store)) == 10_000


def test_zip_entry_safety_and_natural_order() -> None:
    assert not unsafe_entry("cats/a.png")
    assert not unsafe_entry("a..b.png")
    for name in ("../a.png", "/a.png", "\\a.png", "x/../../a.png", "x\\..\\a.png", "C:/a.png", "c:a.png"):
        assert unsafe_entry(name), name
    assert sorted(["10", "2", "1", "b", "A", "²"], key=natural_key) == ["1", "2", "10", "A", "b", "²"]
