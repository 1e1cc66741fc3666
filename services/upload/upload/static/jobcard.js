// One image on the upload page, from choosing it to its result: preview, upload
// progress, live status and steps, then before/after and download (or why not).

import { getJson, headline, jobPage, jobUrl, postJson, sendDelete } from "./api.js";
import { announce, badge, fill, h } from "./dom.js";
import { followJob, TERMINAL } from "./follow.js";
import { bytes, dimensions, duration, elapsed, parseTime, STATUS_TEXT, stepText } from "./format.js";
import { beforeAfter, downloadLink } from "./results.js";

export class JobCard {
  constructor(file, { onRemove, onState } = {}) {
    this.onState = onState || (() => {});
    this.file = file;
    this.preview = null; // an object URL, once the header says the image is small enough
    this.job = null;
    this.done = new Set(); // indexes of operations applied
    this.steps = [];
    this.stepIds = new Set(); // the event ids of the steps shown
    this.build(onRemove);
    this.setState("ready", "Ready to upload");
  }

  build(onRemove) {
    // No preview until the header says the image is small enough to decode (inspected).
    const thumb = h("span", { class: "thumb thumb-none", "aria-hidden": "true" });
    this.thumb = thumb;
    this.facts = h("p", { class: "hint" }, bytes(this.file.size));
    this.badge = badge("ready", "Ready");
    this.statusLine = h("p", { class: "status-line" });
    this.elapsedText = h("span", { class: "elapsed" });
    this.progress = h("progress", { max: "100", value: "0", hidden: true, "aria-label": `Upload of ${this.file.name}` });
    this.chips = h("ol", { class: "chips", "aria-label": "Operations", hidden: true });
    this.body = h("div", { class: "card-body" });
    this.removeButton = h("button", {
      type: "button", class: "icon subtle card-remove", "aria-label": `Remove ${this.file.name}`,
      on: { click: () => onRemove && onRemove(this) },
    }, "\u2715");
    this.actions = h("div", { class: "card-actions" });
    this.stepsList = h("ol", { class: "steps-log" });
    this.stepsBox = h("details", { class: "steps-box", hidden: true },
      h("summary", {}, "Steps so far"), this.stepsList);
    this.element = h("li", { class: "card" },
      h("div", { class: "card-head" },
        thumb,
        h("div", { class: "card-title" },
          h("h3", { class: "file-name", title: this.file.name }, this.file.name),
          this.facts),
        this.badge,
        this.removeButton),
      h("div", { class: "card-live", "aria-live": "polite" }, this.statusLine),
      h("div", { class: "card-meta" }, this.elapsedText),
      this.progress,
      this.chips,
      this.body,
      this.stepsBox,
      this.actions);
  }

  setState(state, text) {
    const changed = this.state !== state;
    this.state = state;
    this.element.dataset.status = state;
    this.badge.dataset.status = state;
    this.badge.textContent = STATUS_TEXT[state] || state;
    this.statusLine.textContent = text;
    this.removeButton.hidden = !["ready", "refused"].includes(state);
    if (changed) { this.onState(this); }
  }

  /**
   * What the file's header says ({format, width, height}, or null: not read): its size
   * in the facts, and a preview only when `previewable` (a huge image is never decoded
   * to draw a small thumbnail).
   */
  inspected(header, previewable) {
    if (header && header.width && header.height) {
      this.facts.textContent = `${bytes(this.file.size)} \u00b7 ${dimensions(header.width, header.height)}`;
    }
    const none = (text) => h("span", { class: "thumb thumb-none", "aria-hidden": "true", title: "No preview" }, text);
    if (!previewable) {
      const shown = none(header && header.format ? header.format.toUpperCase() : "?");
      this.thumb.replaceWith(shown);
      this.thumb = shown;
      return;
    }
    this.preview = URL.createObjectURL(this.file);
    const img = h("img", { class: "thumb", alt: "", src: this.preview, decoding: "async" });
    img.addEventListener("error", () => { img.replaceWith(none("?")); });
    this.thumb.replaceWith(img);
    this.thumb = img;
  }

  /**
   * A problem found before upload ({code, headline, detail}): said once, next to the
   * file (the page announces the files added and why any is refused, together).
   */
  precheck(problem) {
    const text = problem.detail ? `${problem.headline}: ${problem.detail}` : problem.headline;
    this.setState("refused", text);
    this.statusLine.dataset.code = problem.code;
    fill(this.actions);
  }

  uploading(fraction) {
    const percent = Math.round(fraction * 100);
    this.progress.hidden = false;
    this.progress.value = percent;
    this.setState("uploading", percent >= 100 ? "Uploaded; checking the image\u2026" : `Uploading\u2026 ${percent}%`);
  }

  waiting(error, seconds) {
    this.progress.hidden = true;
    this.setState("waiting", `${headline(error.code)}: ${error.message}. Trying again in ${seconds} s\u2026`);
  }

  refused(error, { onRetry } = {}) {
    this.progress.hidden = true;
    this.setState("refused", `${headline(error.code)}: ${error.message}`);
    this.statusLine.dataset.code = error.code;
    fill(this.actions, onRetry ? h("button", { type: "button", class: "secondary", on: { click: onRetry } }, "Try again") : null);
    announce(`${this.file.name} refused: ${error.message}`);
  }

