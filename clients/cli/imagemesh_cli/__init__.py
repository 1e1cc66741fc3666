"""imagemesh's command line client: talks to the public HTTP API only.

    imagemesh submit FILE... [--op NAME:key=value,...]... [--wait] [--output DIR] [--json]
    imagemesh status ID [--json]
    imagemesh history [--status S] [--limit N] [--json]
    imagemesh download ID... [--output PATH] [--zip] [--force] [--json]

Modules: `api` (the async HTTP client and its errors), `sse` (the server-sent events
decoder), `follow` (a job's updates: its event stream, else polling), `pipeline` (`--op`
parsing and checking against the operation catalogue's JSON Schemas), `render` (human and
JSON output), `commands` (the commands and their exit codes), `download` (saving
results, one or a zip), `statuses` (a job's statuses), `__main__` (argparse)."""

from __future__ import annotations

from .api import ApiClient, ApiError, Disconnected, ImagemeshError, Unavailable, Unreachable
from .follow import StatusChanged, StepRecorded, Update, follow
from .pipeline import (
    OpSpec,
    PipelineError,
    build_pipeline,
    load_pipeline,
    parse_op,
    validate_pipeline,
)
from .sse import ServerSentEvent, SSEDecoder

__all__ = [
    "ApiClient",
    "ApiError",
    "Disconnected",
    "ImagemeshError",
    "OpSpec",
    "PipelineError",
    "SSEDecoder",
    "ServerSentEvent",
    "StatusChanged",
    "StepRecorded",
    "Unavailable",
    "Unreachable",
    "Update",
    "build_pipeline",
    "follow",
    "load_pipeline",
    "parse_op",
    "validate_pipeline",
]
