// The history page: GET /api/v1/jobs?status=&search=&limit=20&before=<cursor>, a page at
// a time. While a page loads, the rows shown are marked stale (dimmed, inert) and the box
// busy; an answer to an earlier question (another filter, search or page) is dropped, so
// a slow one never overwrites a newer one.

import { getJson, headline, jobLink, jobPage, jobUrl } from "./api.js";
import { $, badge, fill, h, markCurrentNav } from "./dom.js";
import { ago, dimensions, elapsed, localTime, pipelineSummary, STATUS_TEXT } from "./format.js";

const LIMIT = 20;
const SEARCH_DELAY_MS = 300;
const view = { status: "", search: "", cursors: [null], page: 0, loading: null, asked: 0 };

function row(job) {
  const input = job.input;
  const output = job.output;
  const name = job.filename || "(no name)";
  const placeholder = (text) => h("span", { class: "thumb thumb-none", "aria-hidden": "true" }, text);
  let thumb = placeholder(job.status === "failed" ? "!" : "\u2026");
  if (job.erased_at) {
    thumb = h("span", { class: "thumb thumb-none", title: "Deleted: the images are gone" }, "\u2205");
  } else if (job.status === "succeeded") {
    // A small square made once per output; `loading` before `src`, or it loads at once.
    thumb = h("img", {
      class: "thumb", loading: "lazy", decoding: "async", width: 48, height: 48, alt: "",
      src: jobUrl(job.id, "thumbnail"),
    });
    thumb.addEventListener("error", (event) => event.target.replaceWith(placeholder("")));
  }
  const sizes = input
    ? `${dimensions(input.width, input.height)}${output ? ` \u2192 ${dimensions(output.width, output.height)}` : ""}`
    : "";
  const terminal = ["succeeded", "failed", "cancelled"].includes(job.status);
  return h("tr", { dataset: { jobId: job.id, status: job.status } },
    h("td", { class: "thumb-cell" }, thumb),
    h("td", { class: "file" },
      h("a", { href: jobPage(job.id) }, name),
      h("div", { class: "id", title: job.id }, `job ${job.id.slice(0, 8)}`),
      retries(job)),
    h("td", { class: "status-cell" }, badge(job.status, STATUS_TEXT[job.status] || job.status)),
    h("td", { class: "pipeline wide" }, pipelineSummary(job.pipeline),
      job.error ? h("div", { class: "row-error" }, `${headline(job.error.code)}: ${job.error.message}`) : null),
    h("td", { class: "wide nowrap" }, sizes),
    h("td", { class: "wide nowrap" },
      h("time", { datetime: job.created_at, title: localTime(job.created_at) }, ago(job.created_at)),
      terminal ? h("div", { class: "hint" }, `took ${elapsed(job, true)}`) : null));
}

/** "retry of <job>", "retried as <job>, <job>": the job's retry links, if any. */
function retries(job) {
  const parts = [];
  if (job.retry_of) { parts.push("retry of ", jobLink(job.retry_of)); }
  (job.retried_by || []).forEach((id, n) => {
    parts.push(n ? ", " : parts.length ? "; retried as " : "retried as ", jobLink(id));
  });
  return parts.length ? h("div", { class: "hint retries" }, ...parts) : null;
}

function table(jobs) {
  return h("div", { class: "table-wrap" }, h("table", { class: "jobs-table" },
    h("caption", { class: "visually-hidden" }, "Recent jobs, newest first"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Result")),
      h("th", { scope: "col" }, "File"),
      h("th", { scope: "col" }, "Status"),
      h("th", { scope: "col" }, "Pipeline"),
      h("th", { scope: "col" }, "Size"),
      h("th", { scope: "col" }, "Started"))),
    h("tbody", {}, jobs.map(row))));
}

