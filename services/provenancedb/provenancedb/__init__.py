"""provenancedb: the audit trail. The only service with CouchDB credentials: its own user,
which may only create event documents (never change one) and keep each job's summary;
`python -m provenancedb.migrate` provisions CouchDB as the admin (see `design.py`).

Consumes: every event on the events and provenance exchanges (queue
`provenancedb.events`) and writes each as one CouchDB document whose `_id` is the event
id, so a redelivery is a no-op; a status event also updates its job's summary
(`summaries.py`), in the same request.
Serves RPC (all called by upload; requests in `messaging.queries`):
`provenancedb.record` (record events synchronously; upload uses it before answering 202),
`provenancedb.job-status` (a job's status and owner folded from its documents),
`provenancedb.job-provenance` (its PROV-JSON), `provenancedb.lineage` (an image's
ancestors and descendants, of one owner's jobs or everyone's), `provenancedb.jobs`
(history: a page of one owner's or everyone's jobs, by status; one index read) and
`provenancedb.job-counts` (an owner's jobs per status, for the cap on waiting jobs).
Publishes: nothing.
"""
