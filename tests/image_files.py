"""Writers for real and deliberately broken image files used by the image and ingest tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def noise(size: tuple[int, int] = (64, 48), seed: int = 0, mode: str = "RGB") -> Image.Image:
    """Random pixels (they do not compress, so cutting the file in half really loses pixel data)."""
    width, height = size
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels)


def save(image: Image.Image, path: Path, **params) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **params)
    return path


def truncated(source: Path, dest: Path) -> Path:
    """A copy of `source` cut to half its bytes."""
    data = source.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, width: int, height: int, *, valid_pixels: bool = True) -> Path:
    """A 1-bit PNG that declares width x height pixels yet is only a few kilobytes on disk.

    With `valid_pixels` the compressed data really decodes to that many (black) pixels; without it the pixel data
    is garbage, so only a check of the header (before decoding) can give a "too large" answer.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grayscale
    if valid_pixels:
        compressor, row, parts = zlib.compressobj(9), b"\x00" * (1 + (width + 7) // 8), []
        parts += [compressor.compress(row) for _ in range(height)]
        data = b"".join(parts) + compressor.flush()
    else:
        data = b"not zlib data at all"
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
    path.write_bytes(png)
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    """A JPEG stored 40 wide x 20 high, left half red, right half blue, with EXIF orientation 6 (turn 90 deg
    clockwise): displayed it is 20 wide x 40 high with red on top."""
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return save(image, path, format="JPEG", quality=95, exif=exif.tobytes())


def rgba_png(path: Path) -> Path:
    """8x8 RGBA: left half fully transparent, right half opaque red."""
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (4, 0, 8, 8))
    return save(image, path)


def palette_png(path: Path) -> Path:
    """8x8 palette (P) image: left half is palette index 0 (transparent), right half index 1 (blue)."""
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, *BLUE] + [0] * (256 * 3 - 6))
    image.paste(1, (4, 0, 8, 8))
    return save(image, path, transparency=0)


def animated_gif(path: Path) -> Path:
    """Two 10x10 frames: red, then blue."""
    frames = [Image.new("RGB", (10, 10), RED), Image.new("RGB", (10, 10), BLUE)]
    return save(frames[0], path, save_all=True, append_images=frames[1:], duration=100, loop=0)
