"""Where an upload's file goes while it arrives: never whole in memory.

The first `memory` bytes stay in memory (most photos of a web form fit); past that, what is
held is written out to an unnamed temporary file, so an upload holds at most about
`memory` bytes of RAM however large it is and however long its sender stalls. The file
has no name (`tempfile.TemporaryFile`: O_TMPFILE or unlinked at once): closing it, or the
process dying, gives the disk space back, and nothing is ever left in the directory.
The SHA-256 is computed on the way in and the first bytes kept for sniffing, so nothing
needs to read the whole file back but the probe and the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tempfile
from typing import BinaryIO

HEAD_BYTES = 64
"""Bytes kept for sniffing the type (every signature fits in the first 32)."""


class Spool:
    def __init__(self, *, memory: int, directory: str = "", hashed: bool = True) -> None:
        self._memory = memory
        self._hashed = hashed
        """Whether to compute the SHA-256 (an image sent back needs none)."""
        self._directory = directory or None  # None: the system's (TMPDIR)
        self._hash = hashlib.sha256()
        self._pending: list[bytes] = []
        """What arrived since the last write to disk (all of it while in memory)."""
        self._pending_bytes = 0
        self._file: BinaryIO | None = None
        self.size = 0
        self.head = b""
        self._finished = False

    @property
    def sha256(self) -> str:
        """The hex digest of everything written (once `finish` returned)."""
        assert self._finished, "finish() first"
        assert self._hashed, "a spool made with hashed=False has no digest"
        return self._hash.hexdigest()

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def fileno(self) -> int:
        """The temporary file's descriptor (only `on_disk`)."""
        assert self._file is not None
        return self._file.fileno()

    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        if len(self.head) < HEAD_BYTES:
            self.head = (self.head + chunk)[:HEAD_BYTES]
        self.size += len(chunk)
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes > self._memory:
            await self._spill()

    async def finish(self) -> None:
        """All of it has arrived: hash the rest, and write it out if the rest is on disk."""
        if self._file is not None:
            await self._spill()
        else:
            # Joined once: the probe and the store both read it.
            self._pending = [b"".join(self._pending)]
            if self._hashed:
                await asyncio.to_thread(self._hash_pending)
        self._finished = True

    def data(self) -> bytes:
        """The whole file, from memory (only when not `on_disk`)."""
        assert self._file is None
        return self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)

    def reader(self) -> BinaryIO:
        """The whole file to read from its start (the spool's own file when on disk: one
        reader at a time)."""
        assert self._finished, "finish() first"
        if self._file is None:
            return io.BytesIO(self.data())
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        self._pending = []
        self._pending_bytes = 0
        if self._file is not None:
            self._file.close()

    async def _spill(self) -> None:
        chunks, self._pending, self._pending_bytes = self._pending, [], 0
        # Disk and hashing off the event loop: a megabyte at a time, not every chunk.
        await asyncio.to_thread(self._write_out, chunks)

    def _write_out(self, chunks: list[bytes]) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(dir=self._directory)  # noqa: SIM115  # closed by close()
        if self._hashed:
            for chunk in chunks:
                self._hash.update(chunk)
        self._file.writelines(chunks)
        self._file.flush()  # the probe reads it through another descriptor (libvips)

    def _hash_pending(self) -> None:
        for chunk in self._pending:
            self._hash.update(chunk)
