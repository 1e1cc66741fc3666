"""upload: the public face of imagemesh on port 8000 — the HTML form and the JSON API.

Validates each upload before storing anything (size while streaming, pipeline against the
catalogue, type by content, pixel count from the header), stores the input in the S3
input bucket under its SHA-256, records the job with provenancedb (RPC
`provenancedb.record`), then publishes `image.uploaded`.
Answers job status from provenancedb (RPC `provenancedb.job-status`) and serves results
from the S3 output bucket. Consumes no queue.
"""
