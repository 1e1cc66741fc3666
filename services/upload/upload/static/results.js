// A finished job: before and after side by side, with sizes and a download; or why it failed.

import { headline, jobUrl } from "./api.js";
import { h } from "./dom.js";
import { bytes, dimensions, downloadName, formatName, sizeChange } from "./format.js";

function facts(image, extra) {
  if (!image) { return []; }
  return [
    h("span", { class: "dims" }, dimensions(image.width, image.height)),
    h("span", {}, formatName(image.format)),
    h("span", { title: `${image.bytes} bytes` }, bytes(image.bytes)),
    extra ? h("span", { class: "change" }, extra) : null,
  ];
}

/** An image, or a note where the browser cannot show it (TIFF, say). */
function picture(src, alt, image) {
  const img = h("img", { src, alt, decoding: "async" });
  img.addEventListener("error", () => {
    const format = image && image.format ? formatName(image.format) : "this";
    img.replaceWith(h("p", { class: "hint no-preview" }, `No preview: this browser cannot show ${format} images. Download it to see it.`));
  });
  return img;
}

function figure(role, title, src, image, alt, extra) {
  return h("figure", {
    class: ["shot", role],
    dataset: image ? { width: image.width, height: image.height, bytes: image.bytes, format: image.format } : {},
  },
  h("div", { class: "frame" }, picture(src, alt, image)),
  h("figcaption", {}, h("strong", {}, title), facts(image, extra)));
}

/** Before/after for a succeeded job; `beforeSrc` is the local preview when there is one. */
export function beforeAfter(job, { beforeSrc = null } = {}) {
  const name = job.filename || "the image";
  const before = figure("before", "Before", beforeSrc || jobUrl(job.id, "input"), job.input,
    `Before: ${name} as uploaded`);
  const after = figure("after", "After", jobUrl(job.id, "result"), job.output,
    `After: ${name} processed`, job.input && job.output ? sizeChange(job.input.bytes, job.output.bytes) : "");
  return h("div", { class: "compare" }, before, after);
}

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
