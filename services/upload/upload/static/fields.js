// One input for one parameter, generated from its JSON Schema:
// number/integer → number input (min, max, step), enum → select, boolean → checkbox,
// list of enum → checkboxes, "#rrggbb" → colour picker, other strings → text.
// A field reports its value only when it was set (by the user, a preset or JSON) or
// differs from the default, so the pipeline says what was chosen and nothing more.

import { h, uid } from "./dom.js";

const HEX_COLOUR = "^#[0-9a-fA-F]{6}$";

function rangeText(schema) {
  const low = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? `more than ${schema.exclusiveMinimum}` : null);
  const high = schema.maximum ?? schema.exclusiveMaximum;
  if (typeof low === "number" && typeof high === "number") { return `${low} to ${high}`; }
  if (low !== null && low !== undefined) { return typeof low === "number" ? `at least ${low}` : low; }
  if (high !== undefined) { return `at most ${high}`; }
  return "";
}

function hintText(schema) {
  const parts = [schema.description ? schema.description.replace(/\.$/, "") : ""];
  if (schema.type === "integer" || schema.type === "number") {
    const range = rangeText(schema);
    if (range) { parts.push(range); }
  }
  if (schema.default !== undefined && !Array.isArray(schema.default) && schema.type !== "boolean") {
    parts.push(`default ${schema.default}`);
  }
  return parts.filter(Boolean).join("; ");
}

function kindOf(schema) {
  if (schema.type === "boolean") { return "checkbox"; }
  if (Array.isArray(schema.enum)) { return "select"; }
  if (schema.type === "array" && schema.items && Array.isArray(schema.items.enum)) { return "checkboxes"; }
  if (schema.type === "integer" || schema.type === "number") { return "number"; }
  if (schema.type === "string" && schema.pattern === HEX_COLOUR) { return "colour"; }
  return "text";
}

export function paramField(name, schema, required, initial, onChange) {
  const kind = kindOf(schema);
  const id = uid(`param-${name}`);
  const label = schema.title || name;
  const hint = h("p", { class: "hint param-hint", id: `${id}-hint` }, hintText(schema));
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const state = { explicit: initial !== undefined };
  const changed = () => { state.explicit = true; onChange(); };
  const make = BUILDERS[kind];
  const field = make({ id, name, label, schema, required, initial, changed });
  const describedBy = `${hint.id} ${error.id}`;
  for (const control of field.controls || [field.control]) {
    control.setAttribute("aria-describedby", describedBy);
  }
  field.element = h("div", { class: ["param", `param-${kind}`], dataset: { param: name } },
    field.head, hint.textContent ? hint : null, error);
  field.label = label;
  if (field.longest) {
    // A select is as wide as its longest choice (style.css): no choice is cut off.
    field.element.style.setProperty("--longest", `${field.longest}ch`);
  }
  const readRaw = field.read;
  field.value = readRaw; // what the control shows, a default included
  field.read = () => {
    const value = readRaw();
    if (value === undefined) { return undefined; }
    if (!state.explicit && !required && JSON.stringify(value) === JSON.stringify(schema.default)) { return undefined; }
    return value;
  };
  field.setError = (message) => {
    error.textContent = message || "";
    error.hidden = !message;
    for (const control of field.controls || [field.control]) {
      if (message) { control.setAttribute("aria-invalid", "true"); } else { control.removeAttribute("aria-invalid"); }
    }
  };
  field.problem = field.problem || (() => null);
  return field;
}

const requiredMark = (required) => (required ? h("span", { class: "required" }, " (required)") : null);

// A field's label (marked when required) and its control, as a field's head shows them.
const labelled = (id, label, required, control) =>
  [h("label", { for: id }, label, requiredMark(required)), control];

// A typed-in input's attributes beyond its own: the schema's default as its placeholder,
// the initial value, and the handler of every change.
const typedIn = (schema, initial, changed) => ({
  placeholder: schema.default !== undefined ? String(schema.default) : null,
  value: initial !== undefined ? String(initial) : null,
  on: { input: changed },
});

