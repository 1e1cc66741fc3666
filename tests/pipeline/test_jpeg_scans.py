"""A progressive JPEG with thousands of repeated scans is refused from its markers, before
any decoder spends minutes on it (bounded work per image)."""

from __future__ import annotations

import io
import tempfile
import time

import pytest
from PIL import Image

from pipeline import ImageLimits, ImageRejected, harden_vips, probe_image
from pipeline._jpeg import count_jpeg_scans
from pipeline._probe import probe_file
from tests.hostile import repeated_scan_jpeg


@pytest.fixture(autouse=True, scope="module")
def _hardened() -> None:
    harden_vips()


def _jpeg(*, progressive: bool, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(
        buffer, "JPEG", quality=90, progressive=progressive
    )
    return buffer.getvalue()


def test_counts_the_scans_of_real_encoders() -> None:
    assert count_jpeg_scans(_jpeg(progressive=False)) == 1
    assert count_jpeg_scans(_jpeg(progressive=True)) == 10  # libjpeg's progression


def test_counts_repeated_scans_and_stops_early() -> None:
    data = repeated_scan_jpeg(200, 100, 500)
    assert count_jpeg_scans(data) == 510
    assert count_jpeg_scans(data, stop_after=100) == 101


def test_stops_at_the_first_end_of_image() -> None:
    # Whatever follows EOI (an appended file, a gain map) is not the image's scans.
    data = _jpeg(progressive=True)
    assert count_jpeg_scans(data + repeated_scan_jpeg(50, 50, 300)) == 10


def test_truncated_or_garbage_input_ends_the_count() -> None:
    data = repeated_scan_jpeg(100, 100, 50)
    assert count_jpeg_scans(data[: len(data) // 2]) <= 60
    assert count_jpeg_scans(b"\xff\xd8\xff") == 0
    assert count_jpeg_scans(b"\xff\xd8\xff\xda\x00") == 0
    assert count_jpeg_scans(b"\xff\xd8" + b"\xff" * 1000) == 0


def test_probe_refuses_too_many_scans_fast() -> None:
    # 7000x7000 with 3000 repeated scans: ~0.5 MB, ~2 minutes of Pillow decoding.
    data = repeated_scan_jpeg(7000, 7000, 3000)
    started = time.monotonic()
    with pytest.raises(ImageRejected) as caught:
        probe_image(data, limits=ImageLimits())
    assert time.monotonic() - started < 2
    assert caught.value.code == "too_many_scans"
    assert "100 scans" in caught.value.message


def test_probe_of_a_file_refuses_too_many_scans() -> None:
    with tempfile.TemporaryFile() as spooled:
        spooled.write(repeated_scan_jpeg(300, 200, 200))
        spooled.flush()
        with pytest.raises(ImageRejected) as caught:
            probe_file(spooled.fileno(), limits=ImageLimits())
    assert caught.value.code == "too_many_scans"


def test_the_limit_is_a_setting_and_real_photos_pass() -> None:
    data = repeated_scan_jpeg(300, 200, 20)
    assert probe_image(data, limits=ImageLimits(max_jpeg_scans=30)).width == 300
    with pytest.raises(ImageRejected):
        probe_image(data, limits=ImageLimits(max_jpeg_scans=29))
    assert probe_image(_jpeg(progressive=True), limits=ImageLimits()).height == 48
