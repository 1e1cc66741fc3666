// /api/docs: an example for each operation (the request as curl, and an answer made from
// the documented schema) and, for the GET operations, a form to try the call here.
//
// Trying is GET only and same-origin (a relative URL, credentials "same-origin"): it reads
// what this browser may already read, changes nothing, and sends no token of its own, so
// it opens no cross-site request forgery that the API's guard would have to stop.

import { h } from "./dom.js";

const SAMPLE = {
  job_id: "d58e10d6-1c2b-8a3f-9e4d-01a2351cd0ae",
  sha256: "077e2c9bc82984e27ca9db0bda039227295ad99dae3dcc41b5097dafddac14be",
};
const STREAM_READ_MS = 5000;
const MAX_SHOWN = 20000;

/** An example value of `schema` (through `$ref`s of `components`), depth-limited. */
export function exampleOf(schema, components, depth = 0) {
  if (!schema || depth > 6) { return null; }
  if (schema.$ref) { return exampleOf(components[schema.$ref.split("/").pop()], components, depth + 1); }
  if ("example" in schema) { return schema.example; }
  if (Array.isArray(schema.examples) && schema.examples.length) { return schema.examples[0]; }
  if ("const" in schema) { return schema.const; }
  if (Array.isArray(schema.enum)) { return schema.enum[0]; }
  const union = schema.anyOf || schema.oneOf;
  if (union) { return exampleOf(union.find((s) => s.type !== "null") || union[0], components, depth + 1); }
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (type === "object" || schema.properties) {
    return Object.fromEntries(Object.entries(schema.properties || {})
      .map(([name, prop]) => [name, exampleOf(prop, components, depth + 1)]));
  }
  if (type === "array") { return [exampleOf(schema.items, components, depth + 1)].filter((v) => v !== null); }
  if (type === "integer" || type === "number") { return schema.minimum ?? 0; }
  if (type === "boolean") { return true; }
  if (type === "string") { return stringExample(schema); }
  return null;
}

function stringExample(schema) {
  if (schema.format === "date-time") { return "2026-12-02T04:56:50.614Z"; }
  if (schema.pattern === "^[0-9a-f]{64}$" || schema.pattern === "^[0-9a-fA-F]{64}$") { return SAMPLE.sha256; }
  return "string";
}

function pathWith(path, values) {
  return path.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(values[name] || SAMPLE[name] || name));
}

/** `curl` for the operation, as one would type it against this server. */
function curlOf(path, method, op) {
  const url = `${window.location.origin}${pathWith(path, {})}`;
  const parts = ["curl"];
  if (method !== "get") { parts.push(`-X ${method.toUpperCase()}`); }
  const form = op.requestBody && op.requestBody.content && op.requestBody.content["multipart/form-data"];
  if (form) {
    parts.push("-F file=@photo.jpg", `-F 'pipeline=[{"op": "thumbnail", "width": 256, "height": 256}]'`);
  }
  if (op.security) { parts.push('-H "Authorization: Bearer $IMAGEMESH_TOKEN"'); }
  parts.push(`'${url}'`);
  return parts.join(" \\\n  ");
}

/** The first documented success and its example body. */
function answerOf(op, components) {
  const [status, response] = Object.entries(op.responses || {}).find(([code]) => code.startsWith("2")) || [];
  if (!status) { return null; }
  const content = response.content || {};
  const json = content["application/json"];
  if (json) { return { status, text: JSON.stringify(exampleOf(json.schema, components), null, 2) }; }
  const stream = content["text/event-stream"];
  if (stream && stream.itemSchema) { return { status, text: streamExample(stream.itemSchema, components) }; }
  const type = Object.keys(content)[0];
  return { status, text: type ? `(${type} bytes)` : "(no body)" };
}

function streamExample(itemSchema, components) {
  return (itemSchema.oneOf || []).map((branch, index) => {
    const name = branch.properties.event.const;
    const data = exampleOf(branch.properties.data.contentSchema, components);
    return `event: ${name}\nid: ${index + 1}\ndata: ${JSON.stringify(data)}\n`;
  }).join("\n");
}

