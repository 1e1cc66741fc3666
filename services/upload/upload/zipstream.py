"""A zip archive written as it is sent: entry names made safe and unique, and a zipfile
that writes to a buffer drained after every write.

Python's `zipfile` writes to an output it cannot seek (it has no `seek`) with a data
descriptor after each entry's bytes (general purpose flag bit 3): the CRC and sizes come
after the data, so nothing is ever held back but the central directory at the end (a few
dozen bytes an entry). Entries are stored, not deflated: images are compressed already,
and deflating them costs CPU for nothing.
"""

from __future__ import annotations

import re
import unicodedata
import zipfile
from collections.abc import Iterable
from datetime import datetime
from typing import IO
from urllib.parse import quote

MAX_STEM_CHARS = 120
"""Characters kept of a name's stem (most file systems allow 255 bytes a name)."""
_RESERVED = re.compile(r'[<>:"/\\|?*]')
"""Characters Windows refuses in a file name (and the path separators everywhere)."""
_WINDOWS_DEVICES = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])$", re.IGNORECASE)


def safe_stem(filename: str | None, fallback: str) -> str:
    """The stem of a client's file name, safe as a name inside an archive: its last path
    component only (a name may carry `C:\\...` or `../`), no control or reserved
    characters, no leading dots (no `..`, no hidden file), at most MAX_STEM_CHARS; the
    fallback if nothing is left."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    stem = unicodedata.normalize("NFC", stem)
    stem = "".join(c for c in stem if not unicodedata.category(c).startswith("C"))
    stem = _RESERVED.sub("_", stem).strip().lstrip(".").rstrip(". ")
    stem = stem[:MAX_STEM_CHARS].rstrip(". ")
    if not stem or _WINDOWS_DEVICES.match(stem):
        return fallback
    return stem


def unique_names(stems_and_extensions: Iterable[tuple[str, str]]) -> list[str]:
    """`stem + extension` for each, the second of a name `stem (2)` and so on; compared
    regardless of case (unzipping onto macOS or Windows would overwrite otherwise)."""
    taken: set[str] = set()
    names = []
    for stem, extension in stems_and_extensions:
        name = f"{stem}{extension}"
        number = 1
        while name.casefold() in taken:
            number += 1
            name = f"{stem} ({number}){extension}"
        taken.add(name.casefold())
        names.append(name)
    return names


def attachment(filename: str) -> str:
    """A Content-Disposition naming `filename` (RFC 6266): an ASCII `filename` for old
    clients, and the exact one as `filename*` (RFC 8187, UTF-8, percent-encoded)."""
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_")
    ascii_name = ascii_name.replace("\\", "_").replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


class _Buffer:
    """What zipfile writes, kept until it is taken (`take`); not seekable, so zipfile
    streams (data descriptors), and it tells its position, which zipfile needs for the
    central directory."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0

    def write(self, data: bytes, /) -> int:
        chunk = bytes(data)  # zipfile may pass a view of a buffer it reuses
        self._chunks.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        """Nothing to flush: `take` hands the bytes on."""

    def close(self) -> None:
        """Nothing to close: the bytes were handed on."""

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class ZipWriter:
    """A zip archive made entry by entry; after each call, `take()` gives the bytes it
    produced, to be sent before the next call. Memory: the chunk being written."""

    def __init__(self) -> None:
        self._buffer = _Buffer()
        self._zip = zipfile.ZipFile(self._buffer, "w", compression=zipfile.ZIP_STORED)
        self._open: IO[bytes] | None = None

    def start(self, name: str, size: int, modified: datetime) -> None:
        """Begin the entry `name` of `size` bytes (its size decides whether it needs zip64)."""
        info = zipfile.ZipInfo(name, date_time=_zip_time(modified))
        info.compress_type = zipfile.ZIP_STORED
        info.file_size = size
        info.external_attr = 0o644 << 16  # a plain, readable file when unzipped
        self._open = self._zip.open(info, "w")

    def write(self, chunk: bytes) -> None:
        assert self._open is not None, "start() first"
        self._open.write(chunk)

    def end(self) -> None:
        """End the entry: its data descriptor (CRC and sizes) follows."""
        assert self._open is not None, "start() first"
        self._open.close()
        self._open = None

    def close(self) -> None:
        """The central directory, the archive's end."""
        self._zip.close()

    def take(self) -> bytes:
        return self._buffer.take()


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    """A zip entry's time (no zone, no dates before 1980)."""
    if moment.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
