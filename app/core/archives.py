"""Limits on what zip archives may unpack to: the defence against zip bombs.

A zip bomb is a small archive that inflates to far more than the disk holds. Four checks bound what one import can
unpack:

    * Before the archive is opened, its central directory records are counted straight from the file (the end
      record locates them); more than `IngestLimits.max_zip_entries` refuse it, since `zipfile.ZipFile` builds an
      object per record (100,000 tiny entries fit in 9 MB and take seconds and 100 MB to read).
    * Before anything is inflated, the central directory is checked. Entries whose compressed data overlaps another
      entry's (David Fifield's "better zip bomb" points many entries at the same data) refuse the whole archive;
      an entry that inflates more than `IngestLimits.max_ratio` times its compressed size is refused (images
      barely compress); an archive whose declared sizes add up to more than the import may unpack is refused.
      With no overlap every compressed byte counts once, so an archive can declare at most ``max_ratio`` times
      its own size (stored or deflated entries under 1 MB: deflate's own limit, about 1,000 times; bzip2 and
      lzma reach thousands of times, so their entries get the ratio check at every size).
    * While staging, `UnpackBudget` counts the bytes really inflated (headers may lie) across every archive of the
      import and stops at the cap: the entry being extracted and all the zip entries after it are refused.
    * The cap is `IngestLimits.max_upload_bytes`, and never more than the free disk space of the project at the
      start of the import.
"""

from __future__ import annotations

import math
import os
import re
import struct
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import BinaryIO

from app.core.errors import BadImageError, IngestError

MAX_FILE_BYTES = 1 << 30  # 1 GiB: no sensible image file is larger
ENV_MAX_UPLOAD = "ALABEL_MAX_UPLOAD_BYTES"
ENV_MAX_RATIO = "ALABEL_MAX_ZIP_RATIO"
ENV_MAX_ENTRIES = "ALABEL_MAX_ZIP_ENTRIES"
ENV_MAX_IMAGES = "ALABEL_MAX_UPLOAD_IMAGES"
ENV_MAX_POOL = "ALABEL_MAX_POOL"
DEFAULT_MAX_UPLOAD_BYTES = 4 << 30
DEFAULT_MAX_RATIO = 200.0
DEFAULT_MAX_ENTRIES = 100_000
# Stored and deflated entries up to this size skip the ratio check: plain-colour BMP or TIFF files deflate up to
# 1000 times, and what small entries can inflate is bounded anyway (no overlap, deflate's own limit, the total cap).
# Other methods (bzip2 and lzma reach thousands of times) are checked at every size.
RATIO_FLOOR_BYTES = 1 << 20
_RATIO_FLOOR_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_CENTRAL_HEADER = struct.Struct("<4s24x3H12x")  # a central directory record's fixed part: name, extra, comment sizes
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_ZIP64_END_BYTES = 56 + 20  # the zip64 end record and its locator, between the central directory and the end record
READ_BYTES = 1 << 20  # what one read returns at most when the caller does not say
LOCAL_HEADER_BYTES = 30  # fixed part of a zip local file header, before its file name and extra field
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DRIVE = re.compile(r"^[A-Za-z]:")

