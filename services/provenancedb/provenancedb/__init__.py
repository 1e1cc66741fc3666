"""provenancedb: the audit trail. The only service with CouchDB credentials: its own user,
which may only create event documents (never change one); `python -m provenancedb.migrate`
provisions CouchDB as the admin (see `store.py`).

Consumes: every event on the events and provenance exchanges (queue
`provenancedb.events`) and writes each as one CouchDB document whose `_id` is the event
id, so a redelivery is a no-op.
Serves RPC: `provenancedb.record` (record an event synchronously; upload uses it before
answering 202) and `provenancedb.job-status` (a job's status folded from its documents).
Publishes: nothing.
"""
