// The job page /jobs/{id}: status (live until it ends), before/after, the provenance
// timeline, the lineage of its input and output, and links for operators.

import { about, getJson, headline, jobLink, jobPage, jobUrl, lineageUrl, postJson, sendDelete } from "./api.js";
import { $, badge, fill, h, markCurrentNav } from "./dom.js";
import { followJob, TERMINAL } from "./follow.js";
import { ago, bytes, dimensions, elapsed, formatName, localTime, stepText } from "./format.js";
import { describeShown, lineageCard } from "./lineage.js";
import { timeline } from "./provenance.js";
import { comparison } from "./compare.js";
import { downloadLink, failure } from "./results.js";

const jobId = decodeURIComponent(window.location.pathname.split("/").filter(Boolean)[1] || "");
const page = { job: null, lastStep: null, timer: null, refresh: null };
/** What may be retried (POST .../retry): a new job on the same stored input. */
const RETRYABLE = new Set(["failed", "cancelled"]);

function imageFacts(image) {
  return image ? `${dimensions(image.width, image.height)} ${formatName(image.format)}, ${bytes(image.bytes)}` : "\u2014";
}

function fact(term, ...value) {
  return h("div", { class: term === "Pipeline" ? "wide" : null }, h("dt", {}, term), h("dd", {}, ...value));
}

function renderFacts(job) {
  const terminal = TERMINAL.has(job.status);
  const pipeline = job.pipeline || [];
  fill($("#job-facts"),
    fact("Started", h("time", { datetime: job.created_at, title: localTime(job.created_at) }, ago(job.created_at))),
    fact(terminal ? "Took" : "Running for", h("span", { id: "job-elapsed" }, elapsed(job, terminal))),
    fact("Input", imageFacts(job.input)),
    fact("Output", imageFacts(job.output)),
    job.reused_from
      ? fact("Reused", "the result of an earlier identical job, ",
        h("a", { href: `/jobs/${encodeURIComponent(job.reused_from)}` }, job.reused_from.slice(0, 8)),
        " (same bytes, pipeline and engine): nothing was computed again")
      : null,
    job.retry_of ? fact("Retry of", jobLink(job.retry_of)) : null,
    (job.retried_by || []).length
      ? fact("Retried as", ...job.retried_by.flatMap((id, i) => (i ? [", ", jobLink(id)] : [jobLink(id)])))
      : null,
    fact("Pipeline", pipeline.length
      ? h("ol", { class: "pipeline-list" }, pipeline.map(({ op, ...params }) => h("li", {},
        op, Object.keys(params).length ? h("code", { class: "params-json" }, ` ${JSON.stringify(params)}`) : null)))
      : "no operations"));
}

/** Why the job shows no images: it was erased (DELETE), by whom and when. */
function erasedText(job) {
  return `Deleted by ${job.erased_by || "its owner"} ${ago(job.erased_at)}: its images are gone for good; `
    + "its record (sizes, hashes, times, pipeline, provenance) stays.";
}

function liveText(job) {
  if (job.erased_at) { return erasedText(job); }
  if (job.status === "succeeded") {
    return `Done in ${elapsed(job, true)}${job.reused_from ? ": an earlier identical job's result, reused" : ""}.`;
  }
  if (job.status === "failed") {
    const error = job.error || { code: "unknown", message: "the job failed" };
    return `${headline(error.code)}: ${error.message}`;
  }
  if (job.status === "cancelled") {
    return `Cancelled by ${job.cancelled_by || "its owner"}: no result was stored.`;
  }
  const step = page.lastStep ? ` Last step: ${stepText(page.lastStep).toLowerCase()}.` : "";
  return job.status === "queued" ? `Queued: waiting for a worker.${step}` : `Processing.${step}`;
}

function render(job) {
  const previous = page.job;
  page.job = { ...previous, ...job };
  job = page.job;
  const name = job.filename || "Untitled image";
  $("#job-title").textContent = name;
  document.title = `${name} · Job · imagemesh`;
  fill($("#job-badge"), badge(job.status, { succeeded: "Done", failed: "Failed", queued: "Queued", processing: "Processing", cancelled: "Cancelled" }[job.status] || job.status));
  $("#job-cancel").hidden = TERMINAL.has(job.status);
  $("#job-retry").hidden = !RETRYABLE.has(job.status) || Boolean(job.erased_at);
  $("#job-erase").hidden = !TERMINAL.has(job.status) || Boolean(job.erased_at);
  document.body.dataset.status = job.status;
  $("#job-live").textContent = liveText(job);
  $("#job-live").dataset.status = job.status;
  renderFacts(job);
  if (!previous || previous.status !== job.status || previous.erased_at !== job.erased_at) { renderResult(job); }
}

