"""Large upload requests, described by their shape and written lazily to a socket: a body
many times the upload limit never exists in the test's memory, so what the server's
process holds is what `read_upload` holds.

A body is a list of segments, each `(bytes, times)`; a shape puts the bulk where a hostile
client would: in the file, in headers, before the first boundary, after the last, in
parts nobody asked for, in the pipeline, in a `_charset_` part, in a nested multipart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

from hypothesis import strategies as st

from .forms import mostly
from .images import seeds

BOUNDARY = "fuzzstreamboundary"
DASH = b"--" + BOUNDARY.encode()
CRLF = b"\r\n"
BLOCK = 64 * 1024

Segment = tuple[bytes, int]


@dataclass(frozen=True)
class Stream:
    shape: str
    size: int
    """The bulk's size in bytes (before framing)."""
    framing: str
    """"length" (an honest Content-Length), "chunked", or "declared" (a huge one)."""
    segments: tuple[Segment, ...]

    def __repr__(self) -> str:
        return f"Stream({self.shape!r}, size={self.size}, framing={self.framing!r})"

    @property
    def length(self) -> int:
        return sum(len(chunk) * times for chunk, times in self.segments)


def _part(disposition: str, *extra: bytes) -> bytes:
    lines = [f"Content-Disposition: form-data; {disposition}".encode(), *extra]
    return DASH + CRLF + CRLF.join(lines) + CRLF + CRLF


def _file() -> Segment:
    return (_part('name="file"; filename="x.png"') + seeds()["png"], 1)


def _pipeline(ops: list[dict[str, object]]) -> Segment:
    return (CRLF + _part('name="pipeline"') + json.dumps(ops).encode(), 1)


_END: Segment = (CRLF + DASH + b"--" + CRLF, 1)


def _filler(size: int, unit: bytes = b"\x00junk\xff") -> Segment:
    return (unit, max(1, size // len(unit)))


def _shape(shape: str, size: int) -> tuple[Segment, ...]:
    """The segments of `shape` with `size` bytes of bulk."""
    if shape == "big-file":
        return (_file(), _filler(size), _pipeline([{"op": "grayscale"}]), _END)
    if shape == "many-files":
        files = [seg for _ in range(8) for seg in ((CRLF, 1), _file(), _filler(size // 8))]
        return (*files[1:], _END)
    if shape == "header-lines":
        return (
            (DASH + CRLF + b"Content-Disposition: form-data; name=file" + CRLF, 1),
            (b"X-Pad: " + b"p" * 60 + CRLF, max(1, size // 69)),
            (CRLF, 1),
            _END,
        )
    if shape == "header-line":
        return ((DASH + CRLF + b"X-Pad: ", 1), _filler(size, b"p" * 64), (CRLF + CRLF, 1), _END)
    if shape == "preamble":
        return (_filler(size, b"p" * 1022 + CRLF), (CRLF, 1), _file(), _END)
    if shape == "preamble-no-newline":
        return (_filler(size, b"p" * 64), _file(), _END)
    if shape == "epilogue":
        return (_file(), _END, _filler(size))
    if shape == "many-parts":
        other = _part('name="other"') + b"x" * 1024 + CRLF
        return (_file(), (CRLF, 1), (other, max(1, size // len(other))), _END)
    if shape == "big-other":
        return ((_part('name="other"'), 1), _filler(size), (CRLF, 1), _file(), _END)
    if shape == "big-pipeline":
        return (_file(), (CRLF + _part('name="pipeline"'), 1), _filler(size, b" "), _END)
    if shape == "charset":
        return ((_part('name="_charset_"'), 1), _filler(size, b"utf-8 "), (CRLF, 1), _file(), _END)
    if shape == "nested":
        inner = b"Content-Type: multipart/mixed; boundary=inner"
        return ((_part('name="file"', inner) + b"--inner" + CRLF + CRLF, 1), _filler(size), _END)
    raise AssertionError(f"unknown shape {shape}")


SHAPES = (
    "big-file",
    "many-files",
    "header-lines",
    "header-line",
    "preamble",
    "preamble-no-newline",
    "epilogue",
    "many-parts",
    "big-other",
    "big-pipeline",
    "charset",
    "nested",
)


def streams(max_bytes: int, largest: int) -> st.SearchStrategy[Stream]:
    sizes = st.one_of(
        st.sampled_from([max_bytes - 1024, max_bytes, max_bytes + 1, 2 * max_bytes, largest]),
        st.integers(1, largest),
    )
    framing = mostly(st.just("chunked"), st.just("length"), st.just("declared"))
    return st.builds(
        _stream,
        st.sampled_from(SHAPES),
        sizes,
        framing,
    )


_SLOW = ("many-parts",)
"""Shapes that cost the server far more time per byte (about 1 ms a part): kept just large
enough to outgrow the limit."""


def _stream(shape: str, size: int, framing: str) -> Stream:
    if shape in _SLOW:
        size = min(size, 1024 * 1024)
    return Stream(shape, size, framing, _shape(shape, size))


async def send(host: str, port: int, stream: Stream) -> int:
    """POST `stream` on a fresh connection; the response's status (0 if none came)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = [
            "POST /api/v1/jobs HTTP/1.1",
            f"Host: {host}:{port}",
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
        ]
        if stream.framing == "chunked":
            head.append("Transfer-Encoding: chunked")
        else:
            declared = stream.length if stream.framing == "length" else 10**12
            head.append(f"Content-Length: {declared}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        with contextlib.suppress(ConnectionError):
            await _write_body(writer, stream)
        status_line = await reader.readline()
        return int(status_line.split()[1]) if status_line.startswith(b"HTTP/") else 0
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _write_body(writer: asyncio.StreamWriter, stream: Stream) -> None:
    chunked = stream.framing == "chunked"
    for chunk, times in stream.segments:
        per_block = max(1, BLOCK // max(1, len(chunk)))
        while times > 0:
            block = chunk * min(times, per_block)
            times -= per_block
            writer.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
        await writer.drain()
