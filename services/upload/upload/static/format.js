// Numbers, times and names as people read them.

const UNITS = ["bytes", "KiB", "MiB", "GiB"];

/** 1536 → "1.5 KiB" (binary units, as the API's limits are written): one decimal under
 * 100, halves rounded up; the CLI writes sizes the same way (tests/cli/test_units.py). */
export function bytes(count) {
  if (typeof count !== "number" || !Number.isFinite(count)) { return "?"; }
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) { value /= 1024; unit += 1; }
  if (unit === 0) { return `${count} ${count === 1 ? "byte" : "bytes"}`; }
  return `${value >= 100 ? Math.round(value) : (Math.round(value * 10) / 10).toFixed(1)} ${UNITS[unit]}`;
}

/** "−97 %", "−99.6 %", "+12 %": how much bigger or smaller the output is, with as many
 * decimals as it takes for a change that is not nothing (or everything) not to read as one. */
export function sizeChange(before, after) {
  if (!before || typeof after !== "number") { return ""; }
  if (after === before) { return "same size"; }
  const change = ((after - before) / before) * 100;
  let digits = 0;
  const shown = () => Number(Math.abs(change).toFixed(digits));
  while (digits < 6 && (shown() === 0 || (change < 0 && shown() === 100))) { digits += 1; }
  return `${change < 0 ? "\u2212" : "+"}${Math.abs(change).toFixed(digits)}\u00a0%`;
}

export const dimensions = (width, height) => `${width} \u00d7 ${height}`;

export function formatName(format) {
  return { jpeg: "JPEG", png: "PNG", webp: "WebP", avif: "AVIF", tiff: "TIFF", gif: "GIF" }[format]
    || (format ? String(format).toUpperCase() : "");
}

/** Milliseconds → "124 ms", "3.4 s", "2 min 5 s". */
export function duration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) { return ""; }
  if (ms < 1) { return `${ms.toFixed(2)} ms`; }
  if (ms < 1000) { return `${Math.round(ms)} ms`; }
  if (ms < 60_000) { return `${(ms / 1000).toFixed(1)} s`; }
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export const parseTime = (text) => (text ? Date.parse(text) : NaN);

/** A job's age or run time: from created_at to its end (terminal) or to now. */
export function elapsed(job, terminal) {
  const start = parseTime(job.created_at);
  if (Number.isNaN(start)) { return ""; }
  const end = terminal ? parseTime(job.updated_at) : Date.now();
  return duration(Math.max(0, end - start));
}

const RELATIVE = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

/** "3 minutes ago", "yesterday". */
export function ago(text) {
  const then = parseTime(text);
  if (Number.isNaN(then)) { return ""; }
  const seconds = Math.round((then - Date.now()) / 1000);
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [7, "day"], [4.35, "week"], [12, "month"]];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) { return RELATIVE.format(Math.round(value), unit); }
    value /= size;
  }
  return RELATIVE.format(Math.round(value), "year");
}

export function localTime(text) {
  const then = parseTime(text);
  return Number.isNaN(then) ? "" : new Date(then).toLocaleString();
}

/** "thumbnail → grayscale", or "no operations". */
export function pipelineSummary(pipeline) {
  if (!Array.isArray(pipeline) || pipeline.length === 0) { return "no operations (stored as is)"; }
  return pipeline.map((step) => step.op).join(" \u2192 ");
}

const EXTENSIONS = { jpeg: "jpg", tiff: "tif" };

/** The name a downloaded result gets: "photo-imagemesh.webp". */
export function downloadName(job) {
  const format = job.output && job.output.format;
  const extension = EXTENSIONS[format] || format || "bin";
  const stem = (job.filename || "").replace(/^.*[\\/]/, "").replace(/\.[^.]*$/, "")
    .replace(/[^\w.\- ]+/g, "_").trim();
  return `${stem || `job-${job.id}`}-imagemesh.${extension}`;
}

/** Each step of a job in plain words. */
export function stepText(step) {
  const index = typeof step.index === "number" ? ` (step ${step.index + 1})` : "";
  const attempt = step.attempt > 1 ? `, attempt ${step.attempt}` : "";
  switch (step.type) {
    case "upload.received": return step.stored ? "Upload received and stored" : "Upload received";
    case "image.stored": return step.role === "output" ? "Result stored" : "Image stored";
    case "image.uploaded": return "Queued for processing";
    case "job.processing-started": return `Processing started${step.attempt ? ` (attempt ${step.attempt})` : ""}`;
    case "operation.applied": return `Applied ${step.operation || "an operation"}${index}${attempt}`;
    case "image.processed":  // a reused job's is the earlier job's computation, taken
      return step.reused_from ? `Computed earlier, by job ${String(step.reused_from).slice(0, 8)}` : "Finished: result ready";
    case "image.reused": return "Finished: an earlier job's identical result reused";
    case "job.failed": return "Failed";
    case "job.retry-scheduled": return `Attempt ${step.attempt || "?"} failed; retrying`;
    case "job.parked": return "Gave up after retries (parked)";
    case "job.retried": return "Retried as a new job";
    case "job.erased": return "Images deleted (erased)";
    case "webhook.attempted": return `Webhook notified${step.attempt ? ` (attempt ${step.attempt})` : ""}`;
    default: return step.type;
  }
}

export const STATUS_TEXT = {
  ready: "Ready",
  uploading: "Uploading",
  waiting: "Waiting",
  refused: "Refused",
  queued: "Queued",
  processing: "Processing",
  succeeded: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};

/** The first line of an operation's description. */
export const firstLine = (text) => (text || "").split("\n")[0].trim();
