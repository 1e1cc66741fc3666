from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._limits import ImageLimits
from ._parse import DEFAULT_MAX_OPS


class ImageRulesSettings(BaseSettings):
    """Limits on inputs and pipelines; upload and imageproc read the same variables."""

    model_config = SettingsConfigDict(extra="ignore")

    image_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    """Largest accepted input file; upload enforces it while streaming, imageproc again."""
    image_max_pixels: int = Field(default=50_000_000, ge=1)
    image_max_side: int = Field(default=20_000, ge=1)
    image_max_frames: int = Field(default=100, ge=1)
    image_max_jpeg_scans: int = Field(default=100, ge=1)
    """Scans a progressive JPEG may have (each is decoded in full; real ones have ~10)."""
    pipeline_max_ops: int = Field(default=DEFAULT_MAX_OPS, ge=1, le=100)

    def image_limits(self) -> ImageLimits:
        return ImageLimits(
            max_pixels=self.image_max_pixels,
            max_side=self.image_max_side,
            max_frames=self.image_max_frames,
            max_jpeg_scans=self.image_max_jpeg_scans,
        )
