"""Names the whole mesh agrees on, written once: the services and a job's statuses.

Every service, the stack tool and the tests read them from here. This module imports
nothing, not even the standard library, on purpose: tools/stack runs with a bare
`python3` before the virtual environment exists and loads this file by its path
(`importlib.util.spec_from_file_location`), without importing the `messaging` package.
Keep it that way: plain literals only.

The client (clients/cli) is installed on its own, without the server libraries; it keeps
its own copy of the statuses, which tests/cli/test_statuses.py checks equal to these.
"""

SERVICES = ("upload", "imageproc_runner", "imageproc", "provenancedb")
"""Every service of the mesh: its broker user, its log name and its package name."""
UPLOAD, IMAGEPROC_RUNNER, IMAGEPROC, PROVENANCEDB = SERVICES

JOB_STATUSES = ("queued", "processing", "succeeded", "failed", "cancelled")
"""What a job's status may be, in the order a job goes through them (the last three are
alternatives: a job ends with one of them; `cancelled` when its owner cancelled it before
it finished)."""
QUEUED, PROCESSING, SUCCEEDED, FAILED, CANCELLED = JOB_STATUSES
FINAL_STATUSES = frozenset({SUCCEEDED, FAILED, CANCELLED})
"""A job with one of these statuses changes no more."""
STATUS_RANK = {QUEUED: 0, PROCESSING: 1, SUCCEEDED: 2, FAILED: 2, CANCELLED: 2}
"""How far a job has got: a status never goes back to a lower rank (the final ones are 2)."""
