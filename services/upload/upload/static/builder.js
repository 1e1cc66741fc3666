// The pipeline builder: operations from the catalogue (GET /api/v1/operations), each
// with inputs generated from its JSON Schema; add, remove, reorder (buttons, keyboard,
// or drag by the handle), presets, and the pipeline as JSON.

import { announce, h, uid } from "./dom.js";
import { firstLine } from "./format.js";
import { validate } from "./schema.js";
import { paramField } from "./fields.js";

export const PRESETS = [
  { name: "Web thumbnail", pipeline: [{ op: "thumbnail", width: 256, height: 256 }] },
  { name: "Dither like the original", pipeline: [{ op: "dither", method: "floyd-steinberg" }] },
  {
    name: "AVIF for the web",
    pipeline: [{ op: "thumbnail", width: 1600, height: 1600 }, { op: "convert", format: "avif" }],
  },
];

/** The pipeline as JSON, one operation a line. */
export function pipelineJson(pipeline) {
  if (pipeline.length === 0) { return "[]"; }
  return `[\n${pipeline.map((step) => `  ${JSON.stringify(step)}`).join(",\n")}\n]`;
}

export class Builder {
  /** @param {HTMLElement} root  @param {Array} catalogue  operations with their schemas */
  constructor(root, catalogue, { maxOps = null } = {}) {
    this.catalogue = new Map(catalogue.map((op) => [op.name, op]));
    this.maxOps = maxOps;
    this.steps = []; // {op, element, fields: Map(param → field)}
    this.showingErrors = false;
    this.render(root);
  }

  render(root) {
    this.root = root;
    this.list = h("ol", { class: "ops", id: "ops", "aria-label": "Pipeline steps" });
    this.empty = h("p", { class: "hint ops-empty" },
      "No operations yet: the image is kept as it is (metadata removed). Pick a preset or add an operation.");
    this.summary = h("div", { class: "error-summary", id: "pipeline-errors", role: "alert", tabindex: "-1", hidden: true });
    const addId = uid("add-op");
    this.picker = h("select", { id: addId, on: { change: () => this.describePicked() } },
      [...this.catalogue.values()].map((op) => h("option", { value: op.name }, op.name)));
    this.pickedHint = h("p", { class: "hint", id: `${addId}-hint` });
    this.picker.setAttribute("aria-describedby", this.pickedHint.id);
    this.addButton = h("button", { type: "button", class: "secondary", on: { click: () => this.addPicked() } }, "Add");
    const presets = h("div", { class: "presets", role: "group", "aria-label": "Presets" },
      h("span", { class: "presets-label", "aria-hidden": "true" }, "Presets:"),
      PRESETS.map((preset) => h("button", {
        type: "button", class: "chip", on: { click: () => this.usePreset(preset) },
      }, preset.name)),
      h("button", { type: "button", class: "chip subtle", on: { click: () => this.clear() } }, "Clear"));
    const add = h("div", { class: "add-op" },
      h("label", { for: addId }, "Operation to add"),
      h("div", { class: "add-op-row" }, this.picker, this.addButton),
      this.pickedHint);
    this.json = this.renderJson();
    root.replaceChildren(presets, this.summary, this.list, this.empty, add, this.json);
    this.describePicked();
    this.changed();
  }

  renderJson() {
    const id = uid("pipeline-json");
    this.jsonText = h("textarea", {
      id, rows: 6, spellcheck: "false", autocomplete: "off", class: "code",
      "aria-describedby": `${id}-hint ${id}-error`,
      on: { input: () => this.jsonText.removeAttribute("aria-invalid") },
    });
    this.jsonError = h("p", { class: "field-error", id: `${id}-error`, role: "alert", hidden: true });
    return h("details", { class: "json-view" },
      h("summary", {}, "Pipeline as JSON (advanced)"),
      h("label", { for: id }, "Pipeline JSON"),
      this.jsonText,
      h("p", { class: "hint", id: `${id}-hint` },
        "What is sent with each image. Edit it and press \u201cUse this JSON\u201d to load it into the builder."),
      this.jsonError,
      h("button", { type: "button", class: "secondary", on: { click: () => this.applyJson() } }, "Use this JSON"));
  }

  describePicked() {
    const op = this.catalogue.get(this.picker.value);
    this.pickedHint.textContent = op ? firstLine(op.description) : "";
  }

  addPicked() {
    const step = this.add(this.picker.value);
    if (step) {
      announce(`Added ${step.op} as step ${this.steps.length}`);
      const first = step.element.querySelector("input, select, textarea");
      (first || step.element.querySelector(".op-remove")).focus();
    }
  }

