"""Reading image files safely: probe (validate + size) and decode to RGB. PIL only.

`probe_image` is the gate every imported file passes: it refuses files that are not images, that are truncated or
corrupt, or that declare more pixels than allowed (checked from the header, before any pixel is decoded). It then
decodes the first frame completely, so a file that passes can later be read by `load_rgb`. `probe_bytes` does the
same on a file's bytes already in memory (an import reads each file once).

Truncated files are only detected while `PIL.ImageFile.LOAD_TRUNCATED_IMAGES` is False (Pillow's default); this
module never changes that global.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.core.errors import BadImageError

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default limit (about 9,500 x 9,500)

# Decoders PIL may use. Anything else (ICO, PSD, EPS, ...) is refused even when it carries an image extension.
_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")  # JPEG also yields multi-picture (MPO) files
# Pixel modes that convert cleanly to RGB.
_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F"}
    | {"I;16", "I;16L", "I;16B", "I;16N"}
)
_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the image by 90 degrees

NOT_AN_IMAGE = (
    "The file is not an image the app can read (JPEG, PNG, BMP, GIF, WebP or TIFF); "
    "it may be another kind of file with an image extension."
)
CORRUPT = "The file is truncated or corrupt; re-export it and import again."
EMPTY_FILE = "The file is empty (0 bytes); re-export it and import again."
UNSUPPORTED_MODE = "The image uses a colour format the app cannot read ({mode}); save it as an 8-bit RGB image."
TOO_MANY_PIXELS = (
    "The image is too large ({width:,} x {height:,} pixels, more than the limit of {limit:,} pixels); "
    "resize it and import again."
)
TOO_MANY_PIXELS_UNKNOWN = "The image is too large (it declares more pixels than the limit); resize it and import again."


@dataclass(frozen=True)
class ImageInfo:
    """What a probe found.

    Attributes:
        width: width in pixels as displayed, i.e. after EXIF orientation.
        height: height in pixels as displayed, i.e. after EXIF orientation.
        format: PIL format name, e.g. "PNG" or "JPEG".
    """

    width: int
    height: int
    format: str


def probe_image(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Check that a file is a complete, supported image of acceptable size.

    The pixel count is checked from the header before decoding; then the first frame is decoded fully, so
    truncated and corrupt files are refused.

    Args:
        path: file to check; it is only read.
        max_pixels: largest accepted width x height. Pillow's own guard still refuses anything above twice
            `PIL.Image.MAX_IMAGE_PIXELS` (and warns above it; warning filters are not touched, they are not
            thread-safe).

    Returns:
        The displayed size (after EXIF orientation) and the format.

    Raises:
        BadImageError: the file is not usable; its message says why, for the person importing it.
    """
    return _probe(Path(path), max_pixels)


def probe_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """`probe_image` on a file's bytes already in memory (the same checks, the same messages)."""
    return _probe(io.BytesIO(data), max_pixels)


def _probe(source: Path | io.BytesIO, max_pixels: int) -> ImageInfo:
    try:
        empty = source.stat().st_size == 0 if isinstance(source, Path) else source.getbuffer().nbytes == 0
        if empty:
            raise BadImageError(EMPTY_FILE)
        with Image.open(source, formats=_FORMATS) as im:  # reads the header only
            width, height = im.size
            if width * height > max_pixels:
                raise BadImageError(TOO_MANY_PIXELS.format(width=width, height=height, limit=max_pixels))
            if im.mode not in _MODES:
                raise BadImageError(UNSUPPORTED_MODE.format(mode=im.mode))
            im.load()  # decodes the first frame completely
            fmt = im.format or "unknown"
            if _orientation(im) in _SWAPS_AXES:
                width, height = height, width
    except BadImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImageError(TOO_MANY_PIXELS_UNKNOWN) from exc
    except UnidentifiedImageError as exc:
        raise BadImageError(NOT_AN_IMAGE) from exc
    except FileNotFoundError as exc:
        raise BadImageError("The file does not exist; check the path and try again.") from exc
    except PermissionError as exc:
        raise BadImageError("The file could not be opened (permission denied); check who may read it.") from exc
    except Exception as exc:
        # PIL's decoders signal damage with OSError, SyntaxError, EOFError, ValueError, struct.error, ...
        raise BadImageError(CORRUPT) from exc
    return ImageInfo(width=width, height=height, format=fmt)


def load_rgb(path: str | Path) -> Image.Image:
    """Decode an image for display or a model: EXIF orientation applied, first frame, 8-bit RGB.

    Transparent pixels (RGBA, LA, palette or grayscale with a transparent colour) are composited on white;
    16-bit and float grayscale are scaled to 8 bits.

    Args:
        path: image file (usually one that passed `probe_image`).

    Returns:
        A fully loaded RGB image, independent of the file.

    Raises:
        BadImageError: the file cannot be decoded.
    """
    try:
        with Image.open(path, formats=_FORMATS) as im:
            im.load()  # the first frame
            rgb = _to_rgb(_exif_transposed(im))
    except BadImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImageError(TOO_MANY_PIXELS_UNKNOWN) from exc
    except UnidentifiedImageError as exc:
        raise BadImageError(NOT_AN_IMAGE) from exc
    except FileNotFoundError as exc:
        raise BadImageError("The image file is missing; import it again.") from exc
    except Exception as exc:  # every other decoder failure means the same thing to the user
        raise BadImageError(CORRUPT) from exc
    return rgb


def _orientation(im: Image.Image) -> int:
    """EXIF orientation (1-8) or 1 when absent or unreadable."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
        return int(value)
    except Exception:  # broken EXIF must not make a good image unusable
        return 1


def _exif_transposed(im: Image.Image) -> Image.Image:
    """The image turned upright according to its EXIF orientation (the input itself if none applies)."""
    if _orientation(im) not in range(2, 9):
        return im
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # broken EXIF: show the pixels as stored
        return im


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any supported mode to 8-bit RGB; alpha is composited on white."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        im = _gray_to_8bit(im)
        mode = "L"
    has_alpha = mode in ("RGBA", "LA", "La", "PA", "RGBa") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return im.copy()
    if mode not in _MODES:
        raise BadImageError(UNSUPPORTED_MODE.format(mode=mode))
    return im.convert("RGB")


def _gray_to_8bit(im: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer or float grayscale to an 8-bit "L" image (PIL itself would clip)."""
    arr = np.asarray(im)
    if im.mode.startswith("I;16"):
        out = (arr.astype(np.uint32) >> 8).astype(np.uint8)
    elif im.mode == "F":
        arr = np.nan_to_num(arr.astype(np.float64))
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
        out = np.clip(arr * scale, 0, 255).round().astype(np.uint8)
    else:  # "I": 32-bit signed
        arr = arr.astype(np.int64)
        peak = int(arr.max()) if arr.size else 0
        if peak <= 255:
            out = np.clip(arr, 0, 255).astype(np.uint8)
        elif peak <= 65535:
            out = (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
        else:
            out = np.clip(arr * 255 // peak, 0, 255).astype(np.uint8)
    return Image.fromarray(out)  # a 2-D uint8 array becomes mode "L"