TOO_BIG = "The file is larger than 1 GB, far too large for an image; resize or re-export it."
ZIP_SLIP = (
    "The zip entry has an absolute path or goes up with '..', which could write outside the project; "
    "it was not extracted. Re-create the zip from a normal folder."
)
ZIP_ENCRYPTED = "The file is password-protected inside the zip; create the zip without a password."
ZIP_OVERLAP = (
    "The zip archive's entries share or overlap their compressed data, a trick used by zip bombs; nothing was "
    "extracted. Re-create the zip from the original images."
)
ZIP_PAST_END = (
    "The zip archive is damaged (an entry runs past the end of the file); create the zip again and import it."
)
ZIP_RATIO = (
    "The file inside the zip unpacks to {ratio:,.0f} times its compressed size, more than the limit of {limit:,.0f} "
    "(images barely compress), so it looks like a zip bomb and was not extracted. Re-create the zip from the "
    f"original images, or set {ENV_MAX_RATIO} to allow more."
)
ZIP_ENTRIES = (
    "The zip archive holds more than {limit:,} files, the most one zip archive may hold; it was not opened. "
    f"Split it into smaller zip archives, or set {ENV_MAX_ENTRIES} to allow more."
)
ZIP_TOO_BIG = "The zip archive unpacks to {size}, more than {cap}; it was not opened. To import it, {remedy}."
UNPACK_STOPPED = (
    "Unpacking stopped at {cap}: this file and the zip entries after it were not imported. To import them, {remedy}."
)
_UPLOAD_CAP = "the limit of {size} for one import"
_UPLOAD_REMEDY = f"set {ENV_MAX_UPLOAD} to allow more, or split {{it}} into smaller zip archives"
_DISK_CAP = "the {size} of free disk space where the project is stored"
_DISK_REMEDY = "free some disk space, or split {it} into smaller zip archives"


class UnpackLimitError(IngestError):
    """The import reached the most it may unpack from zip archives."""


