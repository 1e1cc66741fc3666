// Pipelines kept beyond one page view: the last one (restored after a reload), named presets
// (both in this browser's localStorage) and links that carry a pipeline in their fragment
// (#pipeline=<JSON>), so a pipeline can be shared. Whatever comes back from storage or a
// link is checked like typed JSON: a pipeline that does not load is reported, never
// applied in part.

import { announce, fill, h, uid } from "./dom.js";

export const BUILT_IN_PRESETS = [
  { name: "Web thumbnail", pipeline: [{ op: "thumbnail", width: 256, height: 256 }] },
  { name: "Dither like the original", pipeline: [{ op: "dither", method: "floyd-steinberg" }] },
  {
    name: "AVIF for the web",
    pipeline: [{ op: "thumbnail", width: 1600, height: 1600 }, { op: "convert", format: "avif" }],
  },
];

const LAST_KEY = "imagemesh.pipeline.last";
const PRESETS_KEY = "imagemesh.pipeline.presets";
const FRAGMENT = "pipeline=";

// Storage can be off (private modes, policies): the page then works without it.
function readStored(key) {
  try {
    const text = window.localStorage.getItem(key);
    return text === null ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}

function writeStored(key, value) {
  try { window.localStorage.setItem(key, JSON.stringify(value)); } catch { /* storage off */ }
}

function storedPresets() {
  const value = readStored(PRESETS_KEY);
  return Array.isArray(value)
    ? value.filter((p) => p && typeof p.name === "string" && Array.isArray(p.pipeline)) : [];
}

/**
 * The link of a pipeline: the upload page (this page, or `page` from another one, e.g. a
 * job's "run again"), with the pipeline in the fragment.
 */
export const linkTo = (pipeline, page = window.location.pathname) =>
  `${page}#${FRAGMENT}${encodeURIComponent(JSON.stringify(pipeline))}`;

/** The pipeline a fragment carries: {value} or {problem}; null when it carries none. */
function fromFragment(hash) {
  const text = hash.replace(/^#/, "");
  if (!text.startsWith(FRAGMENT)) { return null; }
  try {
    return { value: JSON.parse(decodeURIComponent(text.slice(FRAGMENT.length))) };
  } catch (err) {
    return { problem: `it is not valid JSON (${err.message})` };
  }
}

export class SavedPipelines {
  /** @param builder  the Builder: `load(value)` → problems, `pipeline()`, `usePreset` */
  constructor(builder) {
    this.builder = builder;
    this.last = readStored(LAST_KEY); // read before the first change overwrites it
    this.presets = storedPresets();
    this.presetsElement = h("div", { class: "presets", role: "group", "aria-label": "Presets" });
    this.sourceError = h("div", { class: "error-summary", id: "pipeline-source-error", role: "alert", tabindex: "-1", hidden: true });
    this.shareElement = this.renderShare();
    this.renderPresets();
    window.addEventListener("hashchange", () => this.loadFragment());
  }

  renderShare() {
    const id = uid("preset-name");
    this.nameInput = h("input", { id, type: "text", maxlength: 60, autocomplete: "off", placeholder: "e.g. Blog photos" });
    this.link = h("a", { class: "share-link", href: linkTo([]), on: { click: (event) => this.copyLink(event) } },
      "Link to this pipeline");
    this.shareState = h("p", { class: "hint", role: "status" });
    return h("div", { class: "saved" },
      h("div", { class: "save-preset" },
        h("label", { for: id }, "Preset name"),
        h("div", { class: "add-op-row" }, this.nameInput,
          h("button", { type: "button", class: "secondary", on: { click: () => this.save() } }, "Save as preset"))),
      h("p", { class: "share" }, this.link, " ",
        h("span", { class: "hint" }, "(a link that opens this page with this pipeline; click to copy it)")),
      this.shareState);
  }

  renderPresets() {
    const chip = (preset, custom) => h("span", { class: "preset" },
      h("button", { type: "button", class: "chip", on: { click: () => this.use(preset) } }, preset.name),
      custom ? h("button", {
        type: "button", class: "chip-delete", "aria-label": `Delete preset ${preset.name}`,
        title: `Delete preset ${preset.name}`, on: { click: () => this.remove(preset) },
      }, "\u2715") : null);
    fill(this.presetsElement,
      h("span", { class: "presets-label", "aria-hidden": "true" }, "Presets:"),
      BUILT_IN_PRESETS.map((preset) => chip(preset, false)),
      this.presets.map((preset) => chip(preset, true)),
      h("button", { type: "button", class: "chip subtle", on: { click: () => this.builder.clear() } }, "Clear"));
  }

  /** After the builder is drawn: the link's pipeline if there is one, else the last one. */
  restore() {
    if (this.loadFragment()) { return; }
    if (Array.isArray(this.last) && this.last.length) {
      this.load(this.last, "Your last pipeline was not restored");
    }
  }

  loadFragment() {
    const found = fromFragment(window.location.hash);
    if (!found) { return false; }
    // The fragment has done its work: the address is the page again, reloads restore the last.
    window.history.replaceState(null, "", `${window.location.pathname}${window.location.search}`);
    const heading = "The pipeline in the link was not loaded";
    if (found.problem) {
      this.report(heading, [{ index: null, message: found.problem }]);
    } else if (this.load(found.value, heading)) {
      announce(`Loaded the pipeline from the link: ${found.value.map((s) => s.op).join(", ") || "no operations"}`);
    }
    return true;
  }

  load(value, heading) {
    const problems = this.builder.load(value);
    if (problems.length) { this.report(heading, problems); } else { this.hideReport(); }
    return problems.length === 0;
  }

  report(heading, problems) {
    fill(this.sourceError,
      h("p", { class: "error-title" }, `${heading}:`),
      h("ul", {}, problems.map((problem) => h("li", {}, problem.message))),
      h("button", { type: "button", class: "secondary small", on: { click: () => this.hideReport() } }, "Dismiss"));
    this.sourceError.hidden = false;
    this.sourceError.focus();
  }

  hideReport() { this.sourceError.hidden = true; }

  use(preset) {
    if (this.load(preset.pipeline, `The preset \u201c${preset.name}\u201d was not loaded`)) {
      announce(`Preset \u201c${preset.name}\u201d: ${preset.pipeline.map((s) => s.op).join(", ") || "no operations"}`);
    }
  }

  save() {
    const name = this.nameInput.value.trim();
    if (!name) {
      this.shareState.textContent = "Give the preset a name first.";
      this.nameInput.focus();
      return;
    }
    const replaced = this.presets.some((preset) => preset.name === name);
    this.presets = [...this.presets.filter((preset) => preset.name !== name), { name, pipeline: this.builder.pipeline() }];
    writeStored(PRESETS_KEY, this.presets);
    this.renderPresets();
    this.nameInput.value = "";
    this.shareState.textContent = `${replaced ? "Replaced" : "Saved"} the preset \u201c${name}\u201d in this browser.`;
  }

  remove(preset) {
    this.presets = this.presets.filter((other) => other.name !== preset.name);
    writeStored(PRESETS_KEY, this.presets);
    this.renderPresets();
    this.shareState.textContent = `Deleted the preset \u201c${preset.name}\u201d.`;
    this.nameInput.focus();
  }

  /** The builder changed: remember it, and keep the link current. */
  changed(pipeline) {
    writeStored(LAST_KEY, pipeline);
    this.link.href = linkTo(pipeline);
  }

  async copyLink(event) {
    event.preventDefault();
    const url = new URL(this.link.getAttribute("href"), window.location.href).href;
    try {
      await navigator.clipboard.writeText(url);
      this.shareState.textContent = "Link copied.";
    } catch {
      // No clipboard here (permissions, an insecure origin): the link, shown to copy by hand.
      const shown = h("input", { type: "text", readonly: true, value: url, "aria-label": "Link to copy", class: "code" });
      fill(this.shareState, "Copy this link: ", shown);
      shown.select();
    }
  }
}