/** The example block of an operation. */
export function examples(path, method, op, doc) {
  const components = (doc.components && doc.components.schemas) || {};
  const answer = answerOf(op, components);
  return h("div", { class: "example" },
    h("h3", {}, "Example"),
    h("pre", { class: "example-request" }, h("code", {}, curlOf(path, method, op))),
    answer ? [h("p", { class: "hint" }, `Answer ${answer.status} (shape from the schema; values are examples):`),
      h("pre", { class: "example-response" }, h("code", {}, answer.text))] : null);
}

/** The try-it form of a GET operation: a field per parameter, Send, and the answer. */
export function tryIt(path, op, id) {
  const parameters = (op.parameters || []).filter((p) => p.in === "path" || p.in === "query");
  const output = h("pre", { class: "try-output", hidden: true, "aria-live": "polite", tabindex: "0" });
  const status = h("p", { class: "try-status", "aria-live": "polite" });
  const fields = parameters.map((p) => {
    const fieldId = `${id}-try-${p.name}`;
    const schema = p.schema || {};
    return h("div", {},
      h("label", { for: fieldId }, p.name, p.required ? " *" : ""),
      h("input", {
        type: "text", id: fieldId, name: p.name, autocomplete: "off", spellcheck: "false",
        required: p.required || null,
        placeholder: Array.isArray(schema.enum) ? schema.enum.join(" | ") : schema.type || "",
        dataset: { in: p.in },
      }));
  });
  const form = h("form", { class: "try-it", "aria-label": `Try GET ${path}` },
    h("h3", {}, "Try it"),
    h("p", { class: "hint" }, "Sends GET from this page, as you (same origin); nothing is changed."),
    fields.length ? h("div", { class: "try-fields" }, fields) : null,
    h("button", { type: "submit", class: "secondary small" }, "Send"),
    status, output);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!form.reportValidity()) { return; }
    send(path, form, status, output);
  });
  return form;
}

function urlOf(path, form) {
  const values = {};
  const query = new URLSearchParams();
  for (const input of form.querySelectorAll("input[data-in]")) {
    const value = input.value.trim();
    if (!value) { continue; }
    if (input.dataset.in === "path") { values[input.name] = value; } else { query.set(input.name, value); }
  }
  const search = query.toString();
  return `${pathWith(path, values)}${search ? `?${search}` : ""}`;
}

async function send(path, form, status, output) {
  const url = urlOf(path, form);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), STREAM_READ_MS);
  status.textContent = `GET ${url} \u2026`;
  output.hidden = true;
  try {
    const response = await fetch(url, {
      method: "GET", credentials: "same-origin", headers: { Accept: "application/json, */*" }, signal: controller.signal,
    });
    const type = response.headers.get("Content-Type") || "";
    status.textContent = `${response.status} ${response.statusText} \u2014 ${type || "no body"}`;
    output.textContent = await bodyText(response, type);
  } catch (err) {
    status.textContent = err.name === "AbortError" ? `GET ${url}: stopped after ${STREAM_READ_MS / 1000} s` : `GET ${url} failed: ${err.message}`;
    output.textContent = "";
  } finally {
    clearTimeout(timer);
    output.hidden = !output.textContent;
  }
}

/** The answer as text: JSON pretty, a stream as far as it came in STREAM_READ_MS, images by size. */
async function bodyText(response, type) {
  if (type.startsWith("image/")) { return `(${(await response.blob()).size} bytes of ${type})`; }
  if (type.startsWith("text/event-stream")) { return streamed(response); }
  const text = await response.text();
  if (type.includes("json")) {
    try { return JSON.stringify(JSON.parse(text), null, 2).slice(0, MAX_SHOWN); } catch { /* as text */ }
  }
  return text.slice(0, MAX_SHOWN);
}

async function streamed(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) { break; }
      text += decoder.decode(value, { stream: true });
      if (text.length > MAX_SHOWN) { break; }
    }
  } catch (err) {
    if (err.name !== "AbortError") { throw err; }
  }
  return text.slice(0, MAX_SHOWN);
}