@dataclass(frozen=True)
class IngestLimits:
    """What one import may bring: bytes unpacked from zip archives, and images per import and per project.

    Attributes:
        max_upload_bytes: the most bytes inflated from all the zip archives of one import together (image files
            picked directly are copied as they are, so they do not count).
        max_ratio: the most an entry may inflate, as a multiple of its compressed size (stored and deflated
            entries: only those over 1 MB).
        max_zip_entries: the most entries (files and folders) one zip archive may hold.
        max_images: the most images one import may bring (None: no limit).
        max_pool: the most images one project may hold (None: no limit).
    """

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_ratio: float = DEFAULT_MAX_RATIO
    max_zip_entries: int = DEFAULT_MAX_ENTRIES
    max_images: int | None = None
    max_pool: int | None = None

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1:
            raise ValueError(f"The upload limit must be at least 1 byte; set {ENV_MAX_UPLOAD} to a positive size.")
        if not self.max_ratio >= 1:
            raise ValueError(f"The zip ratio limit must be at least 1; set {ENV_MAX_RATIO} to a number such as 200.")
        if self.max_zip_entries < 1:
            raise ValueError(
                f"The zip entry limit must be at least 1; set {ENV_MAX_ENTRIES} to a number such as 100000."
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IngestLimits:
        """Limits from ``ALABEL_MAX_UPLOAD_BYTES`` (bytes, or with a K/M/G/T suffix: ``8G``),
        ``ALABEL_MAX_ZIP_RATIO``, ``ALABEL_MAX_ZIP_ENTRIES``, ``ALABEL_MAX_UPLOAD_IMAGES`` and ``ALABEL_MAX_POOL``;
        the defaults where they are unset or empty.

        Raises:
            ValueError: a variable is set to something that is not a size or a number.
        """
        environ = os.environ if environ is None else environ
        upload = (environ.get(ENV_MAX_UPLOAD) or "").strip()
        ratio = (environ.get(ENV_MAX_RATIO) or "").strip()
        entries = (environ.get(ENV_MAX_ENTRIES) or "").strip()
        images, pool = ((environ.get(name) or "").strip() for name in (ENV_MAX_IMAGES, ENV_MAX_POOL))
        return cls(
            max_upload_bytes=parse_size(upload, ENV_MAX_UPLOAD) if upload else DEFAULT_MAX_UPLOAD_BYTES,
            max_ratio=_parse_ratio(ratio) if ratio else DEFAULT_MAX_RATIO,
            max_zip_entries=_parse_count(entries) if entries else DEFAULT_MAX_ENTRIES,
            max_images=_parse_count(images, ENV_MAX_IMAGES) if images else None,
            max_pool=_parse_count(pool, ENV_MAX_POOL) if pool else None,
        )


def parse_size(text: str, name: str) -> int:
    """Bytes from ``"4294967296"``, ``"4G"``, ``"500 MB"`` or ``"1.5GiB"`` (units are powers of 1024).

    Raises:
        ValueError: `text` is not a size; the message names the variable `name`.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{name} is '{text}'; set it to a number of bytes such as 8589934592, or a size such as 8G.")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _parse_ratio(text: str) -> float:
    try:
        ratio = float(text)
    except ValueError:
        ratio = math.nan
    if not math.isfinite(ratio):
        raise ValueError(f"{ENV_MAX_RATIO} is '{text}'; set it to a number such as 200.")
    return ratio


def _parse_count(text: str, name: str = ENV_MAX_ENTRIES) -> int:
    if not text.isdecimal():
        raise ValueError(f"{name} is '{text}'; set it to a whole number such as 100000.")
    return int(text)


def over_counts(planned: int, in_project: int, limits: IngestLimits) -> tuple[int, str | None]:
    """How many of `planned` images an import may bring into a project holding `in_project`, and the reason the
    rest are refused (None when all may come)."""
    allowed, reason = planned, None
    if limits.max_images is not None and planned > limits.max_images:
        allowed = limits.max_images
        reason = (
            f"One import may bring at most {limits.max_images:,} images and this one has {planned:,}; the rest were "
            f"not imported. Import them in smaller parts, or set {ENV_MAX_IMAGES} to allow more."
        )
    if limits.max_pool is not None and in_project + allowed > limits.max_pool:
        allowed = max(0, limits.max_pool - in_project)
        reason = (
            f"A project may hold at most {limits.max_pool:,} images; the rest were not imported. Start another "
            f"project for them, or set {ENV_MAX_POOL} to allow more."
        )
    return allowed, reason


def format_bytes(count: int) -> str:
    """A size as people read it: ``"4.0 GB"``, ``"3.5 MB"``, ``"900 bytes"`` (units are powers of 1024)."""
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


class UnpackBudget:
    """The bytes one import may still unpack from zip archives; shared by the planning and the staging steps.

    Args:
        limits: the configured limits.
        free_bytes: free disk space where the images are stored; the cap never exceeds it. None: not checked.
    """

    def __init__(self, limits: IngestLimits, free_bytes: int | None = None) -> None:
        self.limits = limits
        self.on_disk = free_bytes is not None and free_bytes < limits.max_upload_bytes
        self.cap = max(0, free_bytes or 0) if self.on_disk else limits.max_upload_bytes
        self.used = 0
        self.stopped = False

    @property
    def remaining(self) -> int:
        """Bytes that may still be unpacked."""
        return max(0, self.cap - self.used)

    def _cap_and_remedy(self) -> tuple[str, str]:
        size = format_bytes(self.cap)
        if self.on_disk:
            return _DISK_CAP.format(size=size), _DISK_REMEDY
        return _UPLOAD_CAP.format(size=size), _UPLOAD_REMEDY

    def declared_problem(self, declared: int) -> str | None:
        """Why an archive whose entries declare `declared` bytes in all is refused unopened, or None."""
        if declared <= self.cap:
            return None
        cap, remedy = self._cap_and_remedy()
        return ZIP_TOO_BIG.format(size=format_bytes(declared), cap=cap, remedy=remedy.format(it="it"))

    def stop_reason(self) -> str:
        """The rejection of the entry that reached the cap and of every zip entry after it."""
        cap, remedy = self._cap_and_remedy()
        return UNPACK_STOPPED.format(cap=cap, remedy=remedy.format(it="them"))

    def spend(self, count: int) -> None:
        """Count `count` inflated bytes.

        Raises:
            UnpackLimitError: the import went past the cap; `stopped` is set and stays set.
        """
        self.used += count
        if self.used > self.cap:
            self.stopped = True
            raise UnpackLimitError(self.stop_reason())


def layout_problem(infos: Sequence[zipfile.ZipInfo], archive_bytes: int) -> str | None:
    """Why the archive is refused before anything is inflated (overlapping entries, damage), or None.

    Each entry occupies at least its local header (30 bytes and its file name; the extra field can only add to it)
    and its compressed data, starting at its header offset; sorted by offset, every entry must end at or before the
    next one starts, and the last one within the file.

    Args:
        infos: the archive's central directory (`zipfile.ZipFile.infolist`).
        archive_bytes: size of the archive file.
    """
    spans = sorted((info.header_offset, _data_end(info)) for info in infos)
    for (_, end), (next_start, _) in pairwise(spans):
        if end > next_start:
            return ZIP_OVERLAP
    if spans and spans[-1][1] > archive_bytes:
        return ZIP_PAST_END
    return None


def _data_end(info: zipfile.ZipInfo) -> int:
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    name_bytes = len(info.orig_filename.encode(encoding, errors="replace"))
    return info.header_offset + LOCAL_HEADER_BYTES + name_bytes + info.compress_size


def entry_count_problem(path: str | os.PathLike[str], max_entries: int) -> str | None:
    """Why the archive is refused before `zipfile.ZipFile` reads its central directory (too many entries), or None.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as fp:
        count = count_entries(fp, max_entries)
    return ZIP_ENTRIES.format(limit=max_entries) if count > max_entries else None


def count_entries(fp: BinaryIO, stop_after: int) -> int:
    """The central directory records of an open zip file, counted as `zipfile.ZipFile` will read them; stops
    counting past `stop_after`.

    The end record (or the zip64 end record) gives the directory's size; every record in that span is counted,
    whatever entry count the end record declares (ZipFile reads them all too). A file with no end record or a
    damaged directory counts what was found before the damage: ZipFile then refuses it.
    """
    end = zipfile._EndRecData(fp)  # the end-of-central-directory record, zip64 fields filled in
    if end is None:
        return 0
    declared, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
    if declared > stop_after:
        return declared
    start = end[zipfile._ECD_LOCATION] - size
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
        start -= _ZIP64_END_BYTES
    fp.seek(max(start, 0))
    count = read = 0
    while read < size and count <= stop_after:
        header = fp.read(_CENTRAL_HEADER.size)
        if len(header) < _CENTRAL_HEADER.size:
            break
        signature, name, extra, comment = _CENTRAL_HEADER.unpack(header)
        if signature != _CENTRAL_SIGNATURE:
            break
        fp.seek(name + extra + comment, os.SEEK_CUR)
        read += _CENTRAL_HEADER.size + name + extra + comment
        count += 1
    return count


def unsafe_entry(name: str) -> bool:
    """True for zip entry names that are absolute or climb out with '..' (zip slip)."""
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return True
    return any(part == ".." for part in re.split(r"[\\/]", name))


def entry_problem(info: zipfile.ZipInfo, max_ratio: float) -> str | None:
    """Why one image entry is not extracted (password, size, compression ratio), or None."""
    if info.flag_bits & 0x1:
        return ZIP_ENCRYPTED
    if info.file_size > MAX_FILE_BYTES:
        return TOO_BIG
    if info.file_size <= RATIO_FLOOR_BYTES and info.compress_type in _RATIO_FLOOR_METHODS:
        return None
    ratio = info.file_size / info.compress_size if info.compress_size > 0 else math.inf
    if ratio <= max_ratio:
        return None
    return ZIP_RATIO.format(ratio=min(ratio, 1e12), limit=max_ratio)


class EntryReader:
    """Wraps a zip entry stream; counts what it really inflates (the header's size may lie) against the per-file
    `limit` and the import's `budget`, reading at most one byte past either."""

    def __init__(self, stream: BinaryIO, limit: int, budget: UnpackBudget) -> None:
        self.stream, self.left, self.budget = stream, limit, budget

    def read(self, size: int = -1) -> bytes:
        room = min(self.left, self.budget.remaining) + 1
        chunk = self.stream.read(min(READ_BYTES if size < 0 else size, room))
        self.left -= len(chunk)
        if self.left < 0:
            raise BadImageError(TOO_BIG)
        self.budget.spend(len(chunk))
        return chunk

    def __enter__(self) -> EntryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.close()
