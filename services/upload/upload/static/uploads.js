// The upload page: choose or drop images (one job each), build the pipeline, upload
// them with progress, and follow every job to its result.

import { about, operations, submitJob } from "./api.js";
import { updateDownloadAll } from "./batchzip.js";
import { Builder } from "./builder.js";
import { $, announce, fill, h, markCurrentNav } from "./dom.js";
import { JobCard } from "./jobcard.js";
import { checkFile, previewable } from "./precheck.js";
import { wireWebhookKey } from "./webhookkey.js";

const PARALLEL_UPLOADS = 3;
const MAX_ATTEMPTS = 3; // a 503 (busy, a dependency down) is retried after Retry-After
const MAX_WAIT_SECONDS = 30;

const page = {
  selected: [],
  builder: null,
  // The server's limits, for the checks before upload (none known: the server's word).
  limits: about().then((info) => (info && info.limits) || {}, () => ({})),
};

/** Check a chosen file before it may be sent (precheck.js); its preview if small enough. */
async function check(card) {
  try {
    const { problem, header } = await checkFile(card.file, await page.limits);
    card.inspected(header, previewable(header));
    if (problem) { card.precheck(problem); }
  } catch {
    card.inspected(null, false); // unreadable here: the server says what it is
  }
  updateSubmit();
}

function addFiles(files) {
  const added = [...files].map((file) => {
    const card = new JobCard(file, { onRemove: removeSelected, onState: showProgress });
    card.checked = check(card);
    page.selected.push(card);
    $("#selected").append(card.element);
    return card;
  });
  if (added.length) {
    hideFormError();
    Promise.all(added.map((card) => card.checked)).then(() => announceAdded(added));
  }
  updateSubmit();
}

/** One announcement for the files added: how many, how many ready, and why any is not. */
function announceAdded(added) {
  const refused = added.filter((card) => card.state === "refused");
  const why = refused.map((card) => `${card.file.name}: ${card.statusLine.textContent}`);
  announce([
    `${added.length} ${added.length === 1 ? "image" : "images"} added, ${readyCards().length} ready to upload.`,
    ...why,
  ].join(" "));
}

function removeSelected(card) {
  page.selected = page.selected.filter((other) => other !== card);
  card.dispose();
  updateSubmit();
  announce(`Removed ${card.file.name}`);
  $("#files").focus();
}

const readyCards = () => page.selected.filter((card) => card.state === "ready");

function updateSubmit() {
  const count = readyCards().length;
  $("#submit").textContent = count ? `Upload and process ${count} ${count === 1 ? "image" : "images"}` : "Upload and process";
  $("#selected-empty").hidden = page.selected.length > 0;
}

function showFormError(text) {
  const box = $("#form-error");
  box.textContent = text;
  box.hidden = false;
}

function hideFormError() { $("#form-error").hidden = true; }

async function submit(event) {
  event.preventDefault();
  hideFormError();
  await Promise.all(page.selected.map((card) => card.checked));
  const cards = readyCards();
  if (cards.length === 0) {
    showFormError(page.selected.length ? "None of the chosen images can be uploaded; see why on each." : "Choose at least one image first.");
    $("#files").focus();
    return;
  }
  if (page.builder && !page.builder.check()) { return; }
  const callbackUrl = $("#callback-url").value.trim();
  if (callbackUrl && !/^https?:\/\/[^\s/]+/i.test(callbackUrl)) {
    showFormError("The notify URL must be an http:// or https:// address.");
    $("#advanced").open = true;
    $("#callback-url").focus();
    return;
  }
  const pipeline = page.builder ? page.builder.pipeline() : [];
  page.selected = page.selected.filter((card) => !cards.includes(card));
  const jobs = $("#jobs");
  for (const card of [...cards].reverse()) { jobs.prepend(card.element); }
  $("#jobs-section").hidden = false;
  updateSubmit();
  showProgress();
  bringJobsIntoView();
  announce(`Uploading ${cards.length} ${cards.length === 1 ? "image" : "images"}`);
  const queue = cards.map((card) => () => upload(card, pipeline, callbackUrl));
  await Promise.all(Array.from({ length: PARALLEL_UPLOADS }, async () => {
    while (queue.length) { await queue.shift()(); }
  }));
}

