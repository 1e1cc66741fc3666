// Just enough JSON Schema (2020-12) to check an operation's parameters before upload,
// with messages in plain words. The server checks again; this only saves a round trip.
// An error is {param, message}: `param` names the parameter it belongs to (or null).

const TYPE_WORDS = {
  integer: "a whole number",
  number: "a number",
  string: "text",
  boolean: "on or off",
  array: "a list",
  object: "a set of parameters",
};

function typeOk(type, value) {
  switch (type) {
    case "integer": return Number.isInteger(value);
    case "number": return typeof value === "number" && Number.isFinite(value);
    case "string": return typeof value === "string";
    case "boolean": return typeof value === "boolean";
    case "array": return Array.isArray(value);
    case "object": return value !== null && typeof value === "object" && !Array.isArray(value);
    case "null": return value === null;
    default: return true;
  }
}

const show = (value) => (typeof value === "string" ? `\u201c${value}\u201d` : JSON.stringify(value));
const showValue = (value) => (value === true ? "on" : value === false ? "off" : show(value));

function listOf(values, last = "or") {
  const shown = values.map(show);
  return shown.length < 2 ? shown.join("") : `${shown.slice(0, -1).join(", ")} ${last} ${shown.at(-1)}`;
}

function patternMessage(pattern) {
  if (pattern.startsWith("^#")) { return "must be a colour written #rrggbb"; }
  return "must be visible text, without control characters";
}

/** "fit is “cover” or “fill”", "lossless is on": what an `if` (or dependency) requires. */
export function describeCondition(schema) {
  const parts = Object.entries(schema.properties || {}).map(([name, sub]) => {
    if ("const" in sub) { return `${name} is ${showValue(sub.const)}`; }
    if (Array.isArray(sub.enum)) { return `${name} is ${listOf(sub.enum)}`; }
    return name;
  });
  return parts.join(" and ") || "the other parameters allow it";
}

function checkScalar(schema, value, param) {
  const errors = [];
  const fail = (message) => errors.push({ param, message });
  if (schema.type && !typeOk(schema.type, value)) {
    fail(`must be ${TYPE_WORDS[schema.type] || schema.type}`);
    return errors;
  }
  if ("const" in schema && value !== schema.const) { fail(`must be ${showValue(schema.const)}`); }
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) { fail(`must be ${listOf(schema.enum)}`); }
  if (typeof value === "number") {
    if (typeof schema.minimum === "number" && value < schema.minimum) { fail(`must be at least ${schema.minimum}`); }
    if (typeof schema.maximum === "number" && value > schema.maximum) { fail(`must be at most ${schema.maximum}`); }
    if (typeof schema.exclusiveMinimum === "number" && value <= schema.exclusiveMinimum) {
      fail(`must be more than ${schema.exclusiveMinimum}`);
    }
    if (typeof schema.exclusiveMaximum === "number" && value >= schema.exclusiveMaximum) {
      fail(`must be less than ${schema.exclusiveMaximum}`);
    }
  }
  if (typeof value === "string") {
    const length = [...value].length;
    if (typeof schema.minLength === "number" && length < schema.minLength) {
      fail(schema.minLength === 1 ? "must not be empty" : `must be at least ${schema.minLength} characters`);
    } else if (typeof schema.maxLength === "number" && length > schema.maxLength) {
      fail(`must be at most ${schema.maxLength} characters`);
    } else if (schema.pattern && !matches(schema.pattern, value)) {
      fail(patternMessage(schema.pattern));
    }
  }
  if (Array.isArray(value)) {
    if (schema.uniqueItems && new Set(value.map((item) => JSON.stringify(item))).size !== value.length) {
      fail("must not name an item twice");
    }
    if (schema.items) {
      value.forEach((item) => errors.push(...checkScalar(schema.items, item, param)));
    }
  }
  return errors;
}

/** Errors of one parameter's value against its own schema (type, enum, range, pattern). */
export function checkValue(schema, value, param = null) {
  return checkScalar(schema, value, param);
}

/** A value as a message quotes it: text in curly quotes, anything else as JSON. */
export const quoteValue = show;

function matches(pattern, value) {
  try {
    return new RegExp(pattern, "u").test(value);
  } catch {
    return true; // a pattern this browser cannot read: leave it to the server
  }
}

/** Errors of an operation's parameters (an object) against its JSON Schema. */
export function validate(schema, params) {
  const errors = [];
  const properties = schema.properties || {};
  for (const name of schema.required || []) {
    if (!(name in params)) { errors.push({ param: name, message: "is required" }); }
  }
  for (const [name, value] of Object.entries(params)) {
    if (name in properties) {
      errors.push(...checkScalar(properties[name], value, name));
    } else if (schema.additionalProperties === false) {
      errors.push({ param: name, message: "is not a parameter of this operation" });
    }
  }
  if (Array.isArray(schema.anyOf) && !schema.anyOf.some((branch) => validate(branch, params).length === 0)) {
    errors.push(anyOfError(schema.anyOf));
  }
  for (const part of schema.allOf || []) { errors.push(...validate(part, params)); }
  if (schema.if && validate(schema.if, params).length === 0 && schema.then) {
    const when = describeCondition(schema.if);
    errors.push(...validate(schema.then, params).map((e) => ({ ...e, message: `${e.message} when ${when}` })));
  }
  for (const [name, dependent] of Object.entries(schema.dependentSchemas || {})) {
    if (name in params && validate(dependent, params).length > 0) {
      errors.push({ param: name, message: `only works when ${describeCondition(dependent)}` });
    }
  }
  return dedupe(errors);
}

function anyOfError(branches) {
  const names = branches.flatMap((branch) => branch.required || []);
  if (names.length === branches.length && names.length > 0) {
    const words = names.length === 2 ? `${names[0]}, ${names[1]} or both` : names.join(" or ");
    return { param: names[0], message: `give ${words}` };
  }
  return { param: null, message: "this combination of parameters is not allowed" };
}

function dedupe(errors) {
  const seen = new Set();
  return errors.filter((error) => {
    const key = `${error.param}\u0000${error.message}`;
    if (seen.has(key)) { return false; }
    seen.add(key);
    return true;
  });
}
