"""probe_image and load_rgb on real files in every supported format, and on broken or hostile ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.core.errors import BadImageError
from app.core.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageInfo, load_rgb, probe_image
from tests.image_files import (
    BLUE,
    RED,
    WHITE,
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


def test_extensions_and_default_limit() -> None:
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"} == IMAGE_EXTENSIONS
    assert DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize(
    ("suffix", "fmt"),
    [
        (".jpg", "JPEG"),
        (".jpeg", "JPEG"),
        (".png", "PNG"),
        (".bmp", "BMP"),
        (".gif", "GIF"),
        (".webp", "WEBP"),
        (".tif", "TIFF"),
        (".tiff", "TIFF"),
    ],
)
def test_probe_reads_size_and_format_of_every_supported_type(tmp_path: Path, suffix: str, fmt: str) -> None:
    path = save(noise((30, 20)), tmp_path / f"image{suffix}")
    before = path.read_bytes()

    assert probe_image(path) == ImageInfo(width=30, height=20, format=fmt)
    rgb = load_rgb(path)
    assert (rgb.mode, rgb.size) == ("RGB", (30, 20))
    assert path.read_bytes() == before  # probing and loading never touch the file


def test_lossless_formats_keep_pixels(tmp_path: Path) -> None:
    image = noise((16, 12), seed=3)
    for suffix in (".png", ".bmp", ".tiff"):
        loaded = load_rgb(save(image, tmp_path / f"x{suffix}"))
        assert np.array_equal(np.asarray(loaded), np.asarray(image)), suffix


def test_digit_png_from_fixture(digit_pngs: list[Path]) -> None:
    assert len(digit_pngs) == 100
    assert probe_image(digit_pngs[0]) == ImageInfo(32, 32, "PNG")
    rgb = np.asarray(load_rgb(digit_pngs[0]))
    gray = np.asarray(Image.open(digit_pngs[0]))
    assert rgb.shape == (32, 32, 3)
    assert all(np.array_equal(rgb[..., channel], gray) for channel in range(3))


def test_exif_orientation_swaps_size_and_turns_pixels(tmp_path: Path) -> None:
    path = exif_rotated_jpeg(tmp_path / "rotated.jpg")
    with Image.open(path) as raw:
        assert raw.size == (40, 20)  # as stored

    assert probe_image(path) == ImageInfo(width=20, height=40, format="JPEG")
    rgb = load_rgb(path)
    assert rgb.size == (20, 40)
    top, bottom = np.asarray(rgb)[5, 10].astype(int), np.asarray(rgb)[35, 10].astype(int)
    assert np.abs(top - RED).max() < 20  # the stored left half is now on top
    assert np.abs(bottom - BLUE).max() < 20


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgb = load_rgb(rgba_png(tmp_path / "alpha.png"))
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == WHITE
    assert rgb.getpixel((7, 7)) == RED


def test_palette_with_transparency_becomes_rgb_on_white(tmp_path: Path) -> None:
    path = palette_png(tmp_path / "palette.png")
    with Image.open(path) as raw:
        assert raw.mode == "P"
        assert "transparency" in raw.info
    rgb = load_rgb(path)
    assert rgb.getpixel((0, 0)) == WHITE
    assert rgb.getpixel((7, 0)) == BLUE


def test_grayscale_and_16_bit_grayscale(tmp_path: Path) -> None:
    gray = save(Image.new("L", (4, 4), 77), tmp_path / "gray.png")
    assert load_rgb(gray).getpixel((0, 0)) == (77, 77, 77)

    deep = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(deep), tmp_path / "deep.png")
    assert probe_image(path) == ImageInfo(4, 1, "PNG")
    values = [load_rgb(path).getpixel((x, 0))[0] for x in range(4)]
    assert values == [0, 1, 128, 255]  # scaled, not clipped to white


def test_cmyk_jpeg_and_one_bit_png(tmp_path: Path) -> None:
    cmyk = save(Image.new("CMYK", (6, 6), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")
    red = np.asarray(load_rgb(cmyk))[0, 0].astype(int)
    assert red[0] > 200
    assert red[1] < 60
    bits = save(Image.new("1", (5, 5), 1), tmp_path / "bits.png")
    assert load_rgb(bits).getpixel((2, 2)) == WHITE


def test_gif_first_frame(tmp_path: Path) -> None:
    path = animated_gif(tmp_path / "anim.gif")
    with Image.open(path) as raw:
        assert raw.n_frames == 2
    assert probe_image(path) == ImageInfo(10, 10, "GIF")
    assert load_rgb(path).getpixel((5, 5)) == RED


@pytest.mark.parametrize(("suffix", "fmt"), [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP"), (".tif", "TIFF")])
def test_truncated_file_is_rejected(tmp_path: Path, suffix: str, fmt: str) -> None:
    whole = save(noise((80, 60)), tmp_path / f"whole{suffix}", format=fmt)
    half = truncated(whole, tmp_path / f"half{suffix}")

    with pytest.raises(BadImageError) as probe_error:
        probe_image(half)
    assert str(probe_error.value) == CORRUPT
    with pytest.raises(BadImageError, match="truncated or corrupt"):
        load_rgb(half)


def test_text_file_with_image_extension_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is a shopping list, not a picture\n")
    with pytest.raises(BadImageError, match="not an image the app can read"):
        probe_image(path)
    with pytest.raises(BadImageError, match="not an image the app can read"):
        load_rgb(path)


def test_other_image_formats_are_refused(tmp_path: Path) -> None:
    icon = tmp_path / "icon.png"
    Image.new("RGB", (16, 16), RED).save(icon, format="ICO")  # a real image, but not a supported type
    with pytest.raises(BadImageError, match="not an image the app can read"):
        probe_image(icon)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(BadImageError, match=r"The file is empty \(0 bytes\)"):
        probe_image(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="does not exist"):
        probe_image(tmp_path / "nope.png")
    with pytest.raises(BadImageError, match="missing"):
        load_rgb(tmp_path / "nope.png")


def test_decompression_bomb_is_refused_from_the_header(tmp_path: Path) -> None:
    # The pixel data is garbage: a decoder would call it corrupt, so "too large" proves the header check came first.
    path = bomb_png(tmp_path / "bomb.png", 3000, 2000, valid_pixels=False)
    with pytest.raises(BadImageError) as error:
        probe_image(path, max_pixels=1_000_000)
    assert str(error.value) == (
        "The image is too large (3,000 x 2,000 pixels, more than the limit of 1,000,000 pixels); "
        "resize it and import again."
    )


def test_huge_declared_size_is_refused_with_the_default_limit(tmp_path: Path) -> None:
    path = bomb_png(tmp_path / "bomb.png", 20_000, 20_000)  # 400 million pixels in about 50 kB
    assert path.stat().st_size < 100_000
    for limit in (DEFAULT_MAX_PIXELS, 10_000_000):
        with pytest.raises(BadImageError, match="too large"):
            probe_image(path, max_pixels=limit)


def test_image_at_the_limit_is_accepted(tmp_path: Path) -> None:
    path = bomb_png(tmp_path / "ok.png", 100, 100)
    assert probe_image(path, max_pixels=10_000) == ImageInfo(100, 100, "PNG")
    with pytest.raises(BadImageError, match="too large"):
        probe_image(path, max_pixels=9_999)
