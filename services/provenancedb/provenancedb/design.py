"""`_design/provenance` and `_security`: the views, the append-only validation function,
the Mango indexes and the security object that migrate installs and the gateway
(`store.py`; `couch.py` lists where CouchDB and PouchDB Server differ in requests) checks.

Least privilege. Three accounts (`settings.py`): the server admin only provisions
(`python -m provenancedb.migrate`), provenancedb writes as a plain user, the auditor reads.
The database's `_security` names the admin as its only admin and, as its members, the
writer (by name) and the role `auditor`: nobody else, anonymous or not, reads or writes it.
`_design/provenance` holds the views and a `validate_doc_update` that makes provenance
append-only for everyone but server admins: a document can only be created (never updated,
given a revision or deleted), only by the writer (by name), and only as an event document
(`type` and `time`, no attachments). The one exception is derived, not recorded: the
writer also creates and updates each job's summary (`job:<id>`, `summaries.py`), which
indexes jobs by owner and status; nobody deletes one. Server admins install it;
provenancedb only checks, at start and in `/readyz`, that the installed one is current
(`ProvenanceStore.ready`).

Security: measured on PouchDB Server 4.2 and pinned by `tests/security/test_couchdb.py`
(which runs on CouchDB 3 too); CouchDB 3's side as its documentation states it.

- Both enforce `_security` on documents, views, `_all_docs`, `_changes` and `_bulk_docs`
  (anonymous: 401; a user who is not a member: 401 on PouchDB Server, 403 on CouchDB 3),
  let only database admins write design documents and `_security`, and run
  `validate_doc_update` (403 with its reason) on PUT, POST, DELETE, `_bulk_docs` (also
  with `new_edits: false`) and attachments.
- A write without `_rev` to an existing document reaches the validation function on
  PouchDB Server (CouchDB 3 answers 409 before): the function lets it through so that the
  storage answers 409 there too, and a redelivered event stays a conflict.
- PouchDB Server lets a user give itself any role (its `_users/<own id>` route treats the
  user as an admin) and lets anyone sign up. So the writer is a name, not a role (a
  `provenance-writer` role would be self-granted), and migrate closes `_users` to
  non-admins on PouchDB Server (through its `_security`), so nobody can sign up and grant
  itself `auditor`. CouchDB 3's `_users` validation refuses self-granted roles.
- PouchDB Server does not enforce, where CouchDB 3 does:
  - `_security` on `_find`, `_explain` and `GET _index`: anyone, even anonymous, reads
    every document through `_find`;
  - `_security` on `POST _index`: anyone can add index design documents, and naming an
    existing one rewrites its `language` (provenancedb's readiness then reports the design
    document outdated until migrate runs again);
  - the security object itself: it is the local document `_local/_security`, which any
    member (writer or auditor) can overwrite, e.g. to make itself a database admin and then
    replace the design document, validation included.
  On the local stack (loopback only) these rules therefore hold against mistakes and
  against anyone who is not a member, not against a hostile member, nor against reading
  through `_find`. Deploy on CouchDB 3 (compose) for the real boundary.
"""

from __future__ import annotations

import json
from typing import Any

