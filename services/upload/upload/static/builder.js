// The pipeline builder: operations from the catalogue (GET /api/v1/operations), each
// with inputs generated from its JSON Schema; add, remove, reorder (buttons, keyboard,
// or drag by the handle), presets, and the pipeline as JSON. A parameter that applies
// only with another's value (the schema's dependentSchemas) is shown when it applies.

import { announce, h, uid } from "./dom.js";
import { firstLine } from "./format.js";
import { validate } from "./schema.js";
import { paramField } from "./fields.js";
import { JsonView } from "./jsonview.js";
import { shapeProblems, valueProblem } from "./pipelinecheck.js";
import { SavedPipelines } from "./saved.js";

export { pipelineJson } from "./jsonview.js";
export { BUILT_IN_PRESETS as PRESETS } from "./saved.js";

export class Builder {
  /** @param {HTMLElement} root  @param {Array} catalogue  operations with their schemas */
  constructor(root, catalogue, { maxOps = null } = {}) {
    this.catalogue = new Map(catalogue.map((op) => [op.name, op]));
    this.maxOps = maxOps;
    this.steps = []; // {op, element, fields: Map(param → field)}
    this.showingErrors = false;
    this.saved = new SavedPipelines(this);
    this.render(root);
    this.saved.restore();
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
    const add = h("div", { class: "add-op" },
      h("label", { for: addId }, "Operation to add"),
      h("div", { class: "add-op-row" }, this.picker, this.addButton),
      this.pickedHint);
    this.json = new JsonView(() => this.pipeline(), (value) => this.load(value));
    root.replaceChildren(this.saved.presetsElement, this.saved.sourceError, this.summary, this.list,
      this.empty, add, this.json.element, this.saved.shareElement);
    this.describePicked();
    this.changed();
  }

  describePicked() {
    const op = this.catalogue.get(this.picker.value);
    this.pickedHint.textContent = op ? firstLine(op.description) : "";
  }

  addPicked() {
    const step = this.add(this.picker.value);
    if (step) {
      announce(`Added ${step.op} as step ${this.steps.length}`);
      // The first control shown: one whose parameter does not apply yet is hidden.
      const first = [...step.element.querySelectorAll("input, select, textarea")]
        .find((control) => !control.closest("[hidden]"));
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
    const step = this.makeStep(op, params);
    this.steps.push(step);
    this.list.append(step.element);
    this.changed();
    return step;
  }

  /** A step of operation `op` with `params` set, not yet in the pipeline. */
  makeStep(op, params) {
    const step = { op: op.name, schema: op.params || {}, fields: new Map() };
    step.element = this.renderStep(step, op, params);
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

  /**
   * Replace the whole pipeline with `value` (typed JSON, a preset, a link), exactly as
   * written: if any step or value cannot be held as written, nothing changes and the
   * problems are returned (step, operation, parameter, why). Values the builder holds but
   * the schema refuses (out of range, say) load, and show their errors at once.
   */
  load(value) {
    const problems = shapeProblems(value, this.catalogue, this.maxOps);
    if (problems.length) { return problems; }
    const steps = value.map(({ op, ...params }, index) => {
      const step = this.makeStep(this.catalogue.get(op), params);
      for (const [name, given] of Object.entries(params)) {
        if (JSON.stringify(step.fields.get(name).read()) !== JSON.stringify(given)) {
          problems.push(valueProblem(index, op, name, step.schema.properties[name], given));
        }
      }
      return step;
    });
    if (problems.length) { return problems; }
    for (const step of this.steps) { step.element.remove(); }
    this.steps = steps;
    this.list.append(...steps.map((step) => step.element));
    this.changed();
    if (this.errors().length) {
      this.showingErrors = true;
      this.showErrors(this.errors());
    }
    return [];
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
    this.steps.forEach((step) => this.showApplicable(step));
    this.empty.hidden = this.steps.length > 0;
    this.addButton.disabled = Boolean(this.maxOps && this.steps.length >= this.maxOps);
    const pipeline = this.pipeline();
    this.json.sync(pipeline);
    this.saved.changed(pipeline);
    if (this.showingErrors) { this.showErrors(this.errors()); }
    this.root.dispatchEvent(new Event("pipelinechange"));
  }

  /**
   * Show a parameter only when it applies (its dependentSchemas condition holds for the
   * values shown, defaults included) or when it holds a value, which is then reported
   * rather than hidden and sent.
   */
  showApplicable(step) {
    const conditions = step.schema.dependentSchemas || {};
    const shown = {};
    for (const [name, field] of step.fields) {
      const value = field.value();
      if (value !== undefined) { shown[name] = value; }
    }
    for (const [name, condition] of Object.entries(conditions)) {
      const field = step.fields.get(name);
      if (!field) { continue; }
      const applies = validate(condition, shown).length === 0;
      field.element.hidden = !applies && field.read() === undefined;
    }
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
    if (!this.json.beforeUpload()) { return false; }
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
}
