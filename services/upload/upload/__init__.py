"""upload: the public face of imagemesh on port 8000 — the HTML form and the JSON API.

Validates each upload before storing anything (size while streaming, pipeline against the
catalogue, type by content, pixel count from the header), stores the input in the S3
input bucket under its SHA-256, then publishes the intake (`upload.received`, naming the
stored input, then `image.uploaded`), each confirmed by the broker, before answering 202.
Answers job status from the events it follows live (`live.py`), else from provenancedb
(RPC `provenancedb.job-status`), and serves results from the S3 output bucket.
Consumes every job's end (`image.processed`, `image.reused`, `job.failed`,
`job.cancelled` on its work queue `upload.webhooks`) to POST it, signed, to the job's
`callback_url` when it has one, recording each attempt (`webhook.attempted`; `webhooks.py`).
"""
