import io
import json
import struct
from typing import Any

import pytest
import pyvips
from PIL import Image

from imageproc._canvas import Canvas
from imageproc._encode import encode
from imageproc._info import describe_bytes, describe_image
from imageproc.operations import run_pipeline
from pipeline import ImageFormat, ImageLimits, PipelineError, parse_pipeline
from tests.imageproc.images import LIMITS, MAGIC, ramp

MAKE = 0x010F
GPS_IFD = 0x8825
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF'
    b' xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/"'
    b' xmlns:dc="http://purl.org/dc/elements/1.1/" exif:GPSLatitude="51,30.0N">'
    b"<exif:GPSLongitude>0,7.0E</exif:GPSLongitude><dc:creator>Ada</dc:creator>"
    b"</rdf:Description></rdf:RDF></x:xmpmeta>"
)


def _noisy(width: int, height: int) -> pyvips.Image:
    noise = pyvips.Image.gaussnoise(width, height, sigma=30)
    return (ramp(width, height) + noise).cast("uchar").copy(interpretation="srgb")


def _run(data: bytes, pipeline: list[dict[str, Any]]):
    return run_pipeline(data, parse_pipeline(pipeline), limits=LIMITS)


def _decode(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def _colours(image: pyvips.Image) -> int:
    pixels = bytes(image.write_to_memory())
    step = image.bands
    return len({pixels[i : i + step] for i in range(0, len(pixels), step)})


def _camera_jpeg(orientation: int = 1) -> bytes:
    """A JPEG with camera EXIF, a GPS position, XMP (with GPS too) and an sRGB profile."""
    exif = Image.Exif()
    exif[MAKE] = "TestCam"
    exif[0x0110] = "Model X"
    exif[0x0131] = "Firmware 1.0"
    exif[0x0112] = orientation
    details = exif.get_ifd(0x8769)
    details[0x9003] = "2024:01:02 03:04:05"
    details[0x8827] = 200
    gps = exif.get_ifd(GPS_IFD)
    gps.update({1: "N", 2: (51.0, 30.0, 0.0), 3: "E", 4: (0.0, 7.0, 0.0)})
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 100, 50)).save(buffer, "JPEG", exif=exif.tobytes())
    image = _decode(buffer.getvalue()).icc_transform("srgb", input_profile="srgb")
    image.set_type(pyvips.GValue.blob_type, "xmp-data", XMP)
    return bytes(image.jpegsave_buffer())


def _pillow_exif(data: bytes) -> Image.Exif:
    return Image.open(io.BytesIO(data)).getexif()


# --- convert -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(ImageFormat))
def test_convert_writes_each_format(fmt):
    result = _run(ramp(24, 16).pngsave_buffer(), [{"op": "convert", "format": fmt.value}])

    assert result.data.startswith(MAGIC[fmt.value])
    assert result.content_type == fmt.content_type
    out = _decode(result.data)
    assert (out.width, out.height) == (24, 16)


@pytest.mark.parametrize(("fmt", "size"), [("jpeg", 200), ("webp", 200), ("avif", 48)])
def test_lower_quality_gives_a_smaller_file(fmt, size):
    data = _noisy(size, size).pngsave_buffer()

    low = _run(data, [{"op": "convert", "format": fmt, "quality": 20}])
    high = _run(data, [{"op": "convert", "format": fmt, "quality": 90}])

    assert len(low.data) < len(high.data)


def test_progressive_jpeg_has_a_progressive_frame():
    data = ramp(64, 64).pngsave_buffer()

    baseline = _run(data, [{"op": "convert", "format": "jpeg"}]).data
    progressive = _run(data, [{"op": "convert", "format": "jpeg", "progressive": True}]).data

    # SOF0 starts a baseline frame, SOF2 a progressive one.
    assert b"\xff\xc0" in baseline
    assert b"\xff\xc2" not in baseline
    assert b"\xff\xc2" in progressive


@pytest.mark.parametrize(("progressive", "interlace"), [(False, 0), (True, 1)])
def test_progressive_png_is_interlaced(progressive, interlace):
    data = ramp(32, 32).jpegsave_buffer()

    out = _run(data, [{"op": "convert", "format": "png", "progressive": progressive}]).data

    # IHDR: 8-byte signature, length, type, width, height, depth, colour, compression,
    # filter, then the interlace method.
    assert out[28] == interlace


@pytest.mark.parametrize(("progressive", "interlaced"), [(False, False), (True, True)])
def test_progressive_gif_is_interlaced(progressive, interlaced):
    data = ramp(32, 32).pngsave_buffer()

    out = _run(data, [{"op": "convert", "format": "gif", "progressive": progressive}]).data

    assert _gif_interlaced(out) is interlaced


