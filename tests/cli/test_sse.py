"""The server-sent events decoder, by the HTML standard's parsing rules."""

from __future__ import annotations

import pytest

from imagemesh_cli.sse import ServerSentEvent, SSEDecoder

STREAM = (
    b": a comment, ignored\n"
    b"event: status\n"
    b'data: {"id": "j", "status": "queued"}\n'
    b"\n"
    b"id: 7\n"
    b"event: step\n"
    b"data: line one\n"
    b"data:line two\n"
    b"\n"
    b"data: no type\n"
    b"\n"
)
EXPECTED = [
    ServerSentEvent("status", '{"id": "j", "status": "queued"}'),
    ServerSentEvent("step", "line one\nline two", id="7"),
    ServerSentEvent("message", "no type", id="7"),
]


def decode(*chunks: bytes | str) -> list[ServerSentEvent]:
    """The events of a whole stream, fed in `chunks`."""
    decoder = SSEDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)] + decoder.close()


def test_whole_stream() -> None:
    assert decode(STREAM) == EXPECTED


def test_every_split_gives_the_same_events() -> None:
    for cut in range(len(STREAM) + 1):
        assert decode(STREAM[:cut], STREAM[cut:]) == EXPECTED, cut


def test_byte_by_byte() -> None:
    assert decode(*(STREAM[i : i + 1] for i in range(len(STREAM)))) == EXPECTED


@pytest.mark.parametrize("end", ["\r\n", "\r", "\n"])
def test_line_ends(end: str) -> None:
    stream = STREAM.decode().replace("\n", end).encode()
    assert decode(stream) == EXPECTED
    assert decode(*(stream[i : i + 1] for i in range(len(stream)))) == EXPECTED


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    """A CR at the end of a chunk may be half a CRLF: no empty line (early dispatch)."""
    assert decode("data: a\r", "\ndata: b\r", "\n\r", "\n") == [ServerSentEvent(data="a\nb")]


def test_multibyte_character_split_between_chunks() -> None:
    data = "data: café ✓\n\n".encode()
    cut = data.index("é".encode()) + 1
    assert decode(data[:cut], data[cut:]) == [ServerSentEvent(data="café ✓")]


def test_lone_cr_at_the_end_of_a_chunk_waits_for_the_next() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("data: a\r\r") == []
    assert decoder.feed("data: b\n\n") == [ServerSentEvent(data="a"), ServerSentEvent(data="b")]


def test_incomplete_event_is_not_dispatched() -> None:
    assert decode(b"event: status\ndata: {}\n") == []
    assert decode(b"event: status\ndata: {}") == []


def test_block_without_data_dispatches_nothing_and_resets_the_type() -> None:
    assert decode(b"event: status\n\ndata: x\n\n") == [ServerSentEvent("message", "x")]


def test_field_rules() -> None:
    events = decode(
        b"\xef\xbb\xbfdata:  two spaces keep one\n\n"  # BOM stripped; one space removed
        b"data\n\n"  # a field without a colon has an empty value
        b"retry: 2500\nretry: soon\ndata: r\n\n"  # a retry that is not digits is ignored
        b"id: a\0b\ndata: nul ignored\n\n"
        b"unknown: field\ndata: x\n\n"
    )
    assert events == [
        ServerSentEvent(data=" two spaces keep one"),
        ServerSentEvent(data=""),
        ServerSentEvent(data="r", retry=2500),
        ServerSentEvent(data="nul ignored", retry=2500),
        ServerSentEvent(data="x", retry=2500),
    ]


def test_empty_data_line_then_data() -> None:
    assert decode(b"data:\ndata: x\n\n") == [ServerSentEvent(data="\nx")]


def test_empty_id_clears_the_last_id() -> None:
    assert decode(b"id: 1\ndata: a\n\nid\ndata: b\n\n") == [
        ServerSentEvent(data="a", id="1"),
        ServerSentEvent(data="b"),
    ]
