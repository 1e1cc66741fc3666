"""The PROV-JSON vocabulary every event's view shares: prefixes, identifiers and literals
(`provview.py` builds the views, `operations.py` a processed job's operations)."""

from __future__ import annotations

import json
from typing import Any

PROV_PREFIXES = {
    "imagemesh": "urn:imagemesh:",
    "sha256": "urn:sha256:",
}


def entity_id(sha256: str) -> str:
    # Identified by content, so the same bytes are one entity across jobs (lineage).
    return f"sha256:{sha256}"


def activity_id(event_id: str) -> str:
    return f"imagemesh:event/{event_id}"


def qualified_name(name: str) -> dict[str, str]:
    """A PROV type or role: a qualified name, not a string that happens to contain a colon."""
    return {"$": name, "type": "prov:QUALIFIED_NAME"}


def json_literal(value: Any) -> dict[str, str]:
    """A structured value as a PROV-JSON typed literal: PROV attribute values are literals,
    so a dict or list travels as its JSON text."""
    return {"$": json.dumps(value, sort_keys=True, separators=(",", ":")), "type": "imagemesh:json"}
