"""The RPC endpoint: bytes + pipeline in, bytes + metadata out."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import structlog

from messaging import RpcError, RpcMessage
from pipeline import ImageLimits, PipelineError, parse_pipeline

from .operations import PipelineResult, ProcessingError, run_pipeline

log = structlog.get_logger("imageproc")


class ImageProcessor:
    """Runs pipelines in a thread pool so the event loop never blocks on pyvips."""

    def __init__(
        self, pool: ThreadPoolExecutor, *, limits: ImageLimits, max_ops: int, max_output_bytes: int
    ) -> None:
        self._pool = pool
        self._limits = limits
        self._max_ops = max_ops
        self._max_output_bytes = max_output_bytes

    async def on_run(self, request: RpcMessage) -> RpcMessage:
        # Never trust the message: the pipeline and the image are checked again here.
        try:
            ops = parse_pipeline(request.meta.get("pipeline", []), max_ops=self._max_ops)
        except PipelineError as exc:
            raise RpcError("invalid_pipeline", str(exc)) from exc
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self._pool, lambda: run_pipeline(request.payload, ops, limits=self._limits)
            )
        except ProcessingError as exc:
            raise RpcError(exc.code, exc.message) from exc
        if len(result.data) > self._max_output_bytes:
            raise RpcError(
                "output_too_large",
                f"output of {len(result.data)} bytes exceeds the {self._max_output_bytes} byte "
                "message limit",
            )
        log.info(
            "pipeline_done", ops=len(ops), bytes_in=len(request.payload), bytes_out=len(result.data)
        )
        return RpcMessage(_describe(result), result.data)


def _describe(result: PipelineResult) -> dict[str, Any]:
    return {
        "format": result.info.format.value,
        "content_type": result.content_type,
        "width": result.info.width,
        "height": result.info.height,
        "bytes": len(result.data),
        "steps": [asdict(step) for step in result.steps],
        "encode_ms": result.encode_ms,
    }
