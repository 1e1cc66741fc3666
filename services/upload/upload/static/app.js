"use strict";

const POLL_MS = 500;
const TERMINAL = new Set(["succeeded", "failed"]);
const $ = (id) => document.getElementById(id);

function show(el, visible) { el.hidden = !visible; }

function syncPipelineFromPreset() {
  const preset = $("preset").value;
  if (preset !== "custom") { $("pipeline").value = preset; }
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
  try {
    const response = await fetch(form.action, { method: "POST", body: data });
    const body = await response.json();
    if (response.status !== 202) {
      $("form-error").textContent = body.error ? body.error.message : `upload failed (${response.status})`;
      show($("form-error"), true);
      return;
    }
    await follow(body.id);
  } catch (err) {
    $("form-error").textContent = `upload failed: ${err}`;
    show($("form-error"), true);
  } finally {
    $("submit").disabled = false;
  }
}

function setStatus(status) {
  $("job-status").textContent = status;
  $("job-status").dataset.status = status;
}

async function follow(jobId) {
  $("job-id").textContent = jobId;
  show($("job"), true);
  show($("job-result"), false);
  show($("job-error"), false);
  setStatus("queued");
  for (;;) {
    const response = await fetch(`/api/v1/jobs/${jobId}`);
    const job = await response.json();
    if (response.ok) {
      setStatus(job.status);
      if (TERMINAL.has(job.status)) { return finish(job); }
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function finish(job) {
  if (job.status === "failed") {
    $("job-error").textContent = `${job.error.message} (${job.error.code})`;
    show($("job-error"), true);
    return;
  }
  const url = `/api/v1/jobs/${job.id}/result`;
  const out = job.output;
  $("result-image").src = url;
  $("result-download").href = url;
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
