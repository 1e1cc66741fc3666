// "Download all": the succeeded results of the jobs on this page, as one zip
// (GET /api/v1/results.zip). Shown once a job of the batch has succeeded; uploads.js
// calls updateDownloadAll() whenever a card's state changes.

import { about } from "./api.js";
import { $, h } from "./dom.js";

// The server's bound on a zip (UPLOAD_ZIP_MAX_JOBS, from /api/v1/about); its default
// until it is known.
let maxJobs = 100;
about().then((info) => {
  const limit = info && info.limits && info.limits.zip_max_jobs;
  if (limit) { maxJobs = limit; updateDownloadAll(); }
}, () => {});

/** The zip of these jobs' results (ids are UUIDs: nothing in them needs escaping). */
export const resultsZipUrl = (ids) => `/api/v1/results.zip?ids=${ids.map(encodeURIComponent).join(",")}`;

function link() {
  let anchor = $("#download-all");
  if (!anchor) {
    anchor = h("a", { id: "download-all", class: "button secondary small download-all", download: "" }, "Download all");
    const clear = $("#clear-finished");
    if (!clear) { return null; }
    clear.before(anchor);
  }
  return anchor;
}

/** Show the link for the succeeded jobs listed (at most the server's bound), or hide it. */
export function updateDownloadAll() {
  const list = $("#jobs");
  const anchor = list && link();
  if (!anchor) { return; }
  const ids = [...list.children]
    .filter((card) => card.dataset.status === "succeeded" && card.dataset.jobId)
    .map((card) => card.dataset.jobId);
  anchor.hidden = ids.length === 0;
  if (!ids.length) { anchor.removeAttribute("href"); return; }
  const taken = ids.slice(0, maxJobs);
  anchor.href = resultsZipUrl(taken);
  anchor.textContent = ids.length > maxJobs ? `Download the first ${maxJobs} (zip)` : `Download all (${ids.length})`;
  anchor.title = `The ${taken.length} succeeded ${taken.length === 1 ? "result" : "results"} as one zip`;
}
