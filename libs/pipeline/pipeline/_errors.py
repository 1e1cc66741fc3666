"""Exceptions raised by the catalogue and the input rules.

ValueError
├── PipelineError   a pipeline does not match the catalogue (HTTP 400 upstream)
└── ImageRejected   an image breaks the input rules; ``code`` says which one
                    (``unsupported_type`` -> 415, the others -> 422 upstream)
"""

from __future__ import annotations

__all__ = ["ImageRejected", "PipelineError"]


class PipelineError(ValueError):
    """The pipeline is malformed; the message names the operation and parameter."""


class ImageRejected(ValueError):
    """The image is not accepted; ``code`` is machine-readable, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ImageRejected(code={self.code!r}, message={self.message!r})"
