"""floor.md: the stand-ins' floor and the bounds it puts on the overhead and throughput."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import floor


def test_the_report_bounds_both_targets_by_the_floor(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x" * 2**20)
    text = floor.report(s3=0.018, couchdb=0.004, raw=0.066, names=["a.jpg"], folder=tmp_path)
    expected = (
        "| **the stand-ins' floor** | | **22.0** |",
        "median 1.00 MB",
        "at most 28.0 ms per job left",  # 50 - 22
        # 0.7 = 66 / (66 + x): x = 28.3 ms for everything beyond the work, 22 of it the floor
        "within 28.3 ms per job",
        "leaving 6.3 ms",
        "could reach 0.75x",  # 66 / (66 + 22)
    )
    assert [fragment for fragment in expected if fragment not in text] == []


def test_an_event_document_has_the_size_of_a_provenance_event() -> None:
    event = floor._event(3)
    assert len(json.dumps(event)) == floor.EVENT_BYTES
    assert event["job"] == "job-3"
    assert floor._event(3)["_id"] != event["_id"]
