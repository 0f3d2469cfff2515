"""Zip archives cannot unpack more than the import allows: overlapping entries, high ratios, declared and real sizes."""

from __future__ import annotations

import copy
import io
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from app.core import read_once
from app.core.archives import IngestLimits
from app.core.ingest import Rejection, ingest
from app.core.store import ProjectStore
from tests.image_files import WHITE, noise, save

MB = 1 << 20
IMAGE_BYTES = 512 * 512 * 3 + 54  # a 512 x 512 RGB BMP: noise does not compress, so its ratio stays near 1
OVERLAP = (
    "The zip archive's entries share or overlap their compressed data, a trick used by zip bombs; nothing was "
    "extracted. Re-create the zip from the original images."
)


@pytest.fixture
def store(tmp_path: Path):
    project = ProjectStore(tmp_path / "project")
    yield project
    project.close()


@pytest.fixture
def unpacked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the chunks every zip entry stream handed out: the bytes really inflated."""
    chunks: list[int] = []
    original = zipfile.ZipExtFile.read

    def read(self: zipfile.ZipExtFile, n: int = -1) -> bytes:
        data = original(self, n)
        chunks.append(len(data))
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", read)
    return chunks


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Size of every staging file the import wrote, measured before it is moved or deleted."""
    sizes: list[int] = []
    copy, write = read_once.copy_hashing, read_once.write_staged

    def copy_hashing(src: object, dest: Path, head: bytes, cap: int | None) -> tuple[str, int]:
        try:
            return copy(src, dest, head, cap)
        finally:
            sizes.append(dest.stat().st_size if dest.exists() else 0)

    def write_staged(data: bytes, dest: Path) -> None:
        try:
            write(data, dest)
        finally:
            sizes.append(dest.stat().st_size if dest.exists() else 0)

    monkeypatch.setattr(read_once, "copy_hashing", copy_hashing)
    monkeypatch.setattr(read_once, "write_staged", write_staged)
    return sizes


def bmp_bytes(tmp_path: Path, seed: int) -> bytes:
    return save(noise((512, 512), seed=seed), tmp_path / "src" / f"{seed}.bmp").read_bytes()


def white_bmp(tmp_path: Path) -> bytes:
    """256 x 256 plain white: it deflates about 800 times, yet it is small and a real image."""
    return save(Image.new("RGB", (256, 256), WHITE), tmp_path / "src" / "white.bmp").read_bytes()


def zip_of_images(path: Path, tmp_path: Path, seeds: range) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for seed in seeds:
            zf.writestr(f"imgs/{seed}.bmp", bmp_bytes(tmp_path, seed))
    return path


def stored_bytes(store: ProjectStore) -> int:
    return sum(path.stat().st_size for path in (store.root / "images").rglob("*") if path.is_file())


# ------------------------------------------------------------------------------------------------ before unpacking
def shared_kernel(archive: Path, data: bytes) -> None:
    """Fifield's full overlap: many central-directory entries point at one local header and its data."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("kernel.bmp", data)
        info = zf.getinfo("kernel.bmp")
        zf.filelist.extend(copy.copy(info) for _ in range(30))


def chained(archive: Path, data: bytes) -> None:
    """Quoted overlap: the first entry's compressed data runs over the local header of the next entry."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.bmp", data)
        zf.writestr("b.bmp", data[::-1])
        first, second = zf.filelist
        first.compress_size = first.file_size = second.header_offset + 100


@pytest.mark.parametrize("build", [shared_kernel, chained])
def test_overlapping_entries_are_refused_before_unpacking(
    store: ProjectStore, tmp_path: Path, unpacked: list[int], build: Callable[[Path, bytes], None]
) -> None:
    archive = tmp_path / "bomb.zip"
    build(archive, bmp_bytes(tmp_path, 0))

    report = ingest(store, [archive])

    assert report.rejected == [Rejection(str(archive), OVERLAP)]
    assert report.imported == [] and report.duplicates == []
    assert sum(unpacked) == 0


