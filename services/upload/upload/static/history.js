// The history page: GET /api/v1/jobs?status=&limit=20&before=<cursor>, a page at a time.

import { getJson, headline, jobPage, jobUrl } from "./api.js";
import { $, badge, fill, h, markCurrentNav } from "./dom.js";
import { ago, dimensions, elapsed, localTime, pipelineSummary, STATUS_TEXT } from "./format.js";

const LIMIT = 20;
const view = { status: "", cursors: [null], page: 0, loading: null };

function row(job) {
  const input = job.input;
  const output = job.output;
  const name = job.filename || "(no name)";
  const placeholder = (text) => h("span", { class: "thumb thumb-none", "aria-hidden": "true" }, text);
  let thumb = placeholder(job.status === "failed" ? "!" : "\u2026");
  if (job.status === "succeeded") {
    thumb = h("img", { class: "thumb", src: jobUrl(job.id, "result"), alt: "", decoding: "async" });
    thumb.addEventListener("error", (event) => event.target.replaceWith(placeholder("")));
  }
  const sizes = input
    ? `${dimensions(input.width, input.height)}${output ? ` \u2192 ${dimensions(output.width, output.height)}` : ""}`
    : "";
  const terminal = job.status === "succeeded" || job.status === "failed";
  return h("tr", { dataset: { jobId: job.id, status: job.status } },
    h("td", { class: "thumb-cell" }, thumb),
    h("td", { class: "file" },
      h("a", { href: jobPage(job.id) }, name),
      h("div", { class: "id", title: job.id }, `job ${job.id.slice(0, 8)}`)),
    h("td", { class: "status-cell" }, badge(job.status, STATUS_TEXT[job.status] || job.status)),
    h("td", { class: "pipeline wide" }, pipelineSummary(job.pipeline),
      job.error ? h("div", { class: "row-error" }, `${headline(job.error.code)}: ${job.error.message}`) : null),
    h("td", { class: "wide nowrap" }, sizes),
    h("td", { class: "wide nowrap" },
      h("time", { datetime: job.created_at, title: localTime(job.created_at) }, ago(job.created_at)),
      terminal ? h("div", { class: "hint" }, `took ${elapsed(job, true)}`) : null));
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
  return h("div", { class: "table-wrap empty-state" },
    h("p", {}, view.page > 0 ? `No more ${what}.` : `No ${what} yet.`),
    h("p", {}, h("a", { href: "/" }, "Upload an image"), " to start one."));
}

async function load() {
  const box = $("#history");
  const controller = new AbortController();
  if (view.loading) { view.loading.abort(); }
  view.loading = controller;
  box.setAttribute("aria-busy", "true");
  const query = new URLSearchParams({ limit: String(LIMIT) });
  if (view.status) { query.set("status", view.status); }
  const cursor = view.cursors[view.page];
  if (cursor) { query.set("before", cursor); }
  try {
    const page = await getJson(`/api/v1/jobs?${query}`, { signal: controller.signal });
    view.cursors[view.page + 1] = page.next || null;
    fill(box, page.jobs.length ? table(page.jobs) : emptyState());
    $("#older").disabled = !page.next;
    $("#newer").disabled = view.page === 0;
    $(".pager").hidden = !page.next && view.page === 0;
    $("#page-number").textContent = view.page > 0 || page.next ? `Page ${view.page + 1}` : "";
    $("#history-status").textContent = `${page.jobs.length} ${page.jobs.length === 1 ? "job" : "jobs"} shown, page ${view.page + 1}`;
  } catch (err) {
    if (err.name === "AbortError") { return; }
    fill(box, h("div", { class: "failure" }, h("strong", {}, "The history cannot be loaded: "), err.message, " ",
      h("button", { type: "button", class: "secondary small", on: { click: load } }, "Try again")));
  } finally {
    if (view.loading === controller) {
      view.loading = null;
      box.setAttribute("aria-busy", "false");
    }
  }
}

function remember() {
  const query = new URLSearchParams();
  if (view.status) { query.set("status", view.status); }
  window.history.replaceState(null, "", `${window.location.pathname}${query.size ? `?${query}` : ""}`);
}

function restart() {
  view.cursors = [null];
  view.page = 0;
  remember();
  load();
}

markCurrentNav();
view.status = new URLSearchParams(window.location.search).get("status") || "";
$("#status-filter").value = view.status;
$("#status-filter").addEventListener("change", (event) => { view.status = event.target.value; restart(); });
$("#filters").addEventListener("submit", (event) => { event.preventDefault(); restart(); });
$("#refresh").addEventListener("click", () => load());
$("#older").addEventListener("click", () => { view.page += 1; load(); $("#main").scrollIntoView(); });
$("#newer").addEventListener("click", () => { view.page = Math.max(0, view.page - 1); load(); });
load();
