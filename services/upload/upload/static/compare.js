// Before and after in one frame, Squoosh-style: both images drawn over the same box (so a
// 64 px result is seen at the scale of its 640 px original, not beside it at its own size),
// a divider to drag or move with the keyboard, zoom (fit, 1:1, in, out), and a loading
// state until both images are decoded: never an empty checkerboard.

import { jobUrl } from "./api.js";
import { h } from "./dom.js";
import { bytes, dimensions, formatName, sizeChange } from "./format.js";

const ZOOM_MIN = 1 / 16;
const ZOOM_MAX = 16;
const KEY_STEPS = { ArrowLeft: -5, ArrowDown: -5, ArrowRight: 5, ArrowUp: 5, PageDown: -20, PageUp: 20 };

function caption(role, title, image, change) {
  const facts = image
    ? [dimensions(image.width, image.height), formatName(image.format),
      h("span", { title: `${image.bytes} bytes` }, bytes(image.bytes))]
    : [];
  return h("p", { class: ["cmp-caption", role] }, h("strong", {}, title),
    facts.map((fact) => [" \u00b7 ", fact]),
    change ? [" \u00b7 ", h("span", { class: "change", title: "size of the result against the original" }, change)] : null);
}

function layer(role, src, alt, image) {
  const img = h("img", { src, alt, decoding: "async", draggable: "false" });
  return h("figure", {
    class: ["shot", "cmp-layer", role],
    dataset: image ? { width: image.width, height: image.height, bytes: image.bytes, format: image.format } : {},
  }, img);
}

/** Resolves true once the image is decoded, false if the browser cannot show it. */
function settled(img) {
  if (img.complete && img.naturalWidth > 0) { return Promise.resolve(true); }
  return new Promise((resolve) => {
    img.addEventListener("load", () => resolve(img.naturalWidth > 0), { once: true });
    img.addEventListener("error", () => resolve(false), { once: true });
  });
}

function zoomButton(text, label, onClick) {
  return h("button", { type: "button", class: ["secondary", "small"], "aria-label": label, on: { click: onClick } }, text);
}

/** The divider as a slider: the share of the frame, from the left, that shows Before. */
function divider(state) {
  const handle = h("div", {
    class: "cmp-divider", role: "slider", tabindex: "0",
    "aria-label": "Divider: before on the left, after on the right",
    "aria-valuemin": "0", "aria-valuemax": "100",
  }, h("span", { class: "cmp-knob", "aria-hidden": "true" }, "\u25c2\u25b8"));
  handle.addEventListener("keydown", (event) => {
    const step = KEY_STEPS[event.key];
    let next = null;
    if (step !== undefined) { next = state.split + (event.shiftKey ? Math.sign(step) : step); }
    if (event.key === "Home") { next = 0; }
    if (event.key === "End") { next = 100; }
    if (next === null) { return; }
    event.preventDefault();
    state.setSplit(next);
  });
  return handle;
}

function dragging(stage, state) {
  const follow = (event) => {
    const rect = stage.getBoundingClientRect();
    if (rect.width > 0) { state.setSplit(((event.clientX - rect.left) / rect.width) * 100); }
  };
  stage.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) { return; }
    stage.setPointerCapture(event.pointerId);
    follow(event);
    state.handle.focus({ preventScroll: true });
  });
  stage.addEventListener("pointermove", (event) => {
    if (stage.hasPointerCapture(event.pointerId)) { follow(event); }
  });
}

/** Zoom against the original's pixels: "fit" (never above 1:1) or a scale. */
function zoomer({ stage, viewport, buttons, zoomText, state }) {
  return (target) => {
    if (!state.natural) { return; }
    state.fit = target === "fit";
    const [width, height] = state.natural;
    const room = Math.max(1, viewport.clientWidth);
    const fitted = Math.min(1, room / width, (window.innerHeight * 0.7) / height);
    state.scale = state.fit ? fitted : Math.min(ZOOM_MAX, Math.max(ZOOM_MIN, target));
    stage.style.width = `${Math.round(width * state.scale)}px`;
    stage.style.height = `${Math.round(height * state.scale)}px`;
    stage.classList.toggle("pixelated", state.scale >= 2);
    zoomText.textContent = `${Math.round(state.scale * 100)} % of the original's pixels${state.fit ? " (fit)" : ""}`;
    buttons.fit.setAttribute("aria-pressed", String(state.fit));
    buttons.actual.setAttribute("aria-pressed", String(!state.fit && state.scale === 1));
    buttons.out.disabled = state.scale <= ZOOM_MIN;
    buttons.in.disabled = state.scale >= ZOOM_MAX;
  };
}