DESIGN = "provenance"
DESIGN_VIEWS: dict[str, dict[str, str]] = {
    # Timeline of a job: key [job_id, time], value the event type.
    "by_job": {
        "map": "function (doc) {"
        " if (doc.job_id && doc.time) { emit([doc.job_id, doc.time], doc.type); } }"
    },
    # Jobs by owner, status and creation, from the job summaries (`summaries.py`): key
    # [owner, status, created_at, job_id], where a null owner or status means "any"; each
    # summary is indexed under all four. Newest first with descending=true. The reduce
    # counts them: group_level=2 gives [owner, status] -> jobs.
    "jobs": {
        "map": "function (doc) { if (doc.kind === 'job' && typeof doc.owner === 'string') {"
        " var t = doc.created_at, j = doc.job;"
        " emit([doc.owner, doc.status, t, j], null); emit([doc.owner, null, t, j], null);"
        " emit([null, doc.status, t, j], null); emit([null, null, t, j], null); } }",
        "reduce": "_count",
    },
    # History search (`history.py`): key [owner, term, created_at, job_id], value the
    # job's status, where a null owner means "any". The terms of a job: its id, its file
    # name lowercased, and each word of that name (at most 16), so that a prefix of any of
    # them finds the job (the reader checks the prefix again: collations differ).
    "job_search": {
        "map": "function (doc) { if (doc.kind !== 'job' || typeof doc.owner !== 'string') {"
        " return; } var terms = {}, name = '', k, r, i, words;"
        " for (k in doc.records) { r = doc.records[k];"
        " if (r && r.type === 'image.uploaded' && r.data &&"
        " typeof r.data.filename === 'string') { name = r.data.filename.toLowerCase(); } }"
        " terms[doc.job] = true;"
        " if (name) { terms[name.slice(0, 128)] = true;"
        " words = name.split(/[\\s._\\-()\\[\\]{},;:+~!@#$%^&='\"]+/);"
        " for (i = 0; i < words.length && i < 16; i++) {"
        " if (words[i]) { terms[words[i].slice(0, 128)] = true; } } }"
        " for (k in terms) { emit([doc.owner, k, doc.created_at, doc.job], doc.status);"
        " emit([null, k, doc.created_at, doc.job], doc.status); } }"
    },
    # Every job that used a given input: key input_sha256, value job_id.
    "by_input": {
        "map": "function (doc) { if (doc.type === 'image.uploaded' && doc.input_sha256) {"
        " emit(doc.input_sha256, doc.job_id); } }"
    },
    # What an output was derived from: key output_sha256, value input_sha256. A job that
    # reused an earlier job's output (image.reused) has it as its output too.
    "by_output": {
        "map": "function (doc) { if ((doc.type === 'image.processed' ||"
        " doc.type === 'image.reused') && doc.output_sha256) {"
        " emit(doc.output_sha256, doc.input_sha256); } }"
    },
    # The derivation graph, both ways: [sha, "from"] -> its sources, [sha, "to"] -> what
    # was made from it; each value names the job that did it (or reused it).
    "derivations": {
        "map": "function (doc) { if ((doc.type === 'image.processed' ||"
        " doc.type === 'image.reused') && doc.input_sha256 && doc.output_sha256) {"
        " emit([doc.output_sha256, 'from'], {sha256: doc.input_sha256, job_id: doc.job_id});"
        " emit([doc.input_sha256, 'to'], {sha256: doc.output_sha256, job_id: doc.job_id}); } }"
    },
    # Where each image is stored, and what it is: key sha256, one row per job that stored
    # it: an input in upload.received, an output in image.processed. A reused output is
    # stored where the earlier job stored it, and is this job's output there too. Trails
    # recorded before upload.received carried the input have it in image.stored (whose
    # output copies image.processed, which still emits it).
    "images": {
        "map": "function (doc) { var i = null, role = null, d = doc.data || {};"
        " if (doc.type === 'upload.received' && d.input) { i = d.input; role = 'input'; }"
        " if (doc.type === 'image.stored' && d.role === 'input') { i = d.image; role = 'input'; }"
        " if (doc.type === 'image.processed' || doc.type === 'image.reused') {"
        " i = d.output; role = 'output'; }"
        " if (i) { emit(i.sha256, {role: role, job_id: doc.job_id,"
        " location: 's3://' + i.bucket + '/' + i.key,"
        " format: i.format, width: i.width, height: i.height, bytes: i.bytes}); } }"
    },
    # Failed jobs by error code: key [code, time]; reduce counts them (group_level=1).
    "failures": {
        "map": "function (doc) { if (doc.type === 'job.failed') {"
        " emit([doc.error_code, doc.time], doc.job_id); } }",
        "reduce": "_count",
    },
    # Events per day and type: key [YYYY-MM-DD, type]; reduce counts.
    "per_day": {
        "map": "function (doc) { if (doc.type && doc.time) {"
        " emit([doc.time.slice(0, 10), doc.type], 1); } }",
        "reduce": "_count",
    },
    # Operations applied per operation and day: key [op, YYYY-MM-DD], value the duration;
    # reduce gives count, sum, min and max of the durations (ms). Each step of an
    # image.processed that says its attempt (recorded since it carries the operations);
    # before, each operation.applied (whose image.processed is then not counted again).
    "per_operation": {
        "map": "function (doc) { if (typeof doc.time !== 'string') { return; }"
        " var day = doc.time.slice(0, 10), d = doc.data || {};"
        " if (doc.type === 'operation.applied') {"
        " emit([doc.operation, day], d.duration_ms); }"
        " if (doc.type === 'image.processed' && d.attempt && d.steps) {"
        " for (var n = 0; n < d.steps.length; n++) {"
        " emit([d.steps[n].op, day], d.steps[n].duration_ms); } } }",
        "reduce": "_stats",
    },
}
MANGO_INDEXES = {
    # For Fauxton's "Run A Query with Mango": {"selector": {"type": "job.failed"}}, sorted
    # by time; and the same by service.
    "by-type-time": ["type", "time"],
    "by-service-time": ["service", "time"],
}

