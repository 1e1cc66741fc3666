"""Jobs admitted against a memory budget by what their header says they will hold.

Most jobs are small, but a few inputs make a decoder hold a lot whatever the pipeline: a
24 MP progressive JPEG keeps ~72 MB of DCT coefficients until its last scan. Two of those
in parallel would add up. Before a job takes a slot, the parent estimates what it will
hold (``estimate``, from the header alone, read in pure Python by ``_header``) and waits
until the jobs already running leave room for it in the budget (``Budget``): big jobs
then run one after the other, small ones side by side. A job bigger than the whole budget
still runs, alone. Jobs are admitted in arrival order, so a big one is never starved by
small ones behind it.

The estimate is not a limit: each worker's memory ceiling (``workers``) still kills a
job that holds more than its share.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from pipeline import Dither, Operation, Thumbnail

from ._header import Header, read_header

__all__ = ["Budget", "estimate"]

FIXED_BYTES = 16 * 2**20
"""Any job's own working set besides its input: libvips' buffers, a scaled JPEG decode,
the output (measured: 16-33 MB past the decoder's for the 24 MP photo's pipelines)."""
MATERIALISED_BYTES_PER_PIXEL = 4
"""Floyd-Steinberg and palette dithering hold the image whole, a byte or more per pixel
a few times over (grey, Pillow's result, its unpacked copy)."""


def estimate(data: bytes, ops: Sequence[Operation], *, unknown: int) -> int:
    """Bytes the job is expected to hold at its peak beyond the worker's baseline:
    ``unknown`` for a header this cannot read (TIFF, AVIF, damaged)."""
    header = read_header(data)
    if header is None:
        return unknown
    materialised = _materialised(header, ops)
    # The engine lets the decoder go before a dither holds the image (`operations.
    # _materialise`): its coefficients meet the grey image it is decoded into, not the
    # dither's copies of it.
    grey = materialised // MATERIALISED_BYTES_PER_PIXEL
    return FIXED_BYTES + 2 * len(data) + max(header.held_bytes + grey, materialised)


def _materialised(header: Header, ops: Sequence[Operation]) -> int:
    """What the pipeline's own steps hold whole: the largest dithered image."""
    pixels, held = header.pixels, 0
    for op in ops:
        if isinstance(op, Thumbnail):
            pixels = _thumbnail_pixels(header, op, pixels)
        elif isinstance(op, Dither) and op.method != "bayer":
            held = max(held, MATERIALISED_BYTES_PER_PIXEL * pixels)
    return held


def _thumbnail_pixels(header: Header, op: Thumbnail, pixels: int) -> int:
    if op.width and op.height:
        box = op.width * op.height
    else:
        side, full = (op.width, header.width) if op.width else (op.height, header.height)
        box = int(pixels * (side or full) ** 2 / full**2)
    return box if op.upscale else min(box, pixels)


class Budget:
    """Bytes shared by the jobs running; ``total`` 0 admits every job at once."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.in_use = 0
        self.running = 0
        self.waited = 0
        """Jobs that had to wait for room (for tests and diagnostics)."""
        self._queue: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, amount: int) -> None:
        """Wait until ``amount`` fits beside the jobs running (or none runs)."""
        if not self._queue and self._fits(amount):
            self._take(amount)
            return
        entry = (amount, asyncio.get_running_loop().create_future())
        self._queue.append(entry)
        self.waited += 1
        try:
            await entry[1]
        except asyncio.CancelledError:
            if entry[1].done() and not entry[1].cancelled():
                self.release(amount)  # admitted just as it was cancelled
            else:
                if entry in self._queue:
                    self._queue.remove(entry)
                self._admit()  # it may have held up the ones behind it
            raise

    def release(self, amount: int) -> None:
        self.in_use -= amount
        self.running -= 1
        self._admit()

    def _fits(self, amount: int) -> bool:
        return not self.total or not self.running or self.in_use + amount <= self.total

    def _take(self, amount: int) -> None:
        self.in_use += amount
        self.running += 1

    def _admit(self) -> None:
        """Admit waiting jobs in arrival order while the first one fits."""
        while self._queue and self._fits(self._queue[0][0]):
            amount, future = self._queue.popleft()
            if future.done():  # cancelled while it waited
                continue
            self._take(amount)
            future.set_result(None)