def _gif_interlaced(gif: bytes) -> bool:
    """The interlace flag of the first image descriptor."""
    flags = gif[10]
    at = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while gif[at] == 0x21:  # extension: label, then sub-blocks up to an empty one
        at += 2
        while gif[at]:
            at += gif[at] + 1
        at += 1
    assert gif[at] == 0x2C
    return bool(gif[at + 9] & 0x40)


@pytest.mark.parametrize("fmt", ["webp", "avif"])
def test_lossless_keeps_every_pixel(fmt):
    image = _noisy(40, 30)

    result = _run(image.pngsave_buffer(), [{"op": "convert", "format": fmt, "lossless": True}])

    assert (_decode(result.data) - image).abs().max() == 0


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_lossless_is_accepted_where_it_is_the_only_mode(fmt):
    image = _noisy(20, 20)

    result = _run(image.pngsave_buffer(), [{"op": "convert", "format": fmt, "lossless": True}])

    assert (_decode(result.data) - image).abs().max() == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"format": "jpeg", "lossless": True},
            "lossless is not available for jpeg (formats with it: png, webp, avif, tiff)",
        ),
        (
            {"format": "gif", "lossless": True},
            "lossless is not available for gif (formats with it: png, webp, avif, tiff)",
        ),
        (
            {"format": "webp", "progressive": True},
            "progressive is not available for webp (formats with it: jpeg, png, gif)",
        ),
    ],
)
def test_options_a_format_lacks_are_refused(params, message):
    with pytest.raises(PipelineError) as caught:
        parse_pipeline([{"op": "convert", **params}])

    assert str(caught.value) == f"operation 1 (convert): {message}"


def test_gif_has_at_most_256_colours():
    result = _run(_noisy(64, 64).pngsave_buffer(), [{"op": "convert", "format": "gif"}])

    out = _decode(result.data)
    assert 16 < _colours(out) <= 256


def test_tiff_is_deflate_compressed():
    data = _run(ramp(64, 64).pngsave_buffer(), [{"op": "convert", "format": "tiff"}]).data

    assert Image.open(io.BytesIO(data)).info["compression"] == "tiff_adobe_deflate"


# --- encode options carried by the canvas ------------------------------------------------


def _quantised(colours: int) -> pyvips.Image:
    """A photo already reduced to ``colours`` colours, as a palette operation leaves it."""
    photo = Image.frombytes("RGB", (64, 48), bytes(_noisy(64, 48).write_to_memory()))
    reduced = photo.quantize(colours).convert("RGB")
    return pyvips.Image.new_from_memory(reduced.tobytes(), 64, 48, 3, "uchar").copy(
        interpretation="srgb"
    )


@pytest.mark.parametrize(("colours", "depth"), [(2, 1), (4, 2), (16, 4), (256, 8)])
def test_palette_png_keeps_the_palette_exactly(colours, depth):
    image = _quantised(colours)

    data = encode(Canvas(image, ImageFormat.PNG, palette_colours=colours))

    # IHDR bit depth, then colour type 3 (palette).
    assert (data[24], data[25]) == (depth, 3)
    assert (_decode(data) - image).abs().max() == 0


def test_palette_colours_limit_gif():
    data = encode(Canvas(_noisy(64, 48), ImageFormat.GIF, palette_colours=4))

    assert _colours(_decode(data)) <= 4


def test_grey_palette_png_stays_grey():
    grey = ramp(32, 32).colourspace("b-w")

    out = _decode(encode(Canvas(grey, ImageFormat.PNG, palette_colours=16)))

    assert (out.bands, out.interpretation) == (1, "b-w")


@pytest.mark.parametrize("fmt", [ImageFormat.PNG, ImageFormat.TIFF, ImageFormat.GIF])
def test_bilevel_is_saved_as_black_and_white(fmt):
    image = (ramp(32, 32).colourspace("b-w") > 128).ifthenelse(255, 0).cast("uchar")

    out = _decode(encode(Canvas(image.copy(interpretation="b-w"), fmt, bilevel=True)))

    assert set(bytes(out.colourspace("b-w").write_to_memory())) == {0, 255}


# --- strip and metadata --------------------------------------------------------------


def test_camera_jpeg_fixture_carries_everything():
    fields = _decode(_camera_jpeg()).get_fields()

    assert {"exif-data", "xmp-data", "icc-profile-data", "exif-ifd3-GPSLatitude"} <= set(fields)