def test_entry_running_past_the_end_of_the_file_is_refused_before_unpacking(
    store: ProjectStore, tmp_path: Path, unpacked: list[int]
) -> None:
    archive = tmp_path / "cut.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.bmp", bmp_bytes(tmp_path, 0))
        zf.filelist[0].compress_size = zf.filelist[0].file_size = 50 * MB  # far beyond the 0.8 MB file

    report = ingest(store, [archive])

    assert report.rejected == [
        Rejection(
            str(archive),
            "The zip archive is damaged (an entry runs past the end of the file); create the zip again and import it.",
        )
    ]
    assert sum(unpacked) == 0


def test_entry_with_a_bomb_ratio_is_refused_and_the_rest_imports(
    store: ProjectStore, tmp_path: Path, unpacked: list[int]
) -> None:
    archive = tmp_path / "mixed.zip"
    good = bmp_bytes(tmp_path, 1)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.png", bytes(8 * MB))
        zf.writestr("good.bmp", good)
        zf.writestr("white.bmp", white_bmp(tmp_path))

    report = ingest(store, [archive])

    assert report.summary() == "Imported 2 images, 0 duplicates, 1 rejected."
    [rejection] = report.rejected
    assert rejection.source == f"{archive}:zeros.png"
    assert rejection.reason.startswith("The file inside the zip unpacks to ")
    assert "times its compressed size, more than the limit of 200" in rejection.reason
    assert "looks like a zip bomb" in rejection.reason
    assert "Re-create the zip from the original images, or set ALABEL_MAX_ZIP_RATIO" in rejection.reason
    assert sum(unpacked) < 2 * MB  # the zeros were never inflated


def test_raising_the_ratio_limit_lets_the_entry_be_unpacked(store: ProjectStore, tmp_path: Path) -> None:
    archive = tmp_path / "zeros.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.png", bytes(4 * MB))
    report = ingest(store, [archive], limits=IngestLimits(max_ratio=5000))
    [rejection] = report.rejected
    assert "not an image the app can read" in rejection.reason  # unpacked and probed, no longer refused unopened


def test_zip_declaring_more_than_the_cap_is_refused_unopened(
    store: ProjectStore, tmp_path: Path, unpacked: list[int]
) -> None:
    archive = zip_of_images(tmp_path / "five.zip", tmp_path, range(5))

    report = ingest(store, [archive], limits=IngestLimits(max_upload_bytes=2 * MB))

    assert report.rejected == [
        Rejection(
            str(archive),
            "The zip archive unpacks to 3.8 MB, more than the limit of 2.0 MB for one import; it was not opened. "
            "To import it, set ALABEL_MAX_UPLOAD_BYTES to allow more, or split it into smaller zip archives.",
        )
    ]
    assert store.count_images() == 0
    assert sum(unpacked) == 0


def test_the_cap_never_exceeds_the_free_disk_space(
    store: ProjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = zip_of_images(tmp_path / "five.zip", tmp_path, range(5))
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=3 * MB))

    report = ingest(store, [archive])

    [rejection] = report.rejected
    assert rejection.reason == (
        "The zip archive unpacks to 3.8 MB, more than the 3.0 MB of free disk space where the project is stored; "
        "it was not opened. To import it, free some disk space, or split it into smaller zip archives."
    )


