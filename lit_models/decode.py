"""Decoding image files straight into uint8 tensors, for the embedding pipeline.

torchvision's libpng / libjpeg-turbo bindings give the same pixels as PIL (same libraries, same defaults) at a
fraction of PIL's per-file Python cost, which dominates for small images. `decode_uint8` uses them only where the
result is certainly what `app.core.images.load_rgb` gives, and `load_rgb` for everything else.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

import torch

from app.core.images import load_rgb

# Fast only for 8-bit grayscale or RGB PNGs without transparency, animation or metadata PIL would act on, and 1- or
# 3-channel JPEGs whose only EXIF orientation is read here; anything this code does not fully understand goes
# through `load_rgb`.
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# Chunks that change nothing in load_rgb's result (PIL ignores gamma, chromaticities, ICC profiles, DPI, ...).
_PNG_PLAIN_CHUNKS = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"pHYs"})
_PNG_PLAIN_CHUNKS |= {b"sBIT", b"tIME", b"bKGD"}
_TINY_PNG = bytes.fromhex(  # a 1x1 gray PNG: checks that the operators work as called here
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a49444154789c63600700000900082023c38c0000000049454e44ae426082"
)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)


def decode_uint8(path: str) -> Any:
    """Decode an image file for a model: a uint8 tensor (3, H, W) on the fast path, else ``load_rgb``'s PIL image.

    Both carry the same pixels: EXIF orientation applied, first frame, 8-bit RGB (see ``app.core.images``).

    Raises:
        BadImageError: the file cannot be decoded (from ``load_rgb``).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
        image = _decode_plain(data)
    except Exception:  # unreadable or unusual here: PIL decides, and raises the user-facing error
        image = None
    return load_rgb(path) if image is None else image


def _decode_plain(data: bytes) -> torch.Tensor | None:
    ops = _image_ops()
    if ops is None:
        return None
    decode_png, decode_jpeg, rgb = ops
    if data.startswith(_PNG_SIGNATURE):
        if not _plain_png(data):
            return None
        return decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), rgb, False)
    if data.startswith(b"\xff\xd8\xff"):
        orientation = _plain_jpeg_orientation(data)
        if orientation is None:
            return None
        image = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), rgb, False)
        return _oriented(image, orientation)
    return None


@functools.cache
def _image_ops() -> tuple[Any, Any, int] | None:
    """torchvision's PNG and JPEG decoding operators and its RGB mode, or None when they are missing.

    The operators are called directly: the public ``torchvision.io.decode_*`` wrappers issue a deprecation warning
    on every call (the decoders move to torchcodec), which costs more than decoding a small PNG. Without them (a
    torchvision built without image support, or one that dropped them) every file goes through PIL.
    """
    try:
        from torchvision.io import ImageReadMode

        ops = (torch.ops.image.decode_png, torch.ops.image.decode_jpeg, int(ImageReadMode.RGB.value))
        probe = torch.frombuffer(bytearray(_TINY_PNG), dtype=torch.uint8)
        if tuple(ops[0](probe, ops[2], False).shape) != (3, 1, 1):
            return None
    except Exception:
        return None
    return ops


def _plain_png(data: bytes) -> bool:
    """Whether a PNG is 8-bit gray or RGB, not interlaced, complete, and has only chunks that PIL ignores."""
    if not data.endswith(_PNG_IEND) or data[12:16] != b"IHDR":
        return False
    bit_depth, color_type, interlace = data[24], data[25], data[28]
    if bit_depth != 8 or color_type not in (0, 2) or interlace != 0:
        return False
    offset = 8
    while offset < len(data):  # every chunk, including those after the image data (PIL reads them too)
        length, kind = struct.unpack_from(">I4s", data, offset)
        if kind not in _PNG_PLAIN_CHUNKS:
            return False
        offset += 12 + length
    return offset == len(data)


def _plain_jpeg_orientation(data: bytes) -> int | None:
    """EXIF orientation (1-8) of a complete 1- or 3-channel JPEG, or None when PIL should decode it.

    None for CMYK / YCCK (4 channels), a missing end marker, XMP or other APP1 metadata (PIL may take the
    orientation from XMP), several or unreadable EXIF blocks: anything where PIL's answer might differ.
    """
    if not data.endswith(b"\xff\xd9"):
        return None
    orientation, components, offset = 1, 0, 2
    seen_exif = False
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker == 0xDA:  # start of scan: the header is over
            break
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            offset += 2
            continue
        (length,) = struct.unpack_from(">H", data, offset + 2)
        segment = data[offset + 4 : offset + 2 + length]
        if marker in _JPEG_SOF:
            components = segment[5]
        elif marker == 0xE1:
            if seen_exif or not segment.startswith(b"Exif\x00\x00"):
                return None
            seen_exif = True
            found = _exif_orientation(segment[6:])
            if found is None:
                return None
            orientation = found
        offset += 2 + length
    return orientation if components in (1, 3) else None


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag (0x0112) of EXIF's first IFD: 1 when absent, None when the block is unreadable."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return None
    magic, ifd = struct.unpack_from(order + "HI", tiff, 2)
    if magic != 42:
        return None
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for i in range(count):
        tag, kind, n, value = struct.unpack_from(order + "HHI4s", tiff, ifd + 2 + 12 * i)
        if tag == 0x0112:
            if kind != 3 or n != 1:  # SHORT, one value
                return None
            (orientation,) = struct.unpack_from(order + "H", value)
            return orientation if 1 <= orientation <= 8 else 1  # PIL ignores values outside 2-8 as well
    return 1


def _oriented(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """(C, H, W) turned upright for an EXIF orientation, as PIL's ``ImageOps.exif_transpose`` does."""
    if orientation == 2:
        image = image.flip(-1)
    elif orientation == 3:
        image = image.flip(-2, -1)
    elif orientation == 4:
        image = image.flip(-2)
    elif orientation == 5:
        image = image.transpose(-2, -1)
    elif orientation == 6:
        image = image.transpose(-2, -1).flip(-1)
    elif orientation == 7:
        image = image.transpose(-2, -1).flip(-2, -1)
    elif orientation == 8:
        image = image.transpose(-2, -1).flip(-2)
    return image.contiguous()
