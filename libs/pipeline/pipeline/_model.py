from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class OpModel(BaseModel):
    """Base of every operation's parameters. The docstring is the description clients see."""

    # Strict everywhere: pipelines arrive as JSON, where "100" or true is never a width.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    op: str
    """The operation's name; each subclass narrows it to a Literal."""