  /** Append an operation, with `params` set (as a preset or JSON gives them). */
  add(name, params = {}) {
    const op = this.catalogue.get(name);
    if (!op) { return null; }
    if (this.maxOps && this.steps.length >= this.maxOps) {
      announce(`A pipeline has at most ${this.maxOps} operations`);
      return null;
    }
    const step = { op: name, schema: op.params || {}, fields: new Map() };
    step.element = this.renderStep(step, op, params);
    this.steps.push(step);
    this.list.append(step.element);
    this.changed();
    return step;
  }

  renderStep(step, op, params) {
    const properties = (op.params && op.params.properties) || {};
    const required = new Set((op.params && op.params.required) || []);
    const legendId = uid("op");
    const fields = Object.entries(properties).map(([name, schema]) => {
      const field = paramField(name, schema, required.has(name), params[name], () => this.changed());
      step.fields.set(name, field);
      return field.element;
    });
    const tool = (cls, text, action) => h("button", {
      type: "button", class: ["icon", cls], on: { click: () => action(step) },
    }, text);
    step.up = tool("op-up", "\u2191", (s) => this.move(s, -1));
    step.down = tool("op-down", "\u2193", (s) => this.move(s, +1));
    step.remove = tool("op-remove", "\u2715", (s) => this.remove(s));
    step.number = h("span", { class: "op-number" });
    const handle = h("span", { class: "op-handle", title: "Drag to reorder", "aria-hidden": "true" }, "\u2807");
    const element = h("li", { class: "op", dataset: { op: op.name } },
      h("fieldset", { "aria-labelledby": legendId },
        h("div", { class: "op-head" },
          handle,
          h("h3", { id: legendId, class: "op-title" }, step.number, h("span", { class: "op-name" }, op.name)),
          h("div", { class: "op-tools" }, step.up, step.down, step.remove)),
        h("p", { class: "hint op-desc" }, firstLine(op.description)),
        fields.length ? h("div", { class: "params" }, fields) : null));
    this.makeDraggable(element, handle, step);
    return element;
  }

  makeDraggable(element, handle, step) {
    // Only the handle starts a drag, so text in the inputs stays selectable.
    handle.addEventListener("pointerdown", () => { element.draggable = true; });
    element.addEventListener("dragstart", (event) => {
      this.dragged = step;
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", step.op);
      element.classList.add("dragging");
    });
    element.addEventListener("dragend", () => {
      element.draggable = false;
      element.classList.remove("dragging");
      this.dragged = null;
    });
    element.addEventListener("dragover", (event) => {
      if (this.dragged && this.dragged !== step) { event.preventDefault(); }
    });
    element.addEventListener("drop", (event) => {
      event.preventDefault();
      if (!this.dragged || this.dragged === step) { return; }
      this.move(this.dragged, this.steps.indexOf(step) - this.steps.indexOf(this.dragged));
    });
  }

  move(step, offset) {
    const from = this.steps.indexOf(step);
    const to = Math.max(0, Math.min(this.steps.length - 1, from + offset));
    if (from === to) { return; }
    this.steps.splice(from, 1);
    this.steps.splice(to, 0, step);
    // Moving the node (not re-rendering) keeps its values and the focused button.
    const focused = document.activeElement;
    this.list.insertBefore(step.element, this.steps[to + 1] ? this.steps[to + 1].element : null);
    this.changed();
    if (focused && step.element.contains(focused)) {
      // A move button that became disabled (first or last place) hands focus to the other.
      (focused.disabled ? (focused === step.up ? step.down : step.up) : focused).focus();
    }
    announce(`Moved ${step.op} to step ${to + 1} of ${this.steps.length}`);
  }

  remove(step) {
    const index = this.steps.indexOf(step);
    this.steps.splice(index, 1);
    step.element.remove();
    this.changed();
    announce(`Removed ${step.op}`);
    const next = this.steps[index] || this.steps[index - 1];
    (next ? next.remove : this.picker).focus();
  }

  clear() {
    for (const step of this.steps) { step.element.remove(); }
    this.steps = [];
    this.changed();
  }

  /** Replace the whole pipeline (a preset, or JSON). */
  set(pipeline) {
    this.clear();
    for (const { op, ...params } of pipeline) { this.add(op, params); }
    this.changed();
  }

  usePreset(preset) {
    this.set(preset.pipeline);
    announce(`Preset \u201c${preset.name}\u201d: ${this.steps.map((s) => s.op).join(", ")}`);
  }

