"""Server-sent events: the WHATWG `text/event-stream` format, decoded incrementally.

Pure (no I/O): feed it the bytes as they arrive, in chunks of any size, and it returns the
events each chunk completes. Follows the HTML standard's parsing rules: CR, LF or CRLF line
ends (a CRLF may be split across chunks), `:` comments, one optional space after the
field's colon, several `data:` lines joined with a newline, a block without data
dispatches nothing, and `id` / `retry` persist from event to event."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    """The last event id the stream set (sent back as `Last-Event-ID` when reconnecting)."""
    retry: int | None = None
    """The reconnection delay the stream asked for, in milliseconds."""


class SSEDecoder:
    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes | str) -> list[ServerSentEvent]:
        """The events completed by `chunk`, in order."""
        self._buffer += self._text.decode(chunk) if isinstance(chunk, bytes) else chunk
        if not self._started and self._buffer:
            self._started = True
            self._buffer = self._buffer.removeprefix("\ufeff")
        events: list[ServerSentEvent] = []
        position = 0
        while match := _LINE_END.search(self._buffer, position):
            if match.group() == "\r" and match.end() == len(self._buffer):
                break  # maybe the first half of a CRLF: wait for the next chunk
            event = self._line(self._buffer[position : match.start()])
            if event is not None:
                events.append(event)
            position = match.end()
        self._buffer = self._buffer[position:]
        return events

    def close(self) -> list[ServerSentEvent]:
        """At the end of the stream: a CR held back as maybe half a CRLF ends its line. An
        event without its final empty line is dropped, as the standard says."""
        events = self.feed("\n") if self._buffer.endswith("\r") else []
        self._buffer = ""
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._last_id = value or None
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return ServerSentEvent(event, "\n".join(data), self._last_id, self._retry)
