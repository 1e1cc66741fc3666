// An image's lineage on the job page: grouped by image (the jobs that made, used or led from
// it under each), long lists collapsed, and each link said in words ("made directly from
// this image by 8 jobs") instead of bare ids and "(1 on)".

import { getJson, jobPage, jobUrl } from "./api.js";
import { h } from "./dom.js";
import { ago, dimensions, formatName, localTime } from "./format.js";

const SHOWN = 5;
const SHOWN_NESTED = 3;
const jobs = new Map(); // job id -> Promise of its summary (file name, time), or null

const short = (sha) => `${sha.slice(0, 12)}\u2026`;
const plural = (count, one, many = `${one}s`) => `${count} ${count === 1 ? one : many}`;

function summary(jobId) {
  if (!jobs.has(jobId)) { jobs.set(jobId, getJson(jobUrl(jobId)).catch(() => null)); }
  return jobs.get(jobId);
}

/** Fill a job entry's file name and time once it is shown (not for the hidden ones). */
async function describe(item) {
  if (item.dataset.described || item.closest("[hidden]")) { return; }
  item.dataset.described = "true";
  const job = await summary(item.dataset.jobId);
  const meta = item.querySelector(".job-meta");
  if (!job || !meta) { return; }
  meta.append(" \u00b7 ", h("span", { class: "job-file" }, job.filename || "untitled"),
    " \u00b7 ", h("time", { datetime: job.created_at, title: localTime(job.created_at) }, ago(job.created_at)));
}

function jobEntry(jobId, currentId) {
  const item = h("li", { dataset: { jobId } },
    h("a", { href: jobPage(jobId) }, `job ${jobId.slice(0, 8)}`),
    jobId === currentId ? h("span", { class: "hint" }, " (this job)") : null,
    h("span", { class: "job-meta" }));
  return item;
}

/** Describe the job entries shown in `root` (after it is on the page, or uncovered). */
export function describeShown(root) {
  const items = [...root.querySelectorAll("li[data-job-id]")];
  if (root.matches("li[data-job-id]")) { items.push(root); }
  for (const item of items) { describe(item); }
}

/** A list showing its first `limit` items, and a button for the rest. */
function collapsible(cls, items, limit, noun) {
  const list = h("ul", { class: cls }, items);
  if (items.length <= limit) { return list; }
  const rest = items.slice(limit);
  for (const item of rest) { item.hidden = true; }
  const label = `Show all ${plural(items.length, noun)}`;
  const button = h("button", { type: "button", class: ["subtle", "small", "show-all"], "aria-expanded": "false" }, label);
  button.addEventListener("click", () => {
    const open = button.getAttribute("aria-expanded") !== "true";
    for (const item of rest) { item.hidden = !open; }
    button.setAttribute("aria-expanded", String(open));
    button.textContent = open ? `Show the first ${limit}` : label;
    if (open) { for (const item of rest) { describeShown(item); } }
  });
  return [list, button];
}

function jobList(cls, ids, currentId, limit = SHOWN) {
  const ordered = [...new Set(ids)].sort((a, b) => Number(b === currentId) - Number(a === currentId));
  return collapsible(cls, ordered.map((id) => jobEntry(id, currentId)), limit, "job");
}

/** Links of one direction grouped by the image at their other end, nearest first. */
function byImage(links) {
  const groups = new Map();
  for (const link of links) {
    const group = groups.get(link.sha256) || { sha256: link.sha256, depth: link.depth, jobs: [] };
    group.depth = Math.min(group.depth, link.depth);
    group.jobs.push(link.job_id);
    groups.set(link.sha256, group);
  }
  return [...groups.values()].sort((a, b) => (a.depth - b.depth) || (b.jobs.length - a.jobs.length));
}

function relation(group, direction) {
  const jobsText = plural(new Set(group.jobs).size, "job");
  if (direction === "back") {
    return group.depth === 1 ? `this image was made directly from it, by ${jobsText}`
      : `${group.depth} steps back (an image this one came from, through ${group.depth - 1} more), by ${jobsText}`;
  }
  return group.depth === 1 ? `made directly from this image by ${jobsText}`
    : `${group.depth} steps on (made from an image made from this one), by ${jobsText}`;
}

function imageGroups(cls, links, direction, currentId) {
  const groups = byImage(links).map((group) => h("li", { dataset: { sha256: group.sha256, depth: group.depth } },
    h("span", { class: "sha", title: group.sha256 }, `image ${short(group.sha256)}`), ": ",
    relation(group, direction),
    jobList("jobs", group.jobs, currentId, SHOWN_NESTED)));
  return collapsible(cls, groups, SHOWN, "image");
}

function imageLine(image) {
  if (!image || !image.width) { return null; }
  return h("p", { class: "hint" }, `${dimensions(image.width, image.height)} ${formatName(image.format)}`);
}

/** One image's lineage: where it came from and what it led to, with links to the jobs. */
export function lineageCard(title, lineage, currentId) {
  const ancestors = lineage.ancestors || [];
  const descendants = lineage.descendants || [];
  const usedBy = lineage.used_by || [];
  const madeBy = lineage.produced_by || [];
  const images = new Set(descendants.map((link) => link.sha256)).size;
  return h("div", { class: "lineage-card", dataset: { sha256: lineage.sha256 } },
    h("h3", {}, title, " ", h("span", { class: "sha", title: lineage.sha256 }, short(lineage.sha256))),
    imageLine(lineage.image),
    ancestors.length || !madeBy.length ? [h("h4", {}, "Came from"), ancestors.length
      ? imageGroups("came-from", ancestors, "back", currentId)
      : h("p", { class: ["hint", "came-from"] }, "Uploaded: no job here made this image.")] : null,
    madeBy.length ? [h("h4", {}, `Made by ${plural(madeBy.length, "job")}`), jobList("made-by", madeBy, currentId)] : null,
    h("h4", { class: "used-by-title" }, usedBy.length ? `Used as input by ${plural(usedBy.length, "job")}` : "Used as input by"),
    usedBy.length ? jobList("used-by", usedBy, currentId) : h("p", { class: ["hint", "used-by"] }, "No job yet."),
    h("h4", {}, images ? `Led to ${plural(images, "image")}` : "Led to"),
    images ? imageGroups("led-to", descendants, "on", currentId)
      : h("p", { class: ["hint", "led-to"] }, "Nothing yet: upload this image to continue its lineage."));
}
