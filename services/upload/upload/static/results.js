// A finished job: before and after (compare.js), a download; or why it failed.

import { headline, jobUrl } from "./api.js";
import { h } from "./dom.js";
import { bytes, downloadName, formatName } from "./format.js";

/** Before/after for a succeeded job, in one frame (compare.js); `beforeSrc`: the local preview. */
export { comparison as beforeAfter } from "./compare.js";

export function downloadLink(job) {
  const output = job.output || {};
  return h("a", {
    class: "button download", href: jobUrl(job.id, "result"), download: downloadName(job),
  }, `Download ${formatName(output.format)}`.trim(), output.bytes !== undefined ? h("span", { class: "download-size" }, ` (${bytes(output.bytes)})`) : null);
}

/** Why a job failed (or was refused), in plain words. */
export function failure(error) {
  const detail = error || { code: "unknown", message: "the job failed" };
  return h("div", { class: "failure" },
    h("strong", {}, `${headline(detail.code)}: `),
    h("span", { class: "failure-message" }, detail.message),
    detail.code ? h("span", { class: "code" }, ` (${detail.code})`) : null);
}
