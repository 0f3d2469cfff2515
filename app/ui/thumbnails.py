"""Small copies of project images for the review grid, made once per image and size and kept in the project.

A thumbnail lives in ``<project>/thumbnails/<size>/`` under a name the server makes (a hash of the image's place
in the project, its size in bytes and its modification time), never one a client chose, and outside ``images/``,
so no address names it: the image route reaches it only through the original it was made from (see
`app.ui.image_route`). Project images never change, so a thumbnail, once written, is good for as long as its
original is; a browser may keep it a year.

Small originals (up to `SMALL_BYTES`) are served as they are: a thumbnail would save little and blur pixel art.
Either way what is sent is small, so the route reads it at once (`read_small`) instead of streaming a file.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
from pathlib import Path

from PIL import Image, ImageOps

from app.core.atomic import temp_sibling

SIZE = 256  # longest side in pixels: a grid tile is about 160 px wide
SMALL_BYTES = 48 * 1024
INLINE_BYTES = 2048  # an image this small goes in the page itself (`inline`): no request for it at all
FOLDER = "thumbnails"
CACHE_CONTROL = "private, max-age=31536000, immutable"


def ready(original: Path, images: Path, size: int = SIZE) -> Path | None:
    """The file to send for `original` (a file under the project's `images` folder) at `size` when it needs no
    work: the original itself when it is small already, or its thumbnail made earlier; None when one must be made
    (`thumbnail`)."""
    if original.stat().st_size <= SMALL_BYTES:
        return original
    target = _place(original, images, size)
    return target if target.is_file() and target.stat().st_size else None  # (empty: a write cut short by a crash)


def _place(original: Path, images: Path, size: int) -> Path:
    stat = original.stat()
    place = original.relative_to(images).as_posix()
    key = hashlib.sha256(f"{place}\0{stat.st_size}\0{stat.st_mtime_ns}\0{size}".encode()).hexdigest()[:32]
    return images.parent / FOLDER / str(size) / f"{key}.webp"


def thumbnail(original: Path, images: Path, size: int = SIZE) -> Path:
    """`ready`, making the thumbnail now if there is none yet (a fraction of a second for a big photo)."""
    done = ready(original, images, size)
    if done is not None:
        return done
    target = _place(original, images, size)
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(original) as img:
        img.draft("RGB", (size, size))  # JPEG: decode at a fraction of the size, much faster
        small = ImageOps.exif_transpose(img)
        small.thumbnail((size, size), Image.Resampling.LANCZOS)
        if small.mode not in ("RGB", "RGBA", "L", "LA"):
            small = small.convert("RGBA" if "transparency" in small.info or small.mode in ("P", "PA") else "RGB")
        tmp = temp_sibling(target)  # a cache: replaced whole, not synced to disk
        try:
            small.save(tmp, format="WEBP", quality=82, method=2)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def read_small(path: Path, limit: int = 4 * SMALL_BYTES) -> bytes | None:
    """The bytes of a small file (a thumbnail, a small original), or None when it is bigger than `limit`."""
    with path.open("rb") as f:
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def inline(path: str | Path) -> str | None:
    """A ``data:`` address holding the image at `path` when it is at most `INLINE_BYTES` (a 64-pixel digit is
    about 500 bytes), else None. A page of 48 such tiles then needs no image request: over HTTP/1.1 a browser
    asks at most 6 at a time, and each request costs far more than its bytes."""
    try:
        if os.stat(path).st_size > INLINE_BYTES:
            return None
        data = Path(path).read_bytes()
    except OSError:
        return None
    kind = mimetypes.guess_type(str(path))[0]
    if len(data) > INLINE_BYTES or kind is None or not kind.startswith("image/") or kind == "image/svg+xml":
        return None
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"
