"""Upload requests as raw bytes: request headers, a multipart body and pipelines.

Mostly well-formed (so that examples reach the pipeline parser and the image probe), with
the ways a client can get it wrong or be hostile mixed in: broken or mismatched
boundaries, bare LF line ends, bad and duplicated part headers, RFC 5987 filenames with
unknown charsets, nested multiparts, `_charset_` parts, transfer encodings, lying
Content-Length headers, truncation anywhere, and pipelines that are deep, huge or strange.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from pipeline import ImageLimits

from .images import Picture, pictures

# Boundary characters of RFC 2046 (bchars), which clients draw from.
BCHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? "
# What an HTTP parser lets into a header value: no control characters (it refuses those),
# and text rather than surrogates (it decodes bytes before the handler sees them).
HEADER_TEXT = st.characters(exclude_categories=["Cc", "Cs"])


def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in `one_in` draws.

    The rare case is a value in the middle of the range: Hypothesis draws the low end of a
    range far more often than the rest (and shrinks towards it), so that is the common case.
    """
    return draw(st.integers(0, one_in - 1)) == one_in // 2


def mostly(common: st.SearchStrategy[Any], *rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`common` about seven times in eight, one of `rare` otherwise; shrinks to `common`."""
    return st.integers(0, 7).flatmap(lambda n: st.one_of(*rare) if n == 4 else common)


@dataclass(frozen=True)
class Part:
    header_lines: tuple[bytes, ...]
    body: bytes | Picture

    @property
    def content(self) -> bytes:
        return self.body.data if isinstance(self.body, Picture) else self.body


@dataclass(frozen=True)
class Form:
    """One upload request: what `read_upload` is called with, and the raw body it reads."""

    headers: tuple[tuple[str, str], ...]
    parts: tuple[Part, ...]
    body: bytes = field(repr=False)
    chunks: tuple[int, ...]
    """Sizes the body arrives in (cycled); empty: all at once."""
    max_bytes: int
    limits: ImageLimits
    max_ops: int


# --- Pipelines ---------------------------------------------------------------------------

VALID_OPS: tuple[dict[str, Any], ...] = (
    {"op": "thumbnail", "width": 64},
    {"op": "thumbnail", "width": 32, "height": 32, "fit": "cover", "crop": "attention"},
    {"op": "resize", "scale": 0.5, "kernel": "nearest"},
    {"op": "extract", "x": 0, "y": 0, "width": 4, "height": 4},
    {"op": "rotate", "angle": 33.5, "background": "#ff000080"},
    {"op": "flip", "direction": "vertical"},
    {"op": "autorotate", "enabled": False},
    {"op": "grayscale"},
    {"op": "blur", "sigma": 1.5},
    {"op": "sharpen"},
    {"op": "dither", "method": "palette", "colours": 4},
    {"op": "watermark", "text": "© ünïcode ✓\nzweite Zeile", "gravity": "centre"},
    {"op": "convert", "format": "webp", "lossless": True},
    {"op": "strip", "keep": ["icc", "exif"]},
    {"op": "info"},
)

_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats()
    | st.text(max_size=16)
    | st.sampled_from(["thumbnail", "watermark", "#ffffff", "\ud800", "\x00", "\u202e", "📷"])
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    _JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)


@st.composite
def json_mutant(draw: st.DrawFn, value: Any) -> Any:
    """`value` with a few edits at random places: a value replaced, a key dropped or added."""
    for _ in range(draw(st.integers(0, 3))):
        value = _edit(draw, value)
    return value


def _edit(draw: st.DrawFn, value: Any) -> Any:
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        choice = draw(st.integers(0, 3))
        if choice == 0:
            return {k: v for k, v in value.items() if k != key}
        if choice == 1:
            return {**value, draw(st.text(max_size=8)): draw(JSON_VALUES)}
        return {**value, key: _edit(draw, value[key])}
    if isinstance(value, list) and value and draw(st.booleans()):
        at = draw(st.integers(0, len(value) - 1))
        return [*value[:at], _edit(draw, value[at]), *value[at + 1 :]]
    return draw(JSON_VALUES)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


@functools.cache
def _hostile_pipeline_texts() -> st.SearchStrategy[str]:
    depth = st.integers(1, 40_000)
    digits = st.integers(1, 20_000)
    return st.one_of(
        depth.map(lambda n: "[" * n),
        depth.map(lambda n: "[" * n + "]" * n),
        depth.map(lambda n: '[{"op":"grayscale","x":' + '{"a":' * n + "1" + "}" * n + "}]"),
        digits.map(lambda n: '[{"op":"thumbnail","width":' + "9" * n + "}]"),
        digits.map(lambda n: '[{"op":"resize","scale":0.' + "0" * n + "1}]"),
        st.sampled_from(
            [
                "",
                "   \r\n ",
                "null",
                "1e999",
                '[{"op":"thumbnail","width":1e400}]',
                '[{"op":"rotate","angle":NaN}]',
                '[{"op":"watermark","text":"\\ud800"}]',
                '[{"op":"watermark","text":"a\\u0000b"}]',
                '[{"op":"watermark","text":"\\u202e\\u2066"}]',
                '[{"op":"rotate","angle":1,"background":"#fff\\n\\r"}]',
                '[{"op":"strip","keep":["icc","icc"]}]',
                '[{"op":"grayscale","op":"blur"}]',
                "\ufeff[]",
                '{"op":"grayscale"}',
                '[{"op":{"op":"grayscale"}}]',
                '[{"op":"' + "x" * 70_000 + '"}]',
            ]
        ),
    )


@functools.cache
def pipelines() -> st.SearchStrategy[bytes]:
    valid = st.lists(st.sampled_from(VALID_OPS), max_size=4)
    texts = mostly(
        valid.map(_dumps),
        valid.flatmap(json_mutant).map(_dumps),
        JSON_VALUES.map(_dumps),
        _hostile_pipeline_texts(),
    )
    return mostly(
        texts.map(lambda text: text.encode("utf-8", "surrogatepass")),
        st.binary(max_size=64),
        texts.map(lambda text: text.encode("utf-16", "surrogatepass")),
    )


# --- Parts -------------------------------------------------------------------------------

_NAMES = ("file", "pipeline")
_OTHER_NAMES = ("other", "FILE", "_charset_", "", "file ", 'fi"le', "pipeline\x00")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _raw(text: str) -> bytes:
    """The bytes `text` stands for: surrogates from `surrogateescape` are raw bytes again."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


_FILENAMES = st.one_of(
    st.sampled_from(["cat.png", "IMG_0001.JPG", "../../etc/passwd", "a\\b.gif", "x" * 300]),
    st.text(max_size=40).map(_quoted),
    # What a client may put between the quotes: any bytes, UTF-8 or not.
    st.binary(max_size=40).map(lambda raw: '"' + raw.decode("utf-8", "surrogateescape") + '"'),
)


@functools.cache
def _dispositions(name: str) -> st.SearchStrategy[str]:
    """Content-Disposition values for a field `name` (surrogates stand for raw bytes)."""
    named = f"form-data; name={_quoted(name)}"
    return mostly(
        st.just(named) | _FILENAMES.map(lambda f: f"{named}; filename={f}"),
        st.just(f"form-data; name={name}"),
        st.just(f"{named}; name=other"),
        st.just(f"form-data; name*=UTF-8''{name}"),
        st.just(f"{named}; filename*=UTF-8''%E2%82%AC%20rates.png"),
        st.just(f"{named}; filename*=bogus-charset''%FF%FE"),
        st.just(f"{named}; filename*=UTF-8''%C3"),
        st.just(f"{named}; filename*0=a; filename*1=b"),
        st.just(f"{named};;"),
        st.just(f"attachment; name={_quoted(name)}"),
        st.just(f'form-data; name="{name}'),
        st.text(max_size=60),
    )


_CONTENT_TYPES = st.sampled_from(
    [
        "image/png",
        "application/octet-stream",
        "text/plain; charset=utf-8",
        "multipart/mixed; boundary=inner",
        "multipart/mixed",
        "multipart/form-data; boundary=" + "b" * 80,
        "image/svg+xml",
        ";;;",
    ]
)

_EXTRA_LINES = st.one_of(
    st.sampled_from(
        [
            b"Content-Transfer-Encoding: base64",
            b"Content-Transfer-Encoding: quoted-printable",
            b"Content-Encoding: gzip",
            b"Content-Length: 3",
            b"Content-Length: 99999999999999999999",
            b"Content-Length: -1",
            b"no colon at all",
            b": no name",
            b" folded continuation",
            b"X-Long: " + b"a" * 9_000,
            b"X-Bytes: \xff\xfe\x00",
        ]
    ),
    st.binary(max_size=40).filter(lambda line: b"\r" not in line and b"\n" not in line),
    st.integers(100, 200).map(lambda n: b"\r\n".join(b"X-Many: 1" for _ in range(n))),
)


@st.composite
def parts(draw: st.DrawFn, name: str | None = None) -> Part:
    if name is None:
        name = draw(
            mostly(st.sampled_from(_NAMES), st.sampled_from(_OTHER_NAMES), st.text(max_size=10))
        )
    lines = [b"Content-Disposition: " + _raw(draw(_dispositions(name)))]
    if rarely(draw, 4):
        lines.append(b"Content-Type: " + draw(_CONTENT_TYPES).encode())
    if rarely(draw, 5):
        lines.extend(draw(st.lists(_EXTRA_LINES, min_size=1, max_size=3)))
    if rarely(draw, 10):
        lines = draw(st.permutations(lines))[1:]
    body: bytes | Picture
    if name == "file":
        body = draw(pictures())
    elif name == "pipeline":
        body = draw(pipelines())
    elif name == "_charset_":
        body = draw(st.sampled_from([b"utf-8", b"iso-8859-1", b"x" * 40, b"\xff"]))
    else:
        body = draw(st.binary(max_size=200))
    return Part(tuple(lines), body)


@st.composite
def _form_parts(draw: st.DrawFn) -> tuple[Part, ...]:
    """Mostly a file and perhaps a pipeline, in either order; sometimes anything."""
    if rarely(draw, 5):
        return tuple(draw(st.lists(parts(), max_size=6)))
    found = [draw(parts("file"))]
    if not rarely(draw, 4):
        found.insert(draw(st.integers(0, 1)), draw(parts("pipeline")))
    if rarely(draw, 16):
        found.insert(0, draw(parts("_charset_")))
    return tuple(found + draw(st.lists(parts(), max_size=1)))


# --- The body and the request ------------------------------------------------------------

_BOUNDARIES = mostly(
    st.sampled_from(["----WebKitFormBoundary7MA4YWxkTrZu0gW", "AaB03x", "x"]),
    st.text(BCHARS, min_size=1, max_size=70).map(str.strip).filter(bool),
    st.text(BCHARS, min_size=71, max_size=90),
    st.text(HEADER_TEXT, min_size=1, max_size=20).filter(lambda b: '"' not in b and ";" not in b),
)


def _content_type(boundary: str) -> st.SearchStrategy[str | None]:
    return mostly(
        st.just(f"multipart/form-data; boundary={boundary}"),
        st.just(f'multipart/form-data; boundary="{boundary}"'),
        st.just(f"multipart/form-data; charset=utf-8; boundary={boundary}"),
        st.just(f"MULTIPART/FORM-DATA; BOUNDARY={boundary}"),
        st.just(f"multipart/mixed; boundary={boundary}"),
        st.just(f"multipart/form-data; boundary={boundary}; boundary=other"),
        st.just("multipart/form-data"),
        st.just("multipart/form-data; boundary="),
        st.just("application/json"),
        st.none(),
        st.text(HEADER_TEXT, max_size=40),
    )


@st.composite
def _body(draw: st.DrawFn, boundary: str, form_parts: tuple[Part, ...]) -> bytes:
    eol = draw(mostly(st.just(b"\r\n"), st.just(b"\n")))
    dash = b"--" + boundary.encode("utf-8", "surrogatepass")
    if rarely(draw, 16):
        dash = b"--" + draw(st.binary(max_size=20))
    chunks = []
    if rarely(draw, 8):
        chunks.append(draw(st.binary(max_size=100)) + eol)
    for part in form_parts:
        padding = draw(mostly(st.just(b""), st.just(b" \t"), st.just(b"--")))
        chunks.append(dash + padding + eol + eol.join(part.header_lines) + eol + eol)
        chunks.append(part.content + eol)
    if not rarely(draw, 8):
        chunks.append(dash + b"--" + eol)
        if rarely(draw, 8):
            chunks.append(draw(st.binary(max_size=100)))
    body = b"".join(chunks)
    if rarely(draw, 16):
        body = body[: draw(st.integers(0, len(body)))]
    return body


@st.composite
def forms(draw: st.DrawFn) -> Form:
    boundary = draw(_BOUNDARIES)
    form_parts = draw(_form_parts())
    body = draw(_body(boundary, form_parts))
    headers: list[tuple[str, str]] = []
    content_type = draw(_content_type(boundary))
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    length = draw(st.integers(0, 9))
    if length < 6:
        headers.append(("Content-Length", str(len(body))))
    elif length < 8:
        headers.append(("Transfer-Encoding", "chunked"))
    elif length == 8:
        # A shorter declared length: the server reads that much and no more.
        declared = draw(st.integers(0, len(body)))
        headers.append(("Content-Length", str(declared)))
        body = body[:declared]
    else:
        headers.append(("Content-Length", str(draw(st.integers(10**6, 10**18)))))
    return Form(
        headers=tuple(headers),
        parts=form_parts,
        body=body,
        chunks=tuple(
            draw(mostly(st.just([]), st.lists(st.integers(1, 4096), min_size=1, max_size=6)))
        ),
        max_bytes=draw(st.sampled_from([25 * 1024 * 1024, 64 * 1024, 4096, 512])),
        limits=ImageLimits(
            max_pixels=draw(st.sampled_from([50_000_000, 10_000, 150, 1])),
            max_side=draw(st.sampled_from([20_000, 16, 8, 1])),
            max_frames=draw(st.sampled_from([100, 2, 1])),
        ),
        max_ops=draw(st.sampled_from([10, 3, 1])),
    )
