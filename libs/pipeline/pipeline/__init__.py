"""The operation catalogue and the input rules, shared by upload and imageproc.

Pure library code: no I/O beyond reading image headers with pyvips. imageproc must
never trust a message, so it re-checks everything here that upload already checked.

- Catalogue: one frozen model per operation (``Thumbnail``, ``Grayscale``, ``Dither``,
  ``Convert``), the ``Operation`` union, ``parse_pipeline``, ``pipeline_to_json``,
  ``canonical_pipeline`` (defaults filled in: part of the runner's reuse key) and
  ``describe_operations`` for ``GET /api/v1/operations``.
- Input rules: the ``ImageFormat`` allow-list (plus the input-only ``ExtendedFormat``,
  read by Pillow: ``accepted_formats`` names them all), ``sniff_format`` (magic bytes),
  ``probe_image`` (header only, ``ImageLimits`` checked before any decode) and
  ``harden_vips`` to run once at process start.
"""

from typing import TYPE_CHECKING, Any

from ._catalogue import (
    OPERATION_MODELS,
    Convert,
    Dither,
    Grayscale,
    Operation,
    Thumbnail,
    describe_operations,
)
from ._errors import ImageRejected, PipelineError
from ._formats import (
    SNIFF_BYTES,
    ExtendedFormat,
    ImageFormat,
    InputFormat,
    accepted_format_names,
    accepted_formats,
    sniff_format,
)
from ._limits import ImageInfo, ImageLimits, check_limits, unsupported_message
from ._parse import DEFAULT_MAX_OPS, canonical_pipeline, parse_pipeline, pipeline_to_json
from ._settings import ImageRulesSettings

if TYPE_CHECKING:
    from ._probe import harden_vips, probe_file, probe_image

_PROBES = frozenset({"harden_vips", "probe_file", "probe_image"})
"""Loaded on first use: they import pyvips and Pillow (~16 MB of a process), which the
services that only parse pipelines and check limits (the runner, imageproc's parent) never
need."""


def __getattr__(name: str) -> Any:
    if name in _PROBES:
        from . import _probe

        return getattr(_probe, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_OPS",
    "OPERATION_MODELS",
    "SNIFF_BYTES",
    "Convert",
    "Dither",
    "ExtendedFormat",
    "Grayscale",
    "ImageFormat",
    "ImageInfo",
    "ImageLimits",
    "ImageRejected",
    "ImageRulesSettings",
    "InputFormat",
    "Operation",
    "PipelineError",
    "Thumbnail",
    "accepted_format_names",
    "accepted_formats",
    "canonical_pipeline",
    "check_limits",
    "describe_operations",
    "harden_vips",
    "parse_pipeline",
    "pipeline_to_json",
    "probe_file",
    "probe_image",
    "sniff_format",
    "unsupported_message",
]
