"""imageproc_runner: drives each job.

Consumes: `image.uploaded` (queue `imageproc_runner.image-uploaded`).
Does: fetches the input from the S3 input bucket, asks imageproc to run the pipeline
(RPC `imageproc.run`), stores the output in the S3 output bucket under `<job id>/output.<ext>`.
Publishes: `job.processing-started` (provenance), then `image.processed` or `job.failed`;
or, for work already done (same input bytes, canonical pipeline and engine as a job that
succeeded), only `image.reused`, with that job's output (`reuse.py`, RPC `imageproc.engine`).
Follow-up event ids derive from the upload event's id, so a redelivery publishes the same
events and writes no second provenance document.
"""