function emptyState() {
  const what = view.status ? `${(STATUS_TEXT[view.status] || view.status).toLowerCase()} jobs` : "jobs";
  if (view.search) {
    return h("div", { class: "table-wrap empty-state" },
      h("p", {}, `No ${what} ${view.page > 0 ? "more " : ""}match \u201c${view.search}\u201d.`),
      h("p", {}, "Search looks for the start of a file name, of a word in it, or of a job id."));
  }
  return h("div", { class: "table-wrap empty-state" },
    h("p", {}, view.page > 0 ? `No more ${what}.` : `No ${what} yet.`),
    h("p", {}, h("a", { href: "/" }, "Upload an image"), " to start one."));
}

/** Mark what is shown as out of date while the next answer is on its way. */
function busy(box, loading) {
  box.setAttribute("aria-busy", String(loading));
  $("#history-loading").hidden = !loading;
  for (const shown of box.children) {
    shown.classList.toggle("stale", loading);
    shown.inert = loading;
  }
}

async function load() {
  const box = $("#history");
  const controller = new AbortController();
  if (view.loading) { view.loading.abort(); }
  view.loading = controller;
  view.asked += 1;
  const asked = view.asked;
  busy(box, true);
  const query = new URLSearchParams({ limit: String(LIMIT) });
  if (view.status) { query.set("status", view.status); }
  if (view.search) { query.set("search", view.search); }
  const cursor = view.cursors[view.page];
  if (cursor) { query.set("before", cursor); }
  try {
    const page = await getJson(`/api/v1/jobs?${query}`, { signal: controller.signal });
    if (asked !== view.asked) { return; } // a newer question was asked meanwhile
    view.cursors[view.page + 1] = page.next || null;
    fill(box, page.jobs.length ? table(page.jobs) : emptyState());
    $("#older").disabled = !page.next;
    $("#newer").disabled = view.page === 0;
    $(".pager").hidden = !page.next && view.page === 0;
    $("#page-number").textContent = view.page > 0 || page.next ? `Page ${view.page + 1}` : "";
    $("#history-status").textContent = `${page.jobs.length} ${page.jobs.length === 1 ? "job" : "jobs"} shown, page ${view.page + 1}`;
  } catch (err) {
    if (err.name === "AbortError" || asked !== view.asked) { return; }
    fill(box, h("div", { class: "failure" }, h("strong", {}, "The history cannot be loaded: "), err.message, " ",
      h("button", { type: "button", class: "secondary small", on: { click: load } }, "Try again")));
  } finally {
    if (view.loading === controller) {
      view.loading = null;
      busy(box, false);
    }
  }
}

function remember() {
  const query = new URLSearchParams();
  if (view.status) { query.set("status", view.status); }
  if (view.search) { query.set("search", view.search); }
  window.history.replaceState(null, "", `${window.location.pathname}${query.size ? `?${query}` : ""}`);
}

function restart() {
  view.cursors = [null];
  view.page = 0;
  remember();
  load();
}

/** Search as the user types (after a pause), or at once on Enter. */
let searchTimer = null;
function searchFor(text, delay) {
  clearTimeout(searchTimer);
  const wanted = text.trim();
  if (wanted === view.search) { return; }
  searchTimer = setTimeout(() => { view.search = wanted; restart(); }, delay);
}

markCurrentNav();
const requested = new URLSearchParams(window.location.search);
view.status = requested.get("status") || "";
view.search = (requested.get("search") || "").trim();
$("#status-filter").value = view.status;
$("#search").value = view.search;
$("#status-filter").addEventListener("change", (event) => { view.status = event.target.value; restart(); });
$("#search").addEventListener("input", (event) => searchFor(event.target.value, SEARCH_DELAY_MS));
$("#filters").addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(searchTimer);
  view.search = $("#search").value.trim();
  restart();
});
$("#refresh").addEventListener("click", () => load());
$("#older").addEventListener("click", () => { view.page += 1; load(); $("#main").scrollIntoView(); });
$("#newer").addEventListener("click", () => { view.page = Math.max(0, view.page - 1); load(); });
load();
