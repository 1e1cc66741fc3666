"""Operations on how the result is saved: format, encoder options, metadata."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._model import OpModel


class Convert(OpModel):
    """Save the result in another format."""

    op: Literal["convert"] = "convert"
    format: Literal["jpeg", "png", "webp"] = Field(description="Output format.")
    quality: int = Field(
        default=80, ge=1, le=100, description="Encoder quality (JPEG and WebP only)."
    )


OUTPUT_OPS = (Convert,)
