from datetime import UTC, datetime

import pytest

from messaging import Envelope, EnvelopeError, follow_up_id


def _envelope() -> Envelope:
    return Envelope(
        id="e1",
        type="image.uploaded",
        source="/imagemesh/upload",
        time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        subject="job-1",
        correlation_id="job-1",
        causation_id="c0",
        agent_version="1.2.3",
        agent_host="h",
    )


def test_message_carries_cloudevents_attributes_and_persistence() -> None:
    message = _envelope().to_message(b"{}")
    assert message.message_id == "e1"
    assert message.type == "image.uploaded"
    assert message.correlation_id == "job-1"
    assert message.delivery_mode == 2
    assert message.content_type == "application/json"
    assert message.headers["ce-specversion"] == "1.0"
    assert message.headers["ce-causationid"] == "c0"
    assert message.headers["ce-time"] == "2026-01-02T03:04:05+00:00"


def test_dict_round_trip() -> None:
    envelope = _envelope()
    assert Envelope.from_dict(envelope.as_dict()) == envelope


def test_from_dict_rejects_missing_attributes() -> None:
    with pytest.raises(EnvelopeError):
        Envelope.from_dict({"id": "x"})


def test_follow_up_ids_are_deterministic_and_distinct() -> None:
    first = follow_up_id("cause", "image.processed")
    assert first == follow_up_id("cause", "image.processed")
    assert first != follow_up_id("cause", "job.failed")
    assert first != follow_up_id("other", "image.processed")
    assert first != follow_up_id("cause", "image.processed", key="2")