function renderResult(job) {
  const box = $("#job-result");
  if (job.erased_at) {
    fill(box, h("p", { class: "hint erased-note" }, erasedText(job)));
  } else if (job.status === "succeeded") {
    fill(box, comparison(job), h("div", { class: "card-actions" }, downloadLink(job)));
  } else if (job.status === "failed") {
    fill(box, failure(job.error));
  } else if (job.status === "cancelled") {
    fill(box, h("p", { class: "hint" }, "Cancelled: this job has no result."));
  } else {
    fill(box, h("p", { class: "hint" }, "The result appears here as soon as the job is done."));
  }
}

async function loadTimeline() {
  const box = $("#timeline");
  try {
    fill(box, timeline(await getJson(jobUrl(jobId, "provenance"))));
  } catch (err) {
    fill(box, failure({ code: err.code, message: `the provenance cannot be loaded: ${err.message}` }));
  } finally {
    box.setAttribute("aria-busy", "false");
  }
}

async function lineageOf(title, sha256) {
  try {
    return lineageCard(title, await getJson(lineageUrl(sha256)), jobId);
  } catch (err) {
    return h("div", {}, h("h3", {}, title), h("p", { class: "hint" }, `Lineage unavailable: ${err.message}`));
  }
}

async function loadLineage() {
  const job = page.job;
  const cards = [];
  if (job.input) { cards.push(lineageOf("Input", job.input.sha256)); }
  if (job.output) { cards.push(lineageOf("Output", job.output.sha256)); }
  fill($("#lineage"), cards.length ? await Promise.all(cards) : h("p", { class: "hint" }, "No images recorded for this job."));
  describeShown($("#lineage"));
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** A console's configured URL; a loopback host there (the default) means "the machine the
 * mesh runs on", which for a browser elsewhere is the host this page came from. */
function onThisHost(configured) {
  const url = new URL(configured, window.location.href);
  if (LOOPBACK.has(url.hostname)) { url.hostname = window.location.hostname; }
  return url;
}

/** Fauxton's route to this job's documents: the by_job view (key [job, time]) between
 * [job] and [job, {}], with the documents. */
function fauxtonRoute(configured) {
  const db = (configured.hash.match(/^#\/?database\/([^/?]+)/) || [])[1] || "provenance";
  const query = new URLSearchParams({
    include_docs: "true", startkey: JSON.stringify([jobId]), endkey: JSON.stringify([jobId, {}]),
  });
  return `/database/${db}/_design/provenance/_view/by_job?${query}`;
}

function consoleLinks(links) {
  const items = [];
  if (links.fauxton) {
    const view = onThisHost(links.fauxton);
    const route = fauxtonRoute(view);
    const login = new URL(view);
    view.hash = `#${route}`;
    login.hash = `#/login?urlback=${encodeURIComponent(route)}`;
    items.push(h("li", {}, h("a", { href: view.href, rel: "noopener" }, "Provenance documents in Fauxton"),
      h("span", { class: "hint" }, " (this job's, view by_job; not signed in to Fauxton? ",
        h("a", { href: login.href, rel: "noopener" }, "sign in, then see them"), ")")));
  }
  if (links.rabbitmq_console) {
    const queues = onThisHost(links.rabbitmq_console);
    queues.hash = "#/queues";
    items.push(h("li", {}, h("a", { href: queues.href, rel: "noopener" }, "RabbitMQ console (queues, parking lots)")));
  }
  return items;
}

async function loadOperatorLinks() {
  const list = $("#operator-links");
  fill(list,
    h("li", {}, h("a", { href: jobUrl(jobId) }, "Job JSON")),
    h("li", {}, h("a", { href: jobUrl(jobId, "provenance") }, "Provenance (PROV-JSON)")));
  try {
    const links = (await about()).links || {};
    list.append(...consoleLinks(links),
      ...[["openapi", "OpenAPI document"], ["asyncapi", "AsyncAPI document (events)"]]
        .filter(([key]) => links[key]).map(([key, text]) => h("li", {}, h("a", { href: links[key] }, text))));
  } catch {
    // The page works without them; the job's own links are there.
  }
}

function scheduleTimeline() {
  clearTimeout(page.refresh);
  page.refresh = setTimeout(loadTimeline, 400);
}

function finished() {
  clearInterval(page.timer);
  loadTimeline();
  loadLineage();
}

function gone(err) {
  clearInterval(page.timer);
  $("#job-title").textContent = "No such job";
  $("#job-live").textContent = "";
  const problem = $("#job-problem");
  fill(problem, failure({ code: err.code, message: err.status === 404 ? `there is no job ${jobId}` : err.message }),
    h("p", {}, h("a", { href: "/history" }, "See the recent jobs")));
  problem.hidden = false;
  for (const section of document.querySelectorAll("main > section")) { section.hidden = true; }
}

/** Ask to cancel the job, once confirmed; its status (followed live) shows how it ends. */
async function cancelJob() {
  const button = $("#job-cancel");
  if (!window.confirm("Cancel this job? It stops, and no result is kept.")) { return; }
  button.disabled = true;
  try {
    await postJson(jobUrl(jobId, "cancel"));
    $("#job-live").textContent = "Cancel requested…";
  } catch (err) {
    $("#job-live").textContent = `${headline(err.code)}: ${err.message}`;
    button.disabled = false;
  }
}

/** Retry the job, once confirmed: a new job on the same image and pipeline, shown next. */
async function retryJob() {
  const button = $("#job-retry");
  if (!window.confirm("Retry this job? A new job runs on the same image with the same pipeline.")) { return; }
  button.disabled = true;
  try {
    const accepted = await postJson(jobUrl(jobId, "retry"));
    window.location.assign(jobPage(accepted.id));
  } catch (err) {
    $("#job-live").textContent = `${headline(err.code)}: ${err.message}`;
    button.disabled = false;
  }
}

/** Load the timeline until it shows a step of `type` (provenance records it a moment
 * after the API answered), a few times at most. */
async function timelineWith(type, tries = 10) {
  await loadTimeline();
  if (!$(`#timeline li[data-type='${type}']`) && tries > 1) {
    setTimeout(() => timelineWith(type, tries - 1), 500);
  }
}

/** Erase the job, once confirmed: its images are deleted (DELETE), the page then shows
 * its record without them. */
async function eraseJob() {
  const button = $("#job-erase");
  const question = "Delete this job's images for good? The uploaded image, the result and its "
    + "thumbnail are deleted (an image another job still uses stays for it). The job's record "
    + "and provenance stay.";
  if (!window.confirm(question)) { return; }
  button.disabled = true;
  try {
    await sendDelete(jobUrl(jobId));
    render(await getJson(jobUrl(jobId)));
    timelineWith("job.erased");
  } catch (err) {
    $("#job-live").textContent = `${headline(err.code)}: ${err.message}`;
    button.disabled = false;
  }
}

markCurrentNav();
$("#job-cancel").addEventListener("click", cancelJob);
$("#job-erase").addEventListener("click", eraseJob);
$("#job-retry").addEventListener("click", retryJob);
$("#job-id").textContent = jobId;
$("#prov-link").href = jobUrl(jobId, "provenance");
loadOperatorLinks();
page.timer = setInterval(() => {
  const shown = $("#job-elapsed");
  if (shown && page.job && !TERMINAL.has(page.job.status)) { shown.textContent = elapsed(page.job, false); }
}, 250);
followJob(jobId, {
  onStatus: (job) => {
    const first = page.job === null;
    render(job);
    if (TERMINAL.has(job.status)) { finished(); } else if (first) { loadTimeline(); }
  },
  onStep: (step) => {
    page.lastStep = step;
    if (page.job) { $("#job-live").textContent = liveText(page.job); }
    scheduleTimeline();
  },
  onNote: (note) => { if (note && page.job) { $("#job-live").textContent = `${liveText(page.job)} ${note}`; } },
  onGone: gone,
});
