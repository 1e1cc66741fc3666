"""provenancedb's PROV-JSON survives the W3C reference model: read with the `prov` package,
written back by it and read again, every document says what provenancedb wrote.

test_documents.py checks what each record means; this checks that nothing is lost or
changed by a PROV tool reading it (a value that needs a datatype it does not carry, a time
it reads otherwise, a relation it drops). No server: the documents are built in memory
from the same trails as test_documents.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from prov.model import ProvDocument

from provenancedb.documents import to_document
from provenancedb.provview import PROV_SECTIONS, merge_prov
from tests.provenancedb.test_documents import (
    CASES,
    INPUT,
    JOB,
    LEGACY,
    REUSED,
    T0,
    TRAIL,
    Step,
    failed_trail,
    valid_prov,
)

ELEMENTS = ("entity", "activity", "agent")
TIMES = {"prov:startTime", "prov:endTime", "prov:time"}
QNAME_TYPES = {"prov:QUALIFIED_NAME", "xsd:QName"}
NUMBER_TYPES = {"xsd:int": int, "xsd:long": int, "xsd:double": float, "xsd:float": float}


def _plain(key: str, value: Any) -> Any:
    """One attribute value with the notation differences PROV-JSON allows taken out:
    numbers and qualified names with or without their datatype, a time's zone as `Z` or
    `+00:00`, one value or a list of them."""
    if isinstance(value, list):
        return sorted((_plain(key, item) for item in value), key=repr)
    if isinstance(value, dict) and "$" in value:
        kind, text = value.get("type"), value["$"]
        if kind in QNAME_TYPES:
            return ("qname", text)
        if kind in NUMBER_TYPES:
            return NUMBER_TYPES[kind](text)
        if kind == "xsd:string":
            return text
        return ("typed", text, kind)
    if key in TIMES and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def _record(attributes: dict[str, Any]) -> dict[str, Any]:
    return {key: _plain(key, value) for key, value in attributes.items()}


def normalised(document: dict[str, Any]) -> dict[str, Any]:
    """Elements by identifier; relations (blank nodes, whose identifiers a writer may
    rename, and group under one when they say the same) as the sorted list of what they
    say."""
    result: dict[str, Any] = {"prefix": document.get("prefix", {})}
    for section in PROV_SECTIONS:
        records = document.get(section, {})
        if section in ELEMENTS:
            result[section] = {name: _record(attrs) for name, attrs in records.items()}
        else:
            said = [each for value in records.values() for each in _listed(value)]
            result[section] = sorted((_record(attrs) for attrs in said), key=repr)
    return result


def _listed(value: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PROV-JSON gives records that share an identifier as a list."""
    return value if isinstance(value, list) else [value]


def round_trip(ours: dict[str, Any]) -> tuple[ProvDocument, dict[str, Any], ProvDocument]:
    """(read, as written back by prov, read again)."""
    read = valid_prov(ours)
    text = read.serialize(format="json")
    assert text is not None, "serialize() returns the text when given no destination"
    written: dict[str, Any] = json.loads(text)
    return read, written, ProvDocument.deserialize(content=json.dumps(written), format="json")


def _job(steps: list[Step]) -> dict[str, Any]:
    return merge_prov([to_document(envelope, event)["prov"] for envelope, event in steps])


JOBS = {
    "succeeded": lambda: _job(TRAIL),
    "recorded-before": lambda: _job(LEGACY),
    "failed": lambda: _job(failed_trail(JOB, INPUT, T0, "invalid_pipeline")),
    "reused-with-earlier": lambda: _job(TRAIL + REUSED),
}


@pytest.mark.parametrize("name", list(JOBS))
def test_a_jobs_document_reads_back_as_written(name: str) -> None:
    ours = JOBS[name]()
    read, written, read_again = round_trip(ours)

    assert read_again == read
    assert normalised(written) == normalised(ours)
    assert sum(len(ours.get(section, {})) for section in PROV_SECTIONS) > 5


@pytest.mark.parametrize("name", list(CASES))
def test_every_events_view_reads_back_as_written(name: str) -> None:
    (envelope, event), *_ = CASES[name]
    ours = to_document(envelope, event)["prov"]
    read, written, read_again = round_trip(ours)

    assert read_again == read
    assert normalised(written) == normalised(ours)


def test_the_comparison_sees_a_changed_value() -> None:
    """The control: normalising does not make different documents equal."""
    ours = JOBS["succeeded"]()
    _, written, _ = round_trip(ours)
    activity = next(iter(written["activity"].values()))
    moved = datetime.fromisoformat(activity["prov:startTime"]) + timedelta(milliseconds=1)
    activity["prov:startTime"] = moved.isoformat()
    assert normalised(written) != normalised(ours)
    del written["activity"][next(iter(written["activity"]))]
    assert set(normalised(written)["activity"]) < set(normalised(ours)["activity"])
