"""The engine around the operations: deadline, memory budget, frames, shrink-on-load order."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest
import pyvips
from PIL import Image

from imageproc.operations import ProcessingError, run_pipeline
from pipeline import ImageLimits, parse_pipeline


def _png(width: int, height: int) -> bytes:
    return bytes(pyvips.Image.gaussnoise(width, height).cast("uchar").pngsave_buffer(compression=1))


def test_deadline_stops_libvips_mid_work() -> None:
    # Upscaling to ~36 MP and encoding PNG takes far longer than 50 ms.
    ops = parse_pipeline([{"op": "thumbnail", "width": 6000, "height": 6000, "upscale": True}])
    with pytest.raises(ProcessingError) as caught:
        run_pipeline(_png(2000, 2000), ops, limits=ImageLimits(), timeout=0.05)
    assert caught.value.code == "timeout"
    assert "0.05 s time limit" in caught.value.message


def test_a_pipeline_within_its_deadline_succeeds() -> None:
    ops = parse_pipeline([{"op": "thumbnail", "width": 100}])
    result = run_pipeline(_png(400, 300), ops, limits=ImageLimits(), timeout=30)
    assert (result.info.width, result.info.height) == (100, 75)


def test_animation_keeps_its_frames_as_gif_and_gives_the_first_as_png() -> None:
    frames = [Image.new("RGB", (40, 20), (n * 50, 0, 0)) for n in range(4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    gif = buffer.getvalue()
    animated = run_pipeline(
        gif, parse_pipeline([{"op": "thumbnail", "width": 20}]), limits=ImageLimits()
    )
    out = pyvips.Image.new_from_buffer(animated.data, "", n=-1)
    assert (animated.info.pages, out.get("n-pages"), out.get("page-height"), out.width) == (
        4,
        4,
        10,
        20,
    )
    assert list(out.get("delay")) == [80] * 4
    still = run_pipeline(
        gif, parse_pipeline([{"op": "convert", "format": "png"}]), limits=ImageLimits()
    )
    first = Image.open(io.BytesIO(still.data))
    assert (still.info.pages, first.size) == (1, (40, 20))


def test_frames_count_towards_the_pixel_limit() -> None:
    frames = [Image.new("RGB", (10, 10), (n, 0, 0)) for n in range(1, 6)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(ProcessingError) as caught:
        run_pipeline(buffer.getvalue(), (), limits=ImageLimits(max_pixels=400))
    assert caught.value.code == "too_many_pixels"


def test_save_time_operations_before_a_thumbnail_do_not_change_the_result() -> None:
    data = _png(800, 600)
    first = run_pipeline(
        data,
        parse_pipeline([{"op": "convert", "format": "webp"}, {"op": "thumbnail", "width": 64}]),
        limits=ImageLimits(),
    )
    second = run_pipeline(
        data,
        parse_pipeline([{"op": "thumbnail", "width": 64}, {"op": "convert", "format": "webp"}]),
        limits=ImageLimits(),
    )
    assert first.data == second.data
    assert [step.op for step in first.steps] == ["thumbnail", "convert"]


def test_memory_budget_fails_the_job_not_the_worker() -> None:
    # In a child process: the ceiling is process-wide and must not touch the test runner.
    script = textwrap.dedent(
        """
        import resource, sys
        import pyvips
        from imageproc.operations import ProcessingError, run_pipeline
        from pipeline import ImageLimits, parse_pipeline
        data = pyvips.Image.gaussnoise(6000, 6000).cast("uchar").pngsave_buffer(compression=1)
        with open("/proc/self/status") as status:
            vm = next(int(line.split()[1]) for line in status if line.startswith("VmSize"))
        limit = (vm + 96 * 1024) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            run_pipeline(data, parse_pipeline([{"op": "dither"}]), limits=ImageLimits())
        except ProcessingError as exc:
            print(exc.code)
        small = pyvips.Image.black(50, 50).pngsave_buffer()
        print(run_pipeline(small, (), limits=ImageLimits()).info.width)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["memory_budget_exceeded", "50"], result.stderr[-2000:]


def test_a_whole_image_dither_lets_the_decoder_go_before_it_holds_the_image() -> None:
    """A progressive JPEG's decoder holds every DCT coefficient until it is freed (24 MP,
    4:2:0: ~72 MB); Floyd-Steinberg holds the grey image a few times over. The engine
    computes the grey image into memory and lets the decoder go first, so the two do not
    add up."""
    script = textwrap.dedent(
        """
        import pyvips
        from imageproc.operations import run_pipeline
        from pipeline import ImageLimits, harden_vips, parse_pipeline

        def peak_mb(reset=False):
            if reset:  # the peak so far (making the test image) is not what is measured
                with open("/proc/self/clear_refs", "w") as clear:
                    clear.write("5")
            with open("/proc/self/status") as status:
                return next(int(l.split()[1]) for l in status if l.startswith("VmHWM")) / 1024

        from imageproc._worker import _Heap

        _Heap()  # a worker's allocator: large blocks go back to the system when freed
        harden_vips()
        pyvips.concurrency_set(1)
        # Content does not change what the decoder holds; Q85 subsamples chroma (4:2:0).
        grey = pyvips.Image.xyz(6000, 4000)[0].cast("uchar")
        data = grey.bandjoin([grey, grey]).jpegsave_buffer(Q=85, interlace=True)
        ops = parse_pipeline([{"op": "dither", "method": "floyd-steinberg"}])
        before = peak_mb(reset=True)
        decode = pyvips.Image.new_from_buffer(data, "", access="sequential")
        decode.avg()
        del decode
        decoded = peak_mb() - before
        before = peak_mb(reset=True)
        result = run_pipeline(data, ops, limits=ImageLimits())
        print(round(decoded), round(peak_mb() - before), result.info.width)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    decode_mb, dither_mb, width = map(int, result.stdout.split())
    assert width == 6000
    assert decode_mb > 60, "the decoder holds the coefficients (else this shows nothing)"
    # The dither's own copies of the 24 MB grey image come on top: ~30 MB (they came on top
    # of the decoder's coefficients too before, ~75 MB over the decode's peak).
    assert dither_mb < decode_mb + 50, (decode_mb, dither_mb)