async function upload(card, pipeline, callbackUrl, attempt = 1) {
  card.uploading(0);
  try {
    const onProgress = (fraction) => card.uploading(fraction);
    const accepted = await submitJob(card.file, pipeline, { onProgress, callbackUrl });
    card.accepted(accepted, pipeline);
  } catch (err) {
    if (err.status === 503 && attempt < MAX_ATTEMPTS) {
      await countdown(card, err, Math.min(err.retryAfter || 5, MAX_WAIT_SECONDS));
      return upload(card, pipeline, callbackUrl, attempt + 1);
    }
    const again = err.status === 0 || err.status === 503 || err.status >= 500;
    card.refused(err, { onRetry: again ? () => upload(card, pipeline, callbackUrl) : null });
  }
  return undefined;
}

async function countdown(card, error, seconds) {
  for (let left = seconds; left > 0; left -= 1) {
    card.waiting(error, left);
    await new Promise((resolve) => { setTimeout(resolve, 1000); });
  }
}

const FINISHED = new Set(["succeeded", "failed", "refused", "cancelled"]);

/**
 * "2 of 3 done" over the jobs listed, in a polite live region: said when it changes
 * (a card's state, not its upload percentage), so a screen reader hears the batch move
 * on without being interrupted.
 */
function showProgress() {
  const section = $("#jobs-section");
  if (!section) { return; }
  let box = $("#jobs-progress");
  if (!box) {
    box = h("p", { id: "jobs-progress", class: "jobs-progress", role: "status", "aria-live": "polite" });
    $(".section-head", section).after(box);
  }
  const states = [...$("#jobs").children].map((element) => element.dataset.status);
  const done = states.filter((state) => FINISHED.has(state)).length;
  const failed = states.filter((state) => state === "failed" || state === "refused").length;
  const text = states.length ? `${done} of ${states.length} done${failed ? `, ${failed} failed` : ""}` : "";
  if (box.textContent !== text) { box.textContent = text; }
  box.hidden = states.length === 0;
  updateDownloadAll();
}

/** After Upload: the jobs, not the button far above them (a phone shows one card's header). */
function bringJobsIntoView() {
  const title = $("#jobs-title");
  title.tabIndex = -1;
  title.focus({ preventScroll: true });
  const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  $("#jobs-section").scrollIntoView({ block: "start", behavior: still ? "auto" : "smooth" });
}

function clearFinished() {
  for (const element of [...$("#jobs").children]) {
    if (FINISHED.has(element.dataset.status)) { element.remove(); }
  }
  if ($("#jobs").children.length === 0) { $("#jobs-section").hidden = true; }
  showProgress();
}

function wireDropzone() {
  const zone = $("#dropzone");
  const hasFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
  zone.addEventListener("dragenter", (event) => { if (hasFiles(event)) { zone.classList.add("over"); } });
  zone.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) { return; }
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) { zone.classList.remove("over"); }
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    addFiles(event.dataTransfer.files);
  });
  // A file dropped next to the zone must not make the browser leave the page for it.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => { if (hasFiles(event)) { event.preventDefault(); } });
  }
  $("#files").addEventListener("change", (event) => {
    addFiles(event.target.files);
    event.target.value = ""; // choosing the same file again is a new job
  });
  document.addEventListener("paste", (event) => {
    const files = event.clipboardData && [...event.clipboardData.files];
    if (files && files.length) { addFiles(files); }
  });
}

async function loadBuilder() {
  const root = $("#builder");
  try {
    const [catalogue, info] = await Promise.all([operations(), about().catch(() => null)]);
    const limits = (info && info.limits) || {};
    page.builder = new Builder(root, catalogue, { maxOps: limits.pipeline_max_ops || null });
    document.body.dataset.ready = "true";
  } catch (err) {
    fill(root, h("div", { class: "failure" },
      h("strong", {}, "The list of operations cannot be loaded: "), err.message, " ",
      h("button", { type: "button", class: "secondary", on: { click: loadBuilder } }, "Try again")));
  }
}

markCurrentNav();
wireDropzone();
$("#upload-form").addEventListener("submit", submit);
$("#clear-finished").addEventListener("click", clearFinished);
wireWebhookKey();
updateSubmit();
loadBuilder();
