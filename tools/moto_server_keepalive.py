"""moto's S3 server, served with HTTP keep-alive: `moto_server_keepalive.py -H HOST -p PORT`.

`moto_server` runs moto's WSGI app on werkzeug's development server, which answers every
request with `Connection: close`: each S3 call of a service then opens a TCP connection
and the server a thread. Served by waitress (a production WSGI server with a thread pool
and keep-alive), the same app costs the services ~0.6 ms and moto ~0.6 ms less CPU per
request (measured with aioboto3 on this machine: 2.6 -> 2.0 and 6.1 -> 5.5 ms per call).
Runs in the project's virtualenv (moto and waitress are development dependencies).

waitress is told to keep request and response bodies in memory and to move them 256 KB
at a time: with its defaults (bodies over 512 KB in, 1 MB out, through a temporary file;
8 KB per `recv`) moto spent ~25 ms of CPU per fit512 job of `make bench`, ~21 with these
(two A/B runs of 3 x 48 jobs, relative to imageproc's CPU in the same runs).

Object bodies are kept on disk, not in memory. moto keeps each body in a
`SpooledTemporaryFile` that stays in memory up to `MOTO_S3_DEFAULT_KEY_BUFFER_SIZE`
(default ~5 MB, more than any image the mesh sees): the stack's moto held every input and
output it was ever given, 4.4 GB after a 20-minute soak, growing 3.3 GB per 10 minutes.
Spilled by a `SpooledTemporaryFile`, each body would keep a file descriptor open for as
long as the object exists (20000 at most here: a few thousand jobs). So bodies above
`SPILL_BYTES` go to a file of their own (`SpillFile`), opened only while it is read or
written; smaller ones (the runner's reuse index entries) stay in memory. The files live in
a directory of this process's own, removed when it stops (and by the next start if it was
killed).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import io
import os
import shutil
import signal
import sys
import tempfile
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import waitress

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]
SPILL_BYTES = 16 * 1024
"""Bodies larger than this are kept in a file (`MOTO_S3_DEFAULT_KEY_BUFFER_SIZE` when set)."""
SPILL_PREFIX = "imagemesh-moto-"
BUFFER_IN_MEMORY_BYTES = 64 * 2**20
"""Request and response bodies waitress keeps in memory rather than in a temporary file
(its defaults: 512 KB in, 1 MB out, below most photos)."""
SOCKET_CHUNK_BYTES = 256 * 1024
"""What waitress reads from or writes to a socket at a time (its defaults: 8 KB, 18 KB)."""


class SpillFile:
    """Where moto keeps one object's body, in place of its `SpooledTemporaryFile`: in
    memory up to `max_size` bytes, beyond that in a file of its own in `folder`, with no
    descriptor held between calls. moto only writes a body whole (seek(0), truncate,
    write), reads it from the start, and closes it when the object goes."""

    folder: Path | None = None
    """Set by `install`: the directory of this server's files."""

    def __init__(self, max_size: int = 0, *args: Any, **kwargs: Any) -> None:
        self._max_size = max_size
        self._memory = io.BytesIO()
        self._path: str | None = None
        self._size = 0
        """The file's size (when spilled)."""
        self._position = 0
        self._closed = False

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check()
        if self._path is None:
            return self._memory.seek(offset, whence)
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}
        self._position = start[whence] + offset
        return self._position

    def tell(self) -> int:
        self._check()
        return self._position if self._path is not None else self._memory.tell()

    def truncate(self, size: int | None = None) -> int:
        """Only the whole body is ever replaced: back to an empty one in memory."""
        self._check()
        self._drop_file()
        self._memory = io.BytesIO()
        return 0

    def write(self, data: bytes) -> int:
        self._check()
        if self._path is None:
            if not self._max_size or self._memory.tell() + len(data) <= self._max_size:
                return self._memory.write(data)
            self._spill()
        assert self._path is not None
        descriptor = os.open(self._path, os.O_WRONLY)
        try:
            _write_all(descriptor, data, self._position)
        finally:
            os.close(descriptor)
        self._position += len(data)
        self._size = max(self._size, self._position)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        self._check()
        if self._path is None:
            return self._memory.read(size)
        left = self._size - self._position
        wanted = left if size < 0 else min(size, left)
        if wanted <= 0:
            return b""
        descriptor = os.open(self._path, os.O_RDONLY)
        try:
            data = os.pread(descriptor, wanted, self._position)
        finally:
            os.close(descriptor)
        self._position += len(data)
        return data

    def close(self) -> None:
        self._drop_file()
        self._memory, self._closed = io.BytesIO(), True

    @property
    def spilled(self) -> bool:
        return self._path is not None

    def _spill(self) -> None:
        """Move what is in memory (often nothing: a body is written whole) to a file."""
        descriptor, self._path = tempfile.mkstemp(dir=self.folder)
        try:
            _write_all(descriptor, self._memory.getbuffer(), 0)
        finally:
            os.close(descriptor)
        self._size = self._position = self._memory.tell()
        self._memory = io.BytesIO()

    def _drop_file(self) -> None:
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            self._path, self._size, self._position = None, 0, 0

    def _check(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file.")


def _write_all(descriptor: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(descriptor, view, offset)
        view, offset = view[written:], offset + written


def install(base: Path | None = None) -> Path:
    """Make moto keep its object bodies in `SpillFile`s, in a new directory under `base`
    (the temporary directory), removed at exit. Directories of earlier servers that were
    killed (their pid no longer runs) are removed first."""
    os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(SPILL_BYTES))
    root = Path(base or tempfile.gettempdir())
    for old in root.glob(f"{SPILL_PREFIX}*"):
        pid = old.name.removeprefix(SPILL_PREFIX).split("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-", dir=root))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    SpillFile.folder = folder
    from moto.s3 import models  # moto reads its settings per object: after setdefault

    models.tempfile = types.SimpleNamespace(SpooledTemporaryFile=SpillFile)  # type: ignore[attr-defined,assignment]
    return folder


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=9000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto names itself with it
    install()
    # Stopped with SIGTERM (`make down`): exit, so that atexit removes the spill files.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    waitress.serve(
        s3_first(DomainDispatcherApplication(create_backend_app), create_backend_app("s3")),
        host=args.host,
        port=args.port,
        threads=8,
        inbuf_overflow=BUFFER_IN_MEMORY_BYTES,
        outbuf_overflow=BUFFER_IN_MEMORY_BYTES,
        recv_bytes=SOCKET_CHUNK_BYTES,
        send_bytes=SOCKET_CHUNK_BYTES,
        ident=None,
        _quiet=True,
    )


def s3_first(dispatcher: WSGIApp, s3: WSGIApp) -> WSGIApp:
    """Requests go straight to the S3 backend; only moto's own API (`/moto-api/`, e.g. a
    reset) goes through moto's dispatcher, which finds a request's backend by scanning
    its modules on disk under a global lock (a tenth of moto's CPU per S3 call)."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
            return dispatcher(environ, start_response)
        return s3(environ, start_response)

    return app


if __name__ == "__main__":
    main()
