// The pipeline as JSON, editable. The box is labelled "what is sent with each image", so
// it must never show one pipeline while another is sent: an edit that was not applied
// with "Use this JSON" is applied by Upload (a user who typed a pipeline and pressed
// Upload means that pipeline), unless the builder was changed after the edit too: then
// which one is meant is unclear, and Upload refuses until the edit is used or discarded.

import { announce, h, uid } from "./dom.js";

/** The pipeline as JSON, one operation a line. */
export function pipelineJson(pipeline) {
  if (pipeline.length === 0) { return "[]"; }
  return `[\n${pipeline.map((step) => `  ${JSON.stringify(step)}`).join(",\n")}\n]`;
}

/** Where the `index`-th item of the JSON list in `text` starts and ends, or null. */
export function stepRange(text, index) {
  let depth = 0;
  let item = -1;
  let start = null;
  for (let at = 0; at < text.length; at += 1) {
    const char = text[at];
    if (char === '"') {
      for (at += 1; at < text.length && text[at] !== '"'; at += 1) { if (text[at] === "\\") { at += 1; } }
    } else if (char === "[" || char === "{") {
      depth += 1;
      if (depth === 2) { item += 1; if (item === index) { start = at; } }
    } else if (char === "]" || char === "}") {
      depth -= 1;
      if (depth === 1 && start !== null) { return [start, at + 1]; }
    }
  }
  return null;
}

export class JsonView {
  /**
   * @param {() => Array} current  the builder's pipeline
   * @param {(value: unknown) => string[]} load  loads a pipeline into the builder, or
   *   returns its problems (and changes nothing)
   */
  constructor(current, load) {
    this.current = current;
    this.load = load;
    this.dirty = false; // the text was edited and not yet used or discarded
    this.conflict = false; // ... and the builder changed after that edit
    this.element = this.render();
  }

  render() {
    const id = uid("pipeline-json");
    this.text = h("textarea", {
      id, rows: 6, spellcheck: "false", autocomplete: "off", class: "code",
      "aria-describedby": `${id}-hint ${id}-state ${id}-error`,
      on: { input: () => this.edited() },
    });
    this.error = h("div", { class: "field-error", id: `${id}-error`, role: "alert", hidden: true });
    this.state = h("p", { class: "json-state", id: `${id}-state`, role: "status" });
    this.discardButton = h("button", {
      type: "button", class: "secondary", hidden: true, on: { click: () => this.discard() },
    }, "Discard the edit");
    this.pending = h("span", { class: "json-pending", hidden: true }, " (edited, not loaded)");
    this.details = h("details", { class: "json-view" },
      h("summary", {}, "Pipeline as JSON (advanced)", this.pending),
      h("label", { for: id }, "Pipeline JSON"),
      this.text,
      h("p", { class: "hint", id: `${id}-hint` },
        "What is sent with each image. Edit it and press \u201cUse this JSON\u201d to load it into the builder; Upload uses an edit not yet loaded."),
      this.state,
      this.error,
      h("div", { class: "json-actions" },
        h("button", { type: "button", class: "secondary", on: { click: () => this.use() } }, "Use this JSON"),
        this.discardButton));
    return this.details;
  }

  /** The builder changed: show its pipeline, unless an edit of the text is pending. */
  sync(pipeline) {
    if (this.dirty) {
      this.conflict = JSON.stringify(pipeline) !== JSON.stringify(this.parsed());
      this.showState();
      return;
    }
    this.text.value = pipelineJson(pipeline);
    this.clearError();
  }

  edited() {
    this.dirty = this.text.value.trim() !== pipelineJson(this.current());
    this.conflict = false;
    this.text.removeAttribute("aria-invalid");
    this.showState();
  }

  parsed() {
    try { return JSON.parse(this.text.value); } catch { return undefined; }
  }

  showState() {
    this.discardButton.hidden = !this.dirty;
    this.pending.hidden = !this.dirty; // seen with the view closed too
    this.state.textContent = !this.dirty ? ""
      : this.conflict ? "The builder was changed after this edit: use this JSON or discard the edit before uploading."
        : "Edited, not loaded yet: Upload sends this JSON.";
  }

  /** Load the text into the builder; false (and the problems shown here) if it cannot be. */
  use() {
    let value;
    try {
      value = JSON.parse(this.text.value);
    } catch (err) {
      return this.problem([{ index: null, message: `This is not valid JSON: ${err.message}` }]);
    }
    const problems = this.load(value);
    if (problems.length) {
      this.problem(problems);
      this.select(problems.find((problem) => problem.index !== null));
      return false;
    }
    this.dirty = false;
    this.conflict = false;
    this.sync(this.current());
    this.showState();
    announce(`Loaded ${value.length} ${value.length === 1 ? "operation" : "operations"} from JSON`);
    return true;
  }

  discard() {
    this.dirty = false;
    this.conflict = false;
    this.sync(this.current());
    this.showState();
    this.text.focus();
    announce("Edit discarded: the JSON shows the builder's pipeline");
  }

  /** Before upload: an edit not loaded is loaded now, or the upload is refused here. */
  beforeUpload() {
    if (!this.dirty) { return true; }
    const ok = this.conflict
      ? this.problem([{ index: null, message: "The JSON was edited and the builder changed afterwards: press \u201cUse this JSON\u201d to send the JSON, or \u201cDiscard the edit\u201d to send the builder's pipeline." }])
      : this.use();
    if (!ok) {
      this.details.open = true;
      this.text.focus();
    }
    return ok;
  }

  /** Select the text of the step a problem is in, so the box shows where it is. */
  select(problem) {
    const range = problem && stepRange(this.text.value, problem.index);
    if (range) {
      this.text.focus();
      this.text.setSelectionRange(range[0], range[1]);
    }
  }

  problem(problems) {
    const messages = problems.map((problem) => problem.message);
    this.error.replaceChildren(messages.length === 1 ? h("p", {}, messages[0])
      : h("ul", {}, messages.map((message) => h("li", {}, message))));
    this.error.hidden = false;
    this.text.setAttribute("aria-invalid", "true");
    return false;
  }

  clearError() {
    this.error.hidden = true;
    this.error.replaceChildren();
    this.text.removeAttribute("aria-invalid");
  }
}
