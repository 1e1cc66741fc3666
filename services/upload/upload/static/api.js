// The imagemesh HTTP API, as the pages use it. Errors are always ApiError with the
// server's own words ({"error": {"code", "message"}}) when it gave any.

import { h } from "./dom.js";

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** What a refusal is, in a few words, before the server's own message. */
const HEADLINES = {
  too_large: "Too large",
  unsupported_type: "Not an image type we accept",
  too_many_pixels: "Too many pixels",
  too_large_side: "Too wide or too tall",
  too_many_frames: "Too many frames",
  too_many_scans: "Too many JPEG scans (a slow-decode trap)",
  undecodable: "The image cannot be read",
  invalid_pipeline: "The pipeline is not valid",
  invalid_parameter: "A parameter does not fit this image",
  missing_file: "No file was sent",
  busy: "Busy",
  unavailable: "Temporarily unavailable",
  network: "No connection",
  not_found: "Not found",
  operation_failed: "An operation failed",
  timeout: "Took too long",
  memory_budget_exceeded: "Needs too much memory",
  output_too_large: "The result is too large",
  retries_exhausted: "Gave up after retries",
  not_accepted: "Not accepted",
  job_finished: "Already finished",
  forbidden: "Not yours to change",
  gone: "Deleted",
  input_missing: "The image is no longer stored",
  bad_callback_url: "Notify URL refused",
  not_retryable: "Cannot be retried",
  no_input: "Nothing to retry with",
};

export const headline = (code) => HEADLINES[code] || "Something went wrong";

function errorFrom(status, statusText, body, retryAfterHeader) {
  const detail = body && body.error;
  const retryAfter = Number.parseInt(retryAfterHeader || "", 10);
  if (detail && detail.message) {
    return new ApiError(status, detail.code || "http_error", detail.message,
      Number.isFinite(retryAfter) ? retryAfter : null);
  }
  const message = `the server answered HTTP ${status}${statusText ? ` ${statusText}` : ""}`;
  return new ApiError(status, status === 503 ? "unavailable" : "http_error", message,
    Number.isFinite(retryAfter) ? retryAfter : null);
}

function parseJson(text) {
  try { return JSON.parse(text); } catch { return null; }
}

/** GET a JSON resource; throws ApiError (status 0 for a network failure). */
export async function getJson(url, { signal } = {}) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, signal });
  } catch (err) {
    if (err.name === "AbortError") { throw err; }
    throw new ApiError(0, "network", `the server cannot be reached (${err.message || err})`);
  }
  const body = parseJson(await response.text());
  if (!response.ok) {
    throw errorFrom(response.status, response.statusText, body, response.headers.get("Retry-After"));
  }
  if (body === null) { throw new ApiError(response.status, "http_error", "the server's answer is not JSON"); }
  return body;
}

/** POST with no body, for a JSON answer (a job's cancel); throws ApiError as getJson. */
export async function postJson(url) {
  let response;
  try {
    response = await fetch(url, { method: "POST", headers: { Accept: "application/json" } });
  } catch (err) {
    throw new ApiError(0, "network", `the server cannot be reached (${err.message || err})`);
  }
  const body = parseJson(await response.text());
  if (!response.ok) {
    throw errorFrom(response.status, response.statusText, body, response.headers.get("Retry-After"));
  }
  return body;
}

/** DELETE, for no body (204: a job's erasure); throws ApiError as getJson. */
export async function sendDelete(url) {
  let response;
  try {
    response = await fetch(url, { method: "DELETE", headers: { Accept: "application/json" } });
  } catch (err) {
    throw new ApiError(0, "network", `the server cannot be reached (${err.message || err})`);
  }
  if (!response.ok) {
    const body = parseJson(await response.text());
    throw errorFrom(response.status, response.statusText, body, response.headers.get("Retry-After"));
  }
}

let aboutPromise = null;
/** GET /api/v1/about, once per page. */
export function about() {
  aboutPromise = aboutPromise || getJson("/api/v1/about");
  return aboutPromise;
}

export const operations = () => getJson("/api/v1/operations").then((body) => body.operations);

export const jobUrl = (id, part = "") => `/api/v1/jobs/${encodeURIComponent(id)}${part ? `/${part}` : ""}`;
export const jobPage = (id) => `/jobs/${encodeURIComponent(id)}`;

/** A link to a job's page, by its short id (the whole id in its title). */
export function jobLink(id) {
  const full = String(id);
  return h("a", { href: jobPage(full), class: "job-link", title: full }, full.slice(0, 8));
}
export const lineageUrl = (sha256) => `/api/v1/images/${encodeURIComponent(sha256)}/lineage`;

/**
 * POST /api/v1/jobs with XMLHttpRequest, for its upload progress events.
 * Resolves with the 202 body; rejects with ApiError. `onProgress(fraction)` gets 0..1.
 */
export function submitJob(file, pipeline, { onProgress, signal, callbackUrl } = {}) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    const form = new FormData();
    form.append("pipeline", JSON.stringify(pipeline));
    if (callbackUrl) { form.append("callback_url", callbackUrl); }
    form.append("file", file, file.name);
    request.open("POST", "/api/v1/jobs");
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && onProgress) { onProgress(event.loaded / event.total); }
    });
    request.addEventListener("load", () => {
      const body = parseJson(request.responseText);
      if (request.status === 202 && body && body.id) {
        if (onProgress) { onProgress(1); }
        resolve(body);
      } else {
        reject(errorFrom(request.status, request.statusText, body, request.getResponseHeader("Retry-After")));
      }
    });
    request.addEventListener("error", () => {
      reject(new ApiError(0, "network", "the upload was interrupted: the server cannot be reached"));
    });
    request.addEventListener("abort", () => reject(new DOMException("upload cancelled", "AbortError")));
    if (signal) { signal.addEventListener("abort", () => request.abort()); }
    request.send(form);
  });
}
