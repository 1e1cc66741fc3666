"use strict";

const POLL_MS = 500;
const TERMINAL = new Set(["succeeded", "failed"]);
const $ = (id) => document.getElementById(id);

function show(el, visible) { el.hidden = !visible; }

function syncPipelineFromPreset() {
  const preset = $("preset").value;
  if (preset !== "custom") { $("pipeline").value = preset; }
}

// The JSON body of a response, or null when it has none (a proxy's HTML error page, say).
async function jsonOrNull(response) {
  try {
    return await response.json();
  } catch (err) {
    return null;
  }
}

// The API's own words for a refused request, or a plain fallback naming the status.
function errorMessage(body, response, what) {
  if (body && body.error && body.error.message) { return body.error.message; }
  return `${what} (HTTP ${response.status} ${response.statusText})`.replace(/ \)$/, ")");
}

async function loadOperations() {
  try {
    const response = await fetch("/api/v1/operations");
    const body = await response.json();
    $("operations").textContent = body.operations.map((op) => op.name).join(", ");
  } catch (err) {
    $("operations").textContent = "unavailable";
  }
}

async function submit(event) {
  event.preventDefault();
  show($("form-error"), false);
  const form = $("upload-form");
  const data = new FormData(form);
  $("submit").disabled = true;
  let response;
  let body;
  try {
    response = await fetch(form.action, { method: "POST", body: data });
    body = await jsonOrNull(response);
  } catch (err) {
    $("form-error").textContent = `upload failed: ${err.message || err}`;
    show($("form-error"), true);
    $("submit").disabled = false;
    return;
  }
  if (response.status !== 202 || !body || !body.id) {
    $("form-error").textContent = errorMessage(body, response, "upload failed");
    show($("form-error"), true);
    $("submit").disabled = false;
    return;
  }
  try {
    await follow(body.id);
  } finally {
    $("submit").disabled = false;
  }
}

function setStatus(status) {
  $("job-status").textContent = status;
  $("job-status").dataset.status = status;
}

// Say why the status is not moving, while polling goes on; null hides the note.
function setNote(text) {
  $("job-note").textContent = text || "";
  show($("job-note"), Boolean(text));
}

async function follow(jobId) {
  $("job-id").textContent = jobId;
  show($("job"), true);
  show($("job-result"), false);
  show($("job-error"), false);
  setNote(null);
  setStatus("queued");
  for (;;) {
    try {
      const response = await fetch(`/api/v1/jobs/${encodeURIComponent(jobId)}`);
      const job = await jsonOrNull(response);
      if (response.ok && job && job.status) {
        setNote(null);
        setStatus(job.status);
        if (TERMINAL.has(job.status)) { return finish(job); }
      } else {
        setNote(`${errorMessage(job, response, "status unavailable")}; still trying…`);
      }
    } catch (err) {
      setNote(`status unavailable: ${err.message || err}; still trying…`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function finish(job) {
  if (job.status === "failed") {
    const error = job.error || { message: "the job failed", code: "unknown" };
    $("job-error").textContent = `${error.message} (${error.code})`;
    show($("job-error"), true);
    return;
  }
  const url = `/api/v1/jobs/${encodeURIComponent(job.id)}/result`;
  const out = job.output || {};
  $("result-image").src = url;
  $("result-download").href = url;
  const extension = out.format === "jpeg" ? "jpg" : out.format;
  $("result-download").download = extension ? `${job.id}.${extension}` : "";
  $("result-info").textContent = `${out.width}×${out.height} ${out.format}, ${out.bytes} bytes`;
  show($("job-result"), true);
}

document.addEventListener("DOMContentLoaded", () => {
  $("preset").addEventListener("change", syncPipelineFromPreset);
  $("pipeline").addEventListener("input", () => { $("preset").value = "custom"; });
  $("upload-form").addEventListener("submit", submit);
  syncPipelineFromPreset();
  loadOperations();
});