  /** Accepted (202): follow the job live. */
  accepted(accepted, pipeline) {
    this.progress.hidden = true;
    this.element.dataset.jobId = accepted.id;
    this.pipeline = pipeline;
    this.job = { id: accepted.id, status: "queued", created_at: new Date().toISOString(), pipeline };
    fill(this.body);
    fill(this.actions, h("a", { href: jobPage(accepted.id), class: "details-link" }, "Job details"),
      h("button", { type: "button", class: "secondary small card-cancel", on: { click: () => this.cancel() } },
        "Cancel"));
    this.renderChips();
    this.update(this.job);
    this.timer = setInterval(() => this.tick(), 250);
    this.follower = followJob(accepted.id, {
      onStatus: (job) => this.update(job),
      onStep: (step) => this.step(step),
      onNote: (note) => { this.note = note; this.describe(); },
      onGone: (err) => this.finish({ ...this.job, status: "failed", error: { code: err.code, message: err.message } }),
    });
  }

  /** Retry the job, once confirmed: the card follows the new job (same image, same pipeline). */
  async retry() {
    if (!window.confirm(`Retry ${this.file.name}? A new job runs on the same image with the same pipeline.`)) { return; }
    const button = this.actions.querySelector(".card-retry");
    if (button) { button.disabled = true; }
    try {
      const accepted = await postJson(jobUrl(this.job.id, "retry"));
      this.restart(accepted);
    } catch (err) {
      this.statusLine.textContent = `Not retried: ${headline(err.code)}: ${err.message}`;
      if (button) { button.disabled = false; }
    }
  }

  /** Follow a new job of the same file (a retry) from the start. */
  restart(accepted) {
    this.finished = false;
    this.done = new Set();
    this.steps = [];
    this.stepIds = new Set();
    this.lastStep = null;
    this.note = null;
    delete this.statusLine.dataset.code;
    fill(this.stepsList);
    this.stepsBox.hidden = true;
    fill(this.body);
    this.accepted(accepted, this.pipeline);
  }

  /** Ask to cancel the job, once confirmed; its status (followed live) shows how it ends. */
  async cancel() {
    if (!window.confirm(`Cancel the job of ${this.file.name}? It stops, and no result is kept.`)) { return; }
    const button = this.actions.querySelector(".card-cancel");
    if (button) { button.disabled = true; }
    try {
      await postJson(jobUrl(this.job.id, "cancel"));
    } catch (err) {
      this.note = `${headline(err.code)}: ${err.message}`;
      this.describe();
      if (button) { button.disabled = false; }
    }
  }

  update(job) {
    this.job = { ...this.job, ...job };
    if (job.pipeline) { this.pipeline = job.pipeline; }
    if (job.status === "succeeded") { this.pipeline.forEach((_, index) => this.done.add(index)); }
    this.renderChips();
    this.describe();
    if (TERMINAL.has(job.status)) { this.finish(this.job); }
  }

  /**
   * One step of the job, from the progress stream: every step of the job comes once
   * (those before the stream opened first, any the live feed missed before the end),
   * each named by its event id, so the list is the job page's timeline: each event, and
   * each operation that image.processed lists. A step seen again (a reconnection starts
   * over) is skipped; a late one takes its place by time.
   */
  step(step) {
    if (step.id !== undefined) {
      if (this.stepIds.has(step.id)) { return; }
      this.stepIds.add(step.id);
    }
    // The operations applied are listed in image.processed: each shown done, as a step.
    if (step.type === "image.processed" && Array.isArray(step.operations)) {
      for (const operation of step.operations) {
        this.addStep({ ...operation, type: "operation.applied", time: step.time, service: "imageproc", attempt: step.attempt });
      }
    }
    this.addStep(step);
    if (step.type === "job.processing-started" && this.job.status === "queued") { this.job.status = "processing"; }
    if (step.type !== "upload.received" && step.type !== "image.uploaded") { this.lastStep = step; }
    this.renderChips();
    this.describe();
  }

  addStep(step) {
    this.steps.push(step);
    if (step.type === "operation.applied" && typeof step.index === "number") { this.done.add(step.index); }
    const start = parseTime(this.job.created_at);
    const at = parseTime(step.time);
    const offset = Number.isNaN(start) || Number.isNaN(at) ? "" : `+${duration(Math.max(0, at - start))}`;
    const item = h("li", { dataset: { type: step.type, time: Number.isNaN(at) ? "" : String(at) } },
      h("span", { class: "when" }, offset),
      h("span", { class: "what" }, stepText(step)),
      h("span", { class: "who" }, step.service || ""),
      step.duration_ms !== undefined ? h("span", { class: "took" }, duration(step.duration_ms)) : null);
    const later = [...this.stepsList.children].find((other) => Number(other.dataset.time) > at);
    this.stepsList.insertBefore(item, later || null);
    this.stepsBox.hidden = false;
    this.stepsBox.querySelector("summary").textContent = `Steps (${this.steps.length})`;
  }