  /** The pipeline as sent: each step's explicitly set parameters. */
  pipeline() {
    return this.steps.map((step) => {
      const params = {};
      for (const [name, field] of step.fields) {
        const value = field.read();
        if (value !== undefined) { params[name] = value; }
      }
      return { op: step.op, ...params };
    });
  }

  changed() {
    this.steps.forEach((step, index) => {
      const where = `step ${index + 1} (${step.op})`;
      step.number.textContent = `${index + 1}`;
      step.up.setAttribute("aria-label", `Move ${where} up`);
      step.down.setAttribute("aria-label", `Move ${where} down`);
      step.remove.setAttribute("aria-label", `Remove ${where}`);
      step.up.disabled = index === 0;
      step.down.disabled = index === this.steps.length - 1;
      step.element.dataset.index = String(index);
    });
    this.empty.hidden = this.steps.length > 0;
    this.addButton.disabled = Boolean(this.maxOps && this.steps.length >= this.maxOps);
    if (document.activeElement !== this.jsonText) {
      this.jsonText.value = pipelineJson(this.pipeline());
      this.jsonError.hidden = true;
    }
    if (this.showingErrors) { this.showErrors(this.errors()); }
    this.root.dispatchEvent(new Event("pipelinechange"));
  }

  /** Every problem: {index, op, param, label, message, control}. */
  errors() {
    const found = [];
    this.steps.forEach((step, index) => {
      const params = {};
      const broken = new Set();
      for (const [name, field] of step.fields) {
        const problem = field.problem();
        if (problem) {
          broken.add(name);
          found.push({ index, op: step.op, param: name, message: problem });
        } else {
          const value = field.read();
          if (value !== undefined) { params[name] = value; }
        }
      }
      for (const error of validate(step.schema, params)) {
        if (!broken.has(error.param)) { found.push({ index, op: step.op, ...error }); }
      }
    });
    return found;
  }

  /** Check before upload; shows what is wrong where, and says whether all is well. */
  check() {
    this.showingErrors = true;
    const errors = this.errors();
    this.showErrors(errors);
    if (errors.length) {
      this.summary.focus();
    }
    return errors.length === 0;
  }

  showErrors(errors) {
    for (const step of this.steps) {
      step.element.classList.remove("has-error");
      for (const field of step.fields.values()) { field.setError(null); }
    }
    const items = errors.map((error) => {
      const step = this.steps[error.index];
      const field = error.param && step.fields.get(error.param);
      step.element.classList.add("has-error");
      const label = field ? field.label : "";
      if (field) { field.setError(error.message); }
      const text = `Step ${error.index + 1} (${error.op})${label ? `, ${label}` : ""}: ${error.message}`;
      const target = field ? field.control : step.remove;
      return h("li", {}, h("a", {
        href: `#${target.id || ""}`,
        on: { click: (event) => { event.preventDefault(); target.focus(); } },
      }, text));
    });
    this.summary.hidden = items.length === 0;
    this.summary.replaceChildren(...(items.length ? [
      h("p", { class: "error-title" }, items.length === 1 ? "Fix this before uploading:" : `Fix these ${items.length} things before uploading:`),
      h("ul", {}, items),
    ] : []));
  }

  applyJson() {
    let parsed;
    try {
      parsed = JSON.parse(this.jsonText.value);
    } catch (err) {
      return this.jsonProblem(`This is not valid JSON: ${err.message}`);
    }
    if (!Array.isArray(parsed)) { return this.jsonProblem("The pipeline must be a JSON list of operations."); }
    for (const [index, step] of parsed.entries()) {
      const op = step && typeof step === "object" && this.catalogue.get(step.op);
      if (!op) { return this.jsonProblem(`Step ${index + 1}: ${JSON.stringify(step && step.op)} is not an operation (see the list above).`); }
      const known = Object.keys((op.params && op.params.properties) || {});
      const unknown = Object.keys(step).filter((name) => name !== "op" && !known.includes(name));
      if (unknown.length) { return this.jsonProblem(`Step ${index + 1} (${step.op}): ${unknown.join(", ")} is not a parameter of ${step.op}.`); }
    }
    this.jsonText.blur();
    this.set(parsed);
    announce(`Loaded ${parsed.length} operations from JSON`);
    return true;
  }

  jsonProblem(message) {
    this.jsonError.textContent = message;
    this.jsonError.hidden = false;
    this.jsonText.setAttribute("aria-invalid", "true");
    return false;
  }
}