@pytest.mark.parametrize("pipeline", [[], [{"op": "strip"}], [{"op": "strip", "keep": []}]])
@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_metadata_is_stripped_by_default(pipeline, fmt):
    result = _run(_camera_jpeg(), [*pipeline, {"op": "convert", "format": fmt}])

    fields = _decode(result.data).get_fields()
    for name in ("exif-data", "xmp-data", "icc-profile-data", "iptc-data"):
        assert name not in fields
    assert not [name for name in fields if name.startswith("exif-")]


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_kept_exif_loses_its_gps(fmt):
    pipeline = [{"op": "strip", "keep": ["exif"]}, {"op": "convert", "format": fmt}]

    result = _run(_camera_jpeg(), pipeline)

    out = _decode(result.data)
    assert "TestCam" in out.get("exif-ifd0-Make")
    assert not [name for name in out.get_fields() if name.startswith("exif-ifd3-")]
    assert "xmp-data" not in out.get_fields()
    assert "icc-profile-data" not in out.get_fields()
    assert describe_bytes(result.data)["exif"]["has_gps"] is False


def test_kept_exif_of_a_jpeg_has_no_gps_ifd():
    result = _run(_camera_jpeg(), [{"op": "strip", "keep": ["exif"]}])

    exif = _pillow_exif(result.data)
    assert exif[MAKE] == "TestCam"
    assert GPS_IFD not in exif
    assert exif.get_ifd(GPS_IFD) == {}


def test_kept_exif_says_upright_after_autorotation():
    result = _run(_camera_jpeg(orientation=6), [{"op": "strip", "keep": ["exif"]}])

    out = _decode(result.data)
    assert (out.width, out.height) == (20, 40)
    assert _pillow_exif(result.data)[0x0112] == 1


def test_kept_xmp_loses_its_gps():
    result = _run(_camera_jpeg(), [{"op": "strip", "keep": ["xmp"]}])

    xmp = bytes(_decode(result.data).get("xmp-data"))
    assert b"<dc:creator>Ada</dc:creator>" in xmp
    assert b"GPS" not in xmp
    assert b"51,30" not in xmp


def test_xmp_with_gps_the_scrubber_misses_is_dropped():
    image = ramp(20, 20)
    image.set_type(pyvips.GValue.blob_type, "xmp-data", b"<x><a:GPSLatitude>51</x>")

    data = encode(Canvas(image, ImageFormat.JPEG, keep=frozenset({"xmp"})))

    assert "xmp-data" not in _decode(data).get_fields()


def _p3_png() -> tuple[pyvips.Image, bytes]:
    image = ramp(32, 32).icc_transform("p3", input_profile="srgb")
    return image, bytes(image.pngsave_buffer())


def test_kept_icc_keeps_the_profile_and_the_pixels_it_describes():
    image, data = _p3_png()

    result = _run(data, [{"op": "strip", "keep": ["icc"]}])

    out = _decode(result.data)
    assert bytes(out.get("icc-profile-data")) == bytes(image.get("icc-profile-data"))
    assert (out - image).abs().max() == 0


def test_without_icc_the_pixels_are_converted_to_srgb():
    image, data = _p3_png()

    out = _decode(_run(data, []).data)

    assert "icc-profile-data" not in out.get_fields()
    assert (out - image).abs().max() > 10
    assert (out - ramp(32, 32)).abs().avg() < 1


def test_kept_icc_of_cmyk_becomes_srgb_with_its_profile():
    cmyk = ramp(32, 32).icc_transform("cmyk", input_profile="srgb").jpegsave_buffer()

    result = _run(cmyk, [{"op": "strip", "keep": ["icc"]}])

    out = _decode(result.data)
    assert (out.interpretation, out.bands) == ("srgb", 3)
    assert bytes(out.get("icc-profile-data"))[16:20] == b"RGB "


def test_kept_icc_after_grayscale_is_dropped():
    _, data = _p3_png()

    result = _run(data, [{"op": "grayscale"}, {"op": "strip", "keep": ["icc"]}])

    out = _decode(result.data)
    assert out.bands == 1
    assert "icc-profile-data" not in out.get_fields()


def test_strip_params_are_recorded():
    result = _run(_camera_jpeg(), [{"op": "strip", "keep": ["icc", "exif"]}])

    assert [(step.op, step.params) for step in result.steps] == [
        ("strip", {"keep": ["icc", "exif"]})
    ]


@pytest.mark.parametrize("keep", [["exif", "exif"], ["gps"]])
def test_strip_refuses_bad_keep(keep):
    with pytest.raises(PipelineError):
        parse_pipeline([{"op": "strip", "keep": keep}])


# --- info ----------------------------------------------------------------------------


def test_info_leaves_the_image_alone():
    data = ramp(30, 20).pngsave_buffer()

    result = _run(data, [{"op": "info"}])

    assert [(step.op, step.params) for step in result.steps] == [("info", {})]
    assert (_decode(result.data) - ramp(30, 20)).abs().max() == 0