def test_the_cap_is_read_from_the_environment(
    store: ProjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALABEL_MAX_UPLOAD_BYTES", "2M")
    monkeypatch.setenv("ALABEL_MAX_ZIP_RATIO", "50")
    assert IngestLimits.from_env() == IngestLimits(max_upload_bytes=2 * MB, max_ratio=50.0)
    archive = zip_of_images(tmp_path / "five.zip", tmp_path, range(5))
    [rejection] = ingest(store, [archive]).rejected
    assert "more than the limit of 2.0 MB for one import" in rejection.reason

    monkeypatch.setenv("ALABEL_MAX_UPLOAD_BYTES", "lots")
    with pytest.raises(ValueError, match="ALABEL_MAX_UPLOAD_BYTES is 'lots'; set it to a number of bytes"):
        IngestLimits.from_env()
    monkeypatch.delenv("ALABEL_MAX_UPLOAD_BYTES")
    monkeypatch.delenv("ALABEL_MAX_ZIP_RATIO")
    assert IngestLimits.from_env() == IngestLimits(max_upload_bytes=4 << 30, max_ratio=200.0)


# ------------------------------------------------------------------------------------------------ while unpacking
def stopped(cap: str) -> str:
    return (
        f"Unpacking stopped at the limit of {cap} for one import: this file and the zip entries after it were not "
        "imported. To import them, set ALABEL_MAX_UPLOAD_BYTES to allow more, or split them into smaller zip archives."
    )


def test_streaming_cap_stops_the_import_across_archives(
    store: ProjectStore, tmp_path: Path, unpacked: list[int], written: list[int]
) -> None:
    first = zip_of_images(tmp_path / "first.zip", tmp_path, range(3))
    second = zip_of_images(tmp_path / "second.zip", tmp_path, range(3, 6))
    loose = save(noise(seed=9), tmp_path / "loose.png")
    cap = int(3.5 * MB)  # each zip declares 2.3 MB (under the cap); together they inflate 4.5 MB

    report = ingest(store, [first, second, loose], limits=IngestLimits(max_upload_bytes=cap))

    assert report.summary() == "Imported 5 images, 0 duplicates, 2 rejected."
    assert report.rejected == [
        Rejection(f"{second}:imgs/4.bmp", stopped("3.5 MB")),
        Rejection(f"{second}:imgs/5.bmp", stopped("3.5 MB")),
    ]
    assert store.images()[-1].source == str(loose)  # image files are copied, not unpacked: they still import
    assert sum(unpacked) <= cap + 1  # at most one byte past the cap is inflated, to prove it is exceeded
    assert sum(written) <= cap
    assert stored_bytes(store) == 4 * IMAGE_BYTES + loose.stat().st_size


def test_headers_that_lie_cannot_inflate_past_the_cap(
    store: ProjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: list[int]
) -> None:
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for index in range(3):
            zf.writestr(f"{index}.png", save(noise(seed=index), tmp_path / f"{index}.png").read_bytes())
    served: list[int] = []

    def open_entry(self: zipfile.ZipFile, info: object, *args: object, **kwargs: object) -> io.BytesIO:
        served.append(1)
        return io.BytesIO(bytes(3 * MB))  # far more than the 9 kB each header declares

    monkeypatch.setattr(zipfile.ZipFile, "open", open_entry)

    report = ingest(store, [archive], limits=IngestLimits(max_upload_bytes=MB))

    assert report.rejected == [Rejection(f"{archive}:{index}.png", stopped("1.0 MB")) for index in range(3)]
    assert served == [1]  # the entries after the one that hit the cap are not even opened
    assert sum(written) <= MB
    assert store.count_images() == 0


def test_normal_zip_of_real_images_imports_under_the_limits(
    store: ProjectStore, tmp_path: Path, digits_dir: Path
) -> None:
    archive = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(digits_dir.rglob("*.png")):
            zf.write(path, "digits/" + path.relative_to(digits_dir).as_posix())
        zf.writestr("digits/big/photo.bmp", bmp_bytes(tmp_path, 7))
    declared = sum(info.file_size for info in zipfile.ZipFile(archive).infolist())

    report = ingest(store, [archive], labels_from_folders=True, limits=IngestLimits(max_upload_bytes=declared))

    assert report.summary() == "Imported 101 images, 0 duplicates, 0 rejected."
    assert store.label_counts() == {**{str(d): 10 for d in range(10)}, "big": 1}


# ------------------------------------------------------------------------------------------------ entry count
def tiny_entries(path: Path, count: int, *, zip64: bool = False) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for index in range(count):
            zf.writestr(f"{index}.png", b"x")
    if zip64:  # the zip64 end records that archives of over 65,535 entries carry
        data = bytearray(path.read_bytes())
        eocd = data.rindex(b"PK\x05\x06")
        entries, size, offset = count, *zipfile.struct.unpack("<LL", data[eocd + 12 : eocd + 20])
        record = zipfile.struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, size, offset)
        locator = zipfile.struct.pack("<4sLQL", b"PK\x06\x07", 0, eocd, 1)
        end = zipfile.struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
        path.write_bytes(bytes(data[:eocd]) + record + locator + end)
    return path