const BUILDERS = {
  number({ id, label, schema, required, initial, changed }) {
    const integer = schema.type === "integer";
    const control = h("input", {
      id, type: "number", inputmode: integer ? "numeric" : "decimal",
      step: integer ? "1" : "any",
      min: schema.minimum, max: schema.maximum, required,
      ...typedIn(schema, initial, changed),
    });
    return {
      control,
      head: labelled(id, label, required, control),
      read: () => (control.value === "" ? undefined : Number(control.value)),
      problem: () => {
        const v = control.validity;
        if (v.badInput) { return integer ? "must be a whole number" : "must be a number"; }
        if (v.valueMissing) { return "is required"; }
        if (v.rangeUnderflow) { return `must be at least ${control.min}`; }
        if (v.rangeOverflow) { return `must be at most ${control.max}`; }
        if (v.stepMismatch) { return "must be a whole number"; }
        return null;
      },
    };
  },

  select({ id, label, schema, required, initial, changed }) {
    const values = schema.enum;
    const hasDefault = schema.default !== undefined;
    const options = values.map((value, index) => h("option", { value: String(index) },
      `${value}${hasDefault && value === schema.default ? " (default)" : ""}`));
    const blank = !hasDefault ? h("option", { value: "" }, required ? "Choose\u2026" : "(default)") : null;
    const control = h("select", { id, required, on: { change: changed } }, blank, options);
    const longest = Math.max(...[...control.options].map((option) => option.text.length));
    const start = initial !== undefined ? initial : schema.default;
    const index = values.indexOf(start);
    control.value = index >= 0 ? String(index) : "";
    return {
      control,
      longest,
      head: labelled(id, label, required, control),
      read: () => (control.value === "" ? undefined : values[Number(control.value)]),
      problem: () => (control.validity.valueMissing ? "is required" : null),
    };
  },

  checkbox({ id, label, schema, initial, changed }) {
    const control = h("input", {
      id, type: "checkbox", checked: initial !== undefined ? Boolean(initial) : Boolean(schema.default),
      on: { change: changed },
    });
    return {
      control,
      head: h("div", { class: "check" }, control, h("label", { for: id }, label)),
      read: () => control.checked,
    };
  },

  checkboxes({ id, label, schema, initial, changed }) {
    const chosen = new Set(initial !== undefined ? initial : schema.default || []);
    const controls = schema.items.enum.map((value, index) => h("input", {
      id: `${id}-${index}`, type: "checkbox", value, checked: chosen.has(value), on: { change: changed },
    }));
    const group = h("fieldset", { class: "checks" },
      h("legend", {}, label),
      controls.map((control) => h("div", { class: "check" }, control, h("label", { for: control.id }, control.value))));
    return {
      control: controls[0],
      controls,
      head: group,
      read: () => {
        const checked = controls.filter((control) => control.checked).map((control) => control.value);
        // The same choice as given reads back in the order given (the order means nothing).
        const same = Array.isArray(initial) && initial.length === checked.length
          && initial.every((value) => checked.includes(value));
        return same ? initial : checked;
      },
    };
  },

  colour({ id, label, schema, required, initial, changed }) {
    const control = h("input", {
      id, type: "color", value: String(initial ?? schema.default ?? "#000000").toLowerCase(),
      on: { input: changed },
    });
    return {
      control,
      head: labelled(id, label, required, control),
      // A colour given in capitals reads back as written, not silently rewritten.
      read: () => (typeof initial === "string" && initial.toLowerCase() === control.value.toLowerCase()
        ? initial : control.value.toLowerCase()),
    };
  },

  text({ id, label, schema, required, initial, changed }) {
    const control = h("input", {
      id, type: "text", required, maxlength: schema.maxLength, autocomplete: "off",
      ...typedIn(schema, initial, changed),
    });
    return {
      control,
      head: labelled(id, label, required, control),
      read: () => (control.value === "" ? undefined : control.value),
      problem: () => (control.validity.valueMissing ? "is required" : null),
    };
  },
};