def test_describe_jpeg_with_camera_exif():
    info = describe_bytes(_camera_jpeg(orientation=6))

    assert info == {
        "format": "jpeg",
        "width": 40,
        "height": 20,
        "pages": 1,
        "bands": 3,
        "band_format": "uchar",
        "interpretation": "srgb",
        "has_alpha": False,
        "orientation": 6,
        "icc": True,
        "exif": {
            "make": "TestCam",
            "model": "Model X",
            "software": "Firmware 1.0",
            "datetime_original": "2024-01-02T03:04:05",
            "exposure_time": None,
            "f_number": None,
            "focal_length": None,
            "iso": 200,
            "has_gps": True,
            "readable": True,
        },
    }
    assert "51" not in json.dumps(info)


def test_describe_exposure_numbers():
    exif = Image.Exif()
    details = exif.get_ifd(0x8769)
    details[0x829A] = 1 / 250
    details[0x829D] = 2.8
    details[0x920A] = 35.0
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", exif=exif.tobytes())

    summary = describe_bytes(buffer.getvalue())["exif"]

    assert (summary["exposure_time"], summary["f_number"], summary["focal_length"]) == (
        0.004,
        2.8,
        35.0,
    )
    assert summary["has_gps"] is False


def test_describe_png_with_alpha():
    data = ramp(30, 20).bandjoin(128).pngsave_buffer(keep="none")

    info = describe_bytes(data)

    assert (info["format"], info["bands"], info["has_alpha"]) == ("png", 4, True)
    assert (info["icc"], info["exif"], info["orientation"]) == (False, None, 1)


def test_describe_animated_gif():
    frames = [ramp(20, 10) * (0.5 + i / 4) for i in range(3)]
    strip = pyvips.Image.arrayjoin(frames, across=1).cast("uchar").copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", 10)
    strip.set_type(pyvips.GValue.gint_type, "n-pages", 3)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [100, 100, 100])
    data = bytes(strip.gifsave_buffer())

    info = describe_bytes(data)

    assert (info["format"], info["width"], info["height"], info["pages"]) == ("gif", 20, 10, 3)
    whole = pyvips.Image.new_from_buffer(data, "", n=-1)
    assert describe_image(whole, ImageFormat.GIF, pages=3)["height"] == 10


def test_describe_bytes_reads_only_the_header():
    png = bytes(pyvips.Image.gaussnoise(20, 20).cast("uchar").pngsave_buffer())
    body = png.index(b"IDAT") + 4
    corrupt = png[:body] + b"\x00" * (len(png) - body)

    assert describe_bytes(corrupt)["width"] == 20


def test_describe_is_json_ready():
    info = describe_bytes(_camera_jpeg())

    assert json.loads(json.dumps(info)) == info


def test_describe_refuses_other_formats():
    with pytest.raises(ValueError, match="not an allowed image format"):
        describe_bytes(b"<svg/>")


def _exif_with_thumbnail(thumbnail: bytes) -> bytes:
    """A little-endian EXIF blob: IFD0 (Make) -> IFD1 (an embedded JPEG thumbnail)."""
    make = b"Canon\0"
    ifd0_size, ifd1_size = 2 + 12 + 4, 2 + 2 * 12 + 4
    make_at = 8 + ifd0_size
    ifd1_at = make_at + len(make)
    thumbnail_at = ifd1_at + ifd1_size
    ifd0 = struct.pack("<HHHII", 1, 0x010F, 2, len(make), make_at) + struct.pack("<I", ifd1_at)
    ifd1 = (
        struct.pack("<H", 2)
        + struct.pack("<HHII", 0x0201, 4, 1, thumbnail_at)
        + struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail))
        + struct.pack("<I", 0)
    )
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd0 + make + ifd1 + thumbnail


def test_kept_exif_never_carries_the_originals_embedded_thumbnail() -> None:
    # The preview would still show what a crop cut away.
    preview = io.BytesIO()
    Image.new("RGB", (40, 30), (0, 255, 0)).save(preview, "JPEG")
    source = io.BytesIO()
    Image.new("RGB", (400, 300), (200, 10, 10)).save(
        source, "JPEG", exif=_exif_with_thumbnail(preview.getvalue())
    )
    assert source.getvalue().count(b"\xff\xd8") == 2
    pipeline = [
        {"op": "extract", "x": 0, "y": 0, "width": 100, "height": 100},
        {"op": "strip", "keep": ["exif"]},
    ]
    out = run_pipeline(source.getvalue(), parse_pipeline(pipeline), limits=ImageLimits()).data
    assert b"Canon" in out
    assert out.count(b"\xff\xd8") == 1
    assert preview.getvalue()[20:60] not in out
