"""The RPC endpoint: bytes + pipeline in, bytes + metadata out."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import structlog
from prometheus_client import Histogram

from messaging import RpcCall, RpcError
from messaging.contracts import RunReply, RunRequest
from messaging.events import StepTiming
from messaging.thumbnails import THUMBNAIL_PIPELINE
from pipeline import ImageLimits, PipelineError, parse_pipeline

from .results import PipelineResult, ProcessingError
from .stops import Stops
from .workers import WorkerPool

log = structlog.get_logger("imageproc")

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
PIPELINE_SECONDS = Histogram(
    "imagemesh_imageproc_pipeline_seconds",
    "Whole pipelines (probe, operations, encode) in the worker processes, by outcome: ok, or "
    "the ProcessingError code (undecodable, timeout, memory_budget_exceeded, worker_crashed, "
    "...), cancelled (its job was cancelled: stopped), or internal.",
    ["outcome"],
    buckets=_BUCKETS,
)
OPERATION_SECONDS = Histogram(
    "imagemesh_imageproc_operation_seconds",
    "Each applied operation, by catalogue name. libvips is lazy: most pixel work of an "
    "operation happens while encoding (imagemesh_imageproc_encode_seconds).",
    ["op"],
    buckets=_BUCKETS,
)
ENCODE_SECONDS = Histogram(
    "imagemesh_imageproc_encode_seconds",
    "Encoding the output (where libvips computes the pixels), by output format.",
    ["format"],
    buckets=_BUCKETS,
)


@dataclass(frozen=True, slots=True)
class Rules:
    """What imageproc accepts and produces, whatever upload already checked."""

    limits: ImageLimits
    max_ops: int
    max_input_bytes: int
    max_output_bytes: int


class ImageProcessor:
    """Runs pipelines in killable worker processes (``workers``): the event loop never
    blocks on pyvips, no decoder outlives the deadline or the memory ceiling, and a
    cancelled job's pipeline stops (``stops``)."""

    def __init__(self, pool: WorkerPool, rules: Rules, stops: Stops | None = None) -> None:
        self._pool = pool
        self._rules = rules
        self._stops = stops or Stops()
        self._thumbnail = tuple(parse_pipeline(THUMBNAIL_PIPELINE))

    async def on_run(self, request: RunRequest, call: RpcCall) -> tuple[RunReply, bytes]:
        # Never trust the message: size, pipeline and image are checked again here.
        rules = self._rules
        if len(call.payload) > rules.max_input_bytes:
            raise RpcError(
                "too_large",
                f"input of {len(call.payload)} bytes exceeds the limit of "
                f"{rules.max_input_bytes} bytes",
            )
        try:
            ops = parse_pipeline(request.pipeline, max_ops=rules.max_ops)
        except PipelineError as exc:
            raise RpcError("invalid_pipeline", str(exc)) from exc
        started, outcome = time.perf_counter(), "internal"
        try:
            thumbnail = self._thumbnail if request.thumbnail else ()
            result = await self._stops.run(
                call.job_id,
                self._pool.run(call.payload, ops, limits=rules.limits, thumbnail=thumbnail),
            )
            outcome = "ok"
        except ProcessingError as exc:
            outcome = exc.code
            raise RpcError(exc.code, exc.message) from exc
        except RpcError as exc:  # stopped: its job was cancelled
            outcome = exc.code
            raise
        finally:
            PIPELINE_SECONDS.labels(outcome).observe(time.perf_counter() - started)
        _observe_steps(result)
        if len(result.data) + len(result.thumbnail) > rules.max_output_bytes:
            result = replace(result, thumbnail=b"")  # the output alone may still fit
        if len(result.data) > rules.max_output_bytes:
            raise RpcError(
                "output_too_large",
                f"output of {len(result.data)} bytes exceeds the limit of "
                f"{rules.max_output_bytes} bytes",
            )
        log.info(
            "pipeline_done",
            ops=len(ops),
            bytes_in=len(call.payload),
            bytes_out=len(result.data),
            thumbnail_bytes=len(result.thumbnail),
        )
        # The steps go back to the runner, which records them in `image.processed`:
        # imageproc publishes nothing (one event fewer per operation).
        return _describe(result, self._pool.engine), result.data + result.thumbnail


def _observe_steps(result: PipelineResult) -> None:
    for step in result.steps:
        OPERATION_SECONDS.labels(step.op).observe(step.duration_ms / 1000)
    ENCODE_SECONDS.labels(result.info.format.value).observe(result.encode_ms / 1000)


def _describe(result: PipelineResult, engine: str) -> RunReply:
    return RunReply(
        format=result.info.format.value,
        content_type=result.content_type,
        width=result.info.width,
        height=result.info.height,
        bytes=len(result.data),
        steps=[
            StepTiming(op=step.op, params=step.params, duration_ms=step.duration_ms, info=step.info)
            for step in result.steps
        ],
        encode_ms=result.encode_ms,
        input_info=result.input_info,
        output_info=result.output_info,
        # What made these bytes: the runner's reuse key names it (`engine.py`).
        engine=engine,
        thumbnail_bytes=len(result.thumbnail),
    )