  /** The status line: what is happening now, in words. */
  describe() {
    const job = this.job;
    if (!job || TERMINAL.has(job.status)) { return; }
    let text = "Queued: waiting for a worker";
    if (job.status === "processing" || this.done.size > 0) {
      const next = this.pipeline.findIndex((_, index) => !this.done.has(index));
      text = next >= 0
        ? `Running ${this.pipeline[next].op} (step ${next + 1} of ${this.pipeline.length})`
        : "Saving the result";
    }
    if (this.lastStep && this.lastStep.type === "job.retry-scheduled") {
      const reason = this.lastStep.error && this.lastStep.error.message;
      text = `Attempt ${this.lastStep.attempt} failed${reason ? ` (${reason})` : ""}; retrying`;
    }
    if (this.note) { text = `${text}. ${this.note}`; }
    const state = job.status === "processing" || this.done.size > 0 ? "processing" : "queued";
    if (this.statusLine.textContent !== text || this.state !== state) { this.setState(state, text); }
  }

  renderChips() {
    const pipeline = this.pipeline || [];
    this.chips.hidden = pipeline.length === 0;
    const running = this.job && this.job.status === "processing"
      ? pipeline.findIndex((_, index) => !this.done.has(index)) : -1;
    fill(this.chips, pipeline.map((step, index) => {
      const state = this.done.has(index) ? "done" : index === running ? "running" : "pending";
      const words = { done: "done", running: "running", pending: "to do" }[state];
      return h("li", { class: "chip-step", dataset: { state } },
        step.op, h("span", { class: "visually-hidden" }, `: ${words}`));
    }));
  }

  tick() {
    if (this.job) { this.elapsedText.textContent = `${elapsed(this.job, false)} since upload`; }
  }

  finish(job) {
    clearInterval(this.timer);
    if (this.follower) { this.follower.stop(); }
    if (this.finished) { return; }
    this.finished = true;
    this.elapsedText.textContent = "";
    if (job.status === "succeeded") {
      this.setState("succeeded", `Done in ${elapsed(job, true)}`);
      fill(this.body, beforeAfter(job, { beforeSrc: this.preview }));
      fill(this.actions, downloadLink(job),
        h("a", { href: jobPage(job.id), class: "details-link" }, "Details and provenance"),
        this.eraseButton());
      announce(`${this.file.name} is done`);
    } else if (job.status === "cancelled") {
      this.setState("cancelled", `Cancelled by ${job.cancelled_by || "its owner"}`);
      fill(this.actions, h("a", { href: jobPage(job.id), class: "details-link" }, "Details and provenance"),
        this.retryButton(), this.eraseButton());
      announce(`${this.file.name} was cancelled`);
    } else {
      const error = job.error || { code: "unknown", message: "the job failed" };
      this.setState("failed", `${headline(error.code)}: ${error.message}`);
      this.statusLine.dataset.code = error.code;
      fill(this.actions, h("a", { href: jobPage(job.id), class: "details-link" }, "Details and provenance"),
        this.retryButton(), this.eraseButton());
      announce(`${this.file.name} failed`);
    }
  }

  /** Retry, for a job that failed or was cancelled (not one that never became a job). */
  retryButton() {
    if (!this.job || (this.job.error && this.job.error.code === "not_found")) { return null; }
    return h("button", { type: "button", class: "secondary small card-retry", on: { click: () => this.retry() } },
      "Retry");
  }

  /** Delete, for a finished job (one that became a job): its images go, its record stays. */
  eraseButton() {
    if (!this.job || (this.job.error && this.job.error.code === "not_found")) { return null; }
    return h("button", { type: "button", class: "secondary small danger card-erase", on: { click: () => this.erase() } },
      "Delete");
  }

  /** Erase the job, once confirmed: the card then says its images are gone (no result shown). */
  async erase() {
    const question = `Delete the images of ${this.file.name} for good? The uploaded image and the result `
      + "are deleted from the server (one another job still uses stays for it); the job's record stays.";
    if (!window.confirm(question)) { return; }
    const button = this.actions.querySelector(".card-erase");
    if (button) { button.disabled = true; }
    try {
      await sendDelete(jobUrl(this.job.id));
      this.job = { ...this.job, ...(await getJson(jobUrl(this.job.id))) };
      this.erased();
    } catch (err) {
      this.statusLine.textContent = `Not deleted: ${headline(err.code)}: ${err.message}`;
      if (button) { button.disabled = false; }
    }
  }

  /** The job is erased: no image of it is shown any more, only what happened. */
  erased() {
    this.element.dataset.erased = "true";
    fill(this.body, h("p", { class: "hint erased-note" },
      `Deleted by ${this.job.erased_by || "you"}: the images are gone from the server; the job's record stays.`));
    fill(this.actions, h("a", { href: jobPage(this.job.id), class: "details-link" }, "Details and provenance"));
    announce(`${this.file.name}: images deleted`);
  }

  dispose() {
    clearInterval(this.timer);
    if (this.follower) { this.follower.stop(); }
    if (this.preview) { URL.revokeObjectURL(this.preview); }
    this.element.remove();
  }
}