ENTRY_CAP = (
    "The zip archive holds more than 10 files, the most one zip archive may hold; it was not opened. "
    "Split it into smaller zip archives, or set ALABEL_MAX_ZIP_ENTRIES to allow more."
)


@pytest.mark.parametrize("zip64", [False, True])
def test_zip_with_more_entries_than_the_cap_is_refused_before_its_directory_is_read(
    store: ProjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zip64: bool
) -> None:
    under = tiny_entries(tmp_path / "ten.zip", 10, zip64=zip64)
    over = tiny_entries(tmp_path / "eleven.zip", 11, zip64=zip64)
    assert len(zipfile.ZipFile(under).infolist()) == 10 and len(zipfile.ZipFile(over).infolist()) == 11
    opened: list[Path] = []
    real_zipfile = zipfile.ZipFile

    def counting_zipfile(file: object, *args: object, **kwargs: object) -> zipfile.ZipFile:
        opened.append(Path(str(file)))
        return real_zipfile(file, *args, **kwargs)

    monkeypatch.setattr(zipfile, "ZipFile", counting_zipfile)

    report = ingest(store, [over, under], limits=IngestLimits(max_zip_entries=10))

    assert report.rejected[0] == Rejection(str(over), ENTRY_CAP)
    assert len(report.rejected) == 11  # the ten tiny entries of the archive under the cap are planned, not images
    assert over not in opened and under in opened


def test_a_lying_entry_count_does_not_get_past_the_cap(store: ProjectStore, tmp_path: Path) -> None:
    archive = tiny_entries(tmp_path / "liar.zip", 50)
    data = bytearray(archive.read_bytes())
    eocd = data.rindex(b"PK\x05\x06")
    data[eocd + 8 : eocd + 12] = zipfile.struct.pack("<HH", 3, 3)  # says 3 entries; the directory holds 50
    archive.write_bytes(bytes(data))
    assert len(zipfile.ZipFile(archive).infolist()) == 50  # Python's zipfile reads them all anyway

    report = ingest(store, [archive], limits=IngestLimits(max_zip_entries=10))

    assert report.rejected == [Rejection(str(archive), ENTRY_CAP)]


def test_the_entry_cap_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert IngestLimits.from_env({}).max_zip_entries == 100_000
    assert IngestLimits.from_env({"ALABEL_MAX_ZIP_ENTRIES": "250000"}).max_zip_entries == 250_000
    with pytest.raises(ValueError, match="ALABEL_MAX_ZIP_ENTRIES is 'many'; set it to a whole number"):
        IngestLimits.from_env({"ALABEL_MAX_ZIP_ENTRIES": "many"})


# ------------------------------------------------------------------------------------------------ bzip2 and lzma
@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_small_bzip2_and_lzma_entries_get_the_ratio_check_too(
    store: ProjectStore, tmp_path: Path, unpacked: list[int], method: int
) -> None:
    archive = tmp_path / "small-bombs.zip"
    good = bmp_bytes(tmp_path, 3)
    with zipfile.ZipFile(archive, "w", method) as zf:
        for index in range(20):
            zf.writestr(f"zeros{index}.png", bytes(MB - 1))  # just under 1 MB each: thousands of times smaller packed
        zf.writestr("good.bmp", good)
    assert archive.stat().st_size - len(good) < 20 * MB / 1000

    report = ingest(store, [archive])

    assert report.summary() == "Imported 1 image, 0 duplicates, 20 rejected."
    for rejection in report.rejected:
        assert rejection.reason.startswith("The file inside the zip unpacks to ")
        assert "more than the limit of 200" in rejection.reason
    assert sum(unpacked) < 2 * MB  # only the good image was inflated
