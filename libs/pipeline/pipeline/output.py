"""Operations on how the result is saved: format, encoder options, metadata."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from ._model import OpModel

OutputFormat = Literal["jpeg", "png", "webp", "avif", "tiff", "gif"]
Metadata = Literal["icc", "exif", "xmp", "iptc"]

_LOSSLESS_FORMATS = ("png", "webp", "avif", "tiff")
_PROGRESSIVE_FORMATS = ("jpeg", "png", "gif")


def _only_for(flag: str, formats: tuple[str, ...]) -> dict[str, Any]:
    """JSON Schema: ``flag`` may be true only when ``format`` is one of ``formats``."""
    return {
        "if": {"properties": {flag: {"const": True}}, "required": [flag]},
        "then": {"properties": {"format": {"enum": list(formats)}}},
    }


class Convert(OpModel):
    """Save the result in another format, with encoder options.

    `quality` is used by the lossy encoders: JPEG, WebP and AVIF. PNG, GIF and TIFF
    (deflate-compressed) ignore it. `progressive` writes a progressive JPEG or an
    interlaced PNG or GIF; the other formats have no such mode. `lossless` asks WebP and
    AVIF for exact pixels; PNG and TIFF are always lossless and accept it; JPEG and GIF
    cannot be lossless and refuse it. Without a convert the input's format is kept.
    """

    # The format rules of the validator below, for clients that check against the schema.
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                _only_for("lossless", _LOSSLESS_FORMATS),
                _only_for("progressive", _PROGRESSIVE_FORMATS),
            ]
        }
    )

    op: Literal["convert"] = "convert"
    format: OutputFormat = Field(description="Output format.")
    quality: int = Field(
        default=80,
        ge=1,
        le=100,
        description="Encoder quality (JPEG, WebP and AVIF; ignored when lossless).",
    )
    progressive: bool = Field(
        default=False, description="Progressive JPEG, or interlaced PNG or GIF."
    )
    lossless: bool = Field(
        default=False,
        description="Exact pixels (WebP, AVIF); PNG and TIFF always are; not for JPEG or GIF.",
    )

    @model_validator(mode="after")
    def _options_fit_the_format(self) -> Self:
        if self.lossless and self.format not in _LOSSLESS_FORMATS:
            raise ValueError(
                f"lossless is not available for {self.format} "
                f"(formats with it: {', '.join(_LOSSLESS_FORMATS)})"
            )
        if self.progressive and self.format not in _PROGRESSIVE_FORMATS:
            raise ValueError(
                f"progressive is not available for {self.format} "
                f"(formats with it: {', '.join(_PROGRESSIVE_FORMATS)})"
            )
        return self


def _unique(items: list[Metadata]) -> list[Metadata]:
    if len(set(items)) != len(items):
        raise ValueError("keep must not list the same metadata twice")
    return items


class Strip(OpModel):
    """Choose which metadata the saved image keeps; without this operation it keeps none.

    `keep` lists what to keep: "icc" (colour profile), "exif", "xmp", "iptc"; an empty
    list removes everything. GPS location is removed even from kept EXIF and XMP, and
    the EXIF orientation is reset because the pixels are already upright. Without "icc",
    colours are converted to sRGB and no profile is embedded. With "icc", an RGB or grey
    image keeps its profile and the pixel values it describes (no conversion, so wide-gamut
    colours survive); other images (e.g. CMYK) are converted to sRGB and carry the sRGB
    profile, or to plain grey. What a format can hold: JPEG all four; PNG, WebP and AVIF
    icc, exif and xmp; TIFF icc, xmp and iptc; GIF none.
    """

    op: Literal["strip"] = "strip"
    keep: Annotated[list[Metadata], AfterValidator(_unique)] = Field(
        default_factory=list,
        description="Metadata to keep; empty removes all.",
        json_schema_extra={"default": [], "uniqueItems": True},
    )


class Info(OpModel):
    """Record the image's properties at this point of the pipeline; the image is unchanged.

    The step's record gets the format, size, bands, colour space, alpha, orientation,
    colour profile presence and an EXIF summary (camera, date, exposure; whether GPS
    data is present, never the location).
    """

    op: Literal["info"] = "info"


OUTPUT_OPS = (Convert, Strip, Info)