/** Both images of a finished job, compared in one frame. `beforeSrc`: a local preview. */
export function comparison(job, { beforeSrc = null } = {}) {
  const name = job.filename || "the image";
  const before = layer("before", beforeSrc || jobUrl(job.id, "input"), `Before: ${name} as uploaded`, job.input);
  const after = layer("after", jobUrl(job.id, "result"), `After: ${name} processed`, job.output);
  const tags = [h("span", { class: "cmp-tag before", "aria-hidden": "true" }, "Before"),
    h("span", { class: "cmp-tag after", "aria-hidden": "true" }, "After")];
  const stage = h("div", { class: "cmp-stage", hidden: true }, before, after, tags);
  const loading = h("p", { class: "cmp-loading", role: "status" }, "Loading the images\u2026");
  const viewport = h("div", { class: "cmp-viewport", "aria-busy": "true" }, loading, stage);
  const zoomText = h("output", { class: "cmp-zoom", "aria-live": "polite" }, "");
  const state = { split: 50, scale: 1, fit: true, natural: null, handle: null };
  const buttons = {
    fit: zoomButton("Fit", "Fit", () => state.zoom("fit")),
    actual: zoomButton("1:1", "1:1", () => state.zoom(1)),
    out: zoomButton("\u2212", "Zoom out", () => state.zoom(state.scale / 2)),
    in: zoomButton("+", "Zoom in", () => state.zoom(state.scale * 2)),
  };
  const toolbar = h("div", { class: "cmp-toolbar", role: "group", "aria-label": "Zoom", hidden: true },
    buttons.fit, buttons.actual, buttons.out, buttons.in, zoomText);
  const root = h("div", { class: "comparison", dataset: { state: "loading" } }, toolbar, viewport,
    h("div", { class: "cmp-captions" }, caption("before", "Before", job.input),
      caption("after", "After", job.output,
        job.input && job.output ? sizeChange(job.input.bytes, job.output.bytes) : "")));

  state.setSplit = (value) => {
    state.split = Math.round(Math.min(100, Math.max(0, value)));
    stage.style.setProperty("--split", `${state.split}%`);
    state.handle.setAttribute("aria-valuenow", String(state.split));
    state.handle.setAttribute("aria-valuetext", `${state.split}% before, ${100 - state.split}% after`);
    tags[0].hidden = state.split < 10;
    tags[1].hidden = state.split > 90;
  };
  state.zoom = zoomer({ stage, viewport, buttons, zoomText, state });
  state.handle = divider(state);
  stage.append(state.handle);
  state.setSplit(50);
  dragging(stage, state);
  reveal(root, { before, after, stage, loading, viewport, toolbar, state });
  return root;
}

/** Once both images settle: the frame at Fit, or the one that can be shown and a note. */
async function reveal(root, parts) {
  const { before, after, stage, loading, viewport, toolbar, state } = parts;
  const [beforeOk, afterOk] = await Promise.all([settled(before.firstChild), settled(after.firstChild)]);
  const shown = beforeOk ? before.firstChild : after.firstChild;
  viewport.setAttribute("aria-busy", "false");
  if (!beforeOk && !afterOk) {
    root.dataset.state = "unavailable";
    loading.textContent = "No preview: this browser cannot show these images. Download the result to see it.";
    return;
  }
  if (!beforeOk || !afterOk) {
    const missing = beforeOk ? after : before;
    missing.hidden = true;
    state.handle.hidden = true;
    const format = formatName(missing.dataset.format) || "this";
    root.dataset.missing = beforeOk ? "after" : "before";
    root.append(h("p", { class: "hint no-preview" },
      `No preview of the ${root.dataset.missing}: this browser cannot show ${format} images.`));
    state.setSplit(beforeOk ? 100 : 0);
  }
  state.natural = [shown.naturalWidth, shown.naturalHeight];
  loading.hidden = true;
  stage.hidden = false;
  toolbar.hidden = false;
  state.zoom("fit");
  root.dataset.state = "ready";
  new ResizeObserver(() => { if (state.fit) { state.zoom("fit"); } }).observe(viewport);
}
