"""A job's statuses, as the public API gives them.

The client is installed on its own, without the server's libraries, so it keeps this copy;
tests/cli/test_contract.py holds it equal to the server's one source
(`messaging.constants`) and to the `status` of a job in the published OpenAPI document."""

JOB_STATUSES = ("queued", "processing", "succeeded", "failed", "cancelled")
"""In the order a job goes through them; it ends with one of the last three."""
QUEUED, PROCESSING, SUCCEEDED, FAILED, CANCELLED = JOB_STATUSES
FINAL_STATUSES = frozenset({SUCCEEDED, FAILED, CANCELLED})
"""A job with one of these statuses changes no more."""