AUDITOR_ROLE = "auditor"
"""Members with this role read provenance; the validation function refuses their writes."""
MIGRATE = (
    "run `python -m provenancedb.migrate` with the CouchDB admin's credentials "
    "(local stack: `make infra`)"
)

# Append-only, for everyone but server admins (provisioning and repairs). WRITER is the
# writer's name as a JSON string. Plain ES5, like the views. The one exception: the writer
# updates job summaries (`job:<id>`, `summaries.py`), derived from the events, never
# deleted, and held to their shape so that no event view ever indexes one.
_VALIDATE = """function (newDoc, oldDoc, userCtx, secObj) {
  if (userCtx.roles.indexOf('_admin') !== -1) { return; }
  var summary = newDoc._id.indexOf('job:') === 0;
  if (newDoc._deleted) {
    throw({forbidden: 'provenance is append-only: ' + newDoc._id + ' cannot be deleted'});
  }
  if (newDoc._rev && !summary) {
    throw({forbidden: 'provenance is append-only: ' + newDoc._id + ' cannot be changed'});
  }
  if (userCtx.name !== WRITER) {
    throw({forbidden: 'only ' + WRITER + ' records provenance'});
  }
  if (summary) {
    if (newDoc.kind !== 'job' || 'job:' + newDoc.job !== newDoc._id ||
        newDoc.type !== undefined || newDoc.time !== undefined ||
        newDoc.job_id !== undefined || newDoc._attachments ||
        typeof newDoc.records !== 'object' || newDoc.records === null) {
      throw({forbidden: 'not a job summary: kind job, its job, records; ' +
        'no type, time, job_id or attachments'});
    }
    return;
  }
  if (typeof newDoc.type !== 'string' || typeof newDoc.time !== 'string' ||
      newDoc._attachments) {
    throw({forbidden: 'not an event document: type and time, no attachments'});
  }
}"""
# No `_rev` and an `oldDoc`: a repeated create. CouchDB 3 answers 409 before it validates;
# PouchDB Server validates first, so the function lets it through to the same 409.


def design_document(writer: str) -> dict[str, Any]:
    """`_design/provenance` (without `_id` and `_rev`): the views, and the validation
    function that lets only `writer` create documents and nobody change one."""
    return {
        "language": "javascript",
        "views": DESIGN_VIEWS,
        "validate_doc_update": _VALIDATE.replace("WRITER", json.dumps(writer)),
    }


def security_object(admin: str, writer: str) -> dict[str, Any]:
    """The database's `_security`: the server admin administers, the writer and the
    auditors are its only members."""
    return {
        "admins": {"names": [admin], "roles": []},
        "members": {"names": [writer], "roles": [AUDITOR_ROLE]},
    }


def is_pouchdb_server(welcome: dict[str, Any]) -> bool:
    """Whether `GET /` came from PouchDB Server rather than CouchDB."""
    return "express-pouchdb" in welcome
