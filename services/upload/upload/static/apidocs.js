// /api/docs: the OpenAPI 3.2 document (/api/v1/openapi.json), browsable: endpoints by
// tag, each collapsible with its parameters, request body and responses with schemas (an
// event stream event by event), an example, and for GET a form to try it (apidocs_try.js).

import { getJson } from "./api.js";
import { examples, tryIt } from "./apidocs_try.js";
import { $, fill, h, markCurrentNav } from "./dom.js";

const METHODS = ["get", "post", "put", "patch", "delete", "head", "options"];
let doc = null;

/** Text with `code` spans, as the document's descriptions write it. */
function prose(text) {
  return String(text || "").split(/(`[^`]+`)/).map((part) => (
    part.startsWith("`") && part.endsWith("`") && part.length > 1 ? h("code", {}, part.slice(1, -1)) : part));
}

const refName = (ref) => ref.split("/").pop();

function resolve(schema) {
  if (!schema || !schema.$ref) { return schema || {}; }
  const name = refName(schema.$ref);
  return (doc.components && doc.components.schemas && doc.components.schemas[name]) || {};
}

function typeText(schema) {
  if (!schema) { return "any"; }
  if (schema.$ref) { return refName(schema.$ref); }
  const union = schema.anyOf || schema.oneOf;
  if (union) { return union.map(typeText).join(" | "); }
  if ("const" in schema) { return JSON.stringify(schema.const); }
  if (schema.type === "array") { return `list of ${typeText(schema.items)}`; }
  if (schema.type === "object" && !schema.properties && schema.additionalProperties && typeof schema.additionalProperties === "object") {
    return `map of ${typeText(schema.additionalProperties)}`;
  }
  const type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "any";
  return schema.format ? `${type} (${schema.format})` : type;
}

function constraints(schema) {
  const out = [];
  if (Array.isArray(schema.enum)) { out.push(`one of ${schema.enum.map((v) => JSON.stringify(v)).join(", ")}`); }
  if (schema.minimum !== undefined) { out.push(`\u2265 ${schema.minimum}`); }
  if (schema.exclusiveMinimum !== undefined) { out.push(`> ${schema.exclusiveMinimum}`); }
  if (schema.maximum !== undefined) { out.push(`\u2264 ${schema.maximum}`); }
  if (schema.minLength !== undefined) { out.push(`at least ${schema.minLength} characters`); }
  if (schema.maxLength !== undefined) { out.push(`at most ${schema.maxLength} characters`); }
  if (schema.pattern) { out.push(`pattern ${schema.pattern}`); }
  if (schema.default !== undefined && schema.default !== null) { out.push(`default ${JSON.stringify(schema.default)}`); }
  return out.length ? h("span", { class: "constraint" }, ` \u2014 ${out.join("; ")}`) : null;
}

/** The schema an object-ish type shows its properties from (through $ref, nullable anyOf, lists). */
function nested(schema) {
  const union = schema.anyOf || schema.oneOf;
  if (union) {
    const real = union.filter((s) => s.type !== "null");
    return real.length === 1 ? nested(real[0]) : null;
  }
  if (schema.type === "array" && schema.items) { return nested(schema.items); }
  const target = resolve(schema);
  return target.properties ? { name: schema.$ref ? refName(schema.$ref) : null, schema: target } : null;
}

function properties(schema, seen) {
  const required = new Set(schema.required || []);
  return h("ul", { class: "schema" }, Object.entries(schema.properties || {}).map(([name, prop]) => {
    const inner = nested(prop);
    const line = [
      h("span", { class: "prop" }, name), " ",
      h("span", { class: "type" }, typeText(prop)),
      required.has(name) ? h("span", { class: "req" }, " required") : null,
      prop.description ? [" \u2014 ", prose(prop.description)] : null,
      constraints(prop),
    ];
    if (inner && !(inner.name && seen.has(inner.name))) {
      const next = new Set(seen);
      if (inner.name) { next.add(inner.name); }
      return h("li", {}, h("details", {}, h("summary", {}, line), properties(inner.schema, next)));
    }
    return h("li", {}, line);
  }));
}

/** A schema: its type, and its properties one level open, deeper ones collapsed. */
function schemaView(schema) {
  const inner = nested(schema);
  const head = h("span", { class: "media-schema" }, " ", h("span", { class: "type" }, typeText(schema)),
    inner && inner.schema.description ? [" \u2014 ", prose(inner.schema.description)] : null);
  return [head, inner ? properties(inner.schema, new Set(inner.name ? [inner.name] : [])) : null];
}

function content(body) {
  return Object.entries((body && body.content) || {}).map(([type, media]) => h("div", { class: "media" },
    h("code", { class: "media-type" }, type), media.schema ? schemaView(media.schema) : null,
    media.itemSchema ? events(media.itemSchema) : null));
}

/** A stream's events (OpenAPI 3.2 `itemSchema`): each `event:` name with its data's schema. */
function events(itemSchema) {
  return h("ul", { class: "schema stream-events" }, (itemSchema.oneOf || []).map((branch) => {
    const data = branch.properties.data.contentSchema || {};
    return h("li", {}, h("details", {}, h("summary", {},
      h("span", { class: "prop" }, `event: ${branch.properties.event.const}`), " ",
      h("span", { class: "type" }, typeText(data)), " \u2014 data (JSON)"), schemaView(data)));
  }));
}

function parametersTable(parameters) {
  return h("div", { class: "table-wrap" }, h("table", { class: "params-table" },
    h("thead", {}, h("tr", {}, ["Name", "In", "Type", "Description"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, parameters.map((p) => h("tr", {},
      h("td", {}, p.name, p.required ? h("span", { class: "req" }, " *") : null),
      h("td", {}, p.in),
      h("td", {}, h("span", { class: "type" }, typeText(p.schema)), p.schema ? constraints(p.schema) : null),
      h("td", {}, prose(p.description)))))));
}

function endpoint(path, method, op) {
  const id = `op-${op.operationId || `${method}-${path}`.replace(/[^\w-]+/g, "-")}`;
  const responses = Object.entries(op.responses || {}).map(([status, response]) => h("li", {},
    h("span", { class: "status-code", dataset: { class: status[0] } }, status), " ", prose(response.description),
    content(response)));
  const parameters = op.parameters || [];
  return h("details", { class: "endpoint", id, dataset: { search: `${method} ${path} ${op.summary || ""} ${(op.tags || []).join(" ")}`.toLowerCase() } },
    h("summary", {},
      h("span", { class: "method", dataset: { method } }, method.toUpperCase()),
      h("span", { class: "path" }, path),
      h("span", { class: "endpoint-summary" }, op.summary || "")),
    h("div", { class: "endpoint-body" },
      op.description ? h("p", {}, prose(op.description)) : null,
      parameters.length ? [h("h3", {}, "Parameters"), parametersTable(parameters)] : null,
      op.requestBody ? [h("h3", {}, `Request body${op.requestBody.required ? " (required)" : ""}`), content(op.requestBody)] : null,
      h("h3", {}, "Responses"),
      h("ul", { class: "responses" }, responses),
      examples(path, method, op, doc),
      method === "get" ? tryIt(path, op, id) : null));
}

function render() {
  const info = doc.info || {};
  $("#api-title").textContent = `${info.title || "API"} API${info.version ? ` ${info.version}` : ""}`;
  fill($("#api-intro"), prose(info.description));
  const groups = new Map((doc.tags || []).map((tag) => [tag.name, { tag, items: [] }]));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      if (!item[method]) { continue; }
      const tag = (item[method].tags || ["other"])[0];
      if (!groups.has(tag)) { groups.set(tag, { tag: { name: tag }, items: [] }); }
      groups.get(tag).items.push(endpoint(path, method, item[method]));
    }
  }
  fill($("#api-docs"), [...groups.values()].filter((group) => group.items.length).map(({ tag, items }) => h("section", {
    class: "tag-group", "aria-labelledby": `tag-${tag.name}`,
  }, h("h2", { id: `tag-${tag.name}` }, tag.name), tag.description ? h("p", { class: "hint" }, prose(tag.description)) : null, items)));
  filter();
  const target = window.location.hash && document.getElementById(window.location.hash.slice(1));
  if (target && target.tagName === "DETAILS") { target.open = true; target.scrollIntoView(); }
}

function filter() {
  const words = $("#api-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const item of document.querySelectorAll(".endpoint")) {
    const match = words.every((word) => item.dataset.search.includes(word));
    item.hidden = !match;
    shown += match ? 1 : 0;
  }
  for (const group of document.querySelectorAll(".tag-group")) {
    group.hidden = !group.querySelector(".endpoint:not([hidden])");
  }
  $("#api-count").textContent = `${shown} ${shown === 1 ? "endpoint" : "endpoints"}${words.length ? " match" : ""}`;
}

function openAll(open) {
  for (const item of document.querySelectorAll(".endpoint:not([hidden])")) { item.open = open; }
}

async function load() {
  const box = $("#api-docs");
  try {
    doc = await getJson("/api/v1/openapi.json");
    render();
  } catch (err) {
    fill(box, h("div", { class: "failure" }, h("strong", {}, "The OpenAPI document cannot be loaded: "), err.message));
  } finally {
    box.setAttribute("aria-busy", "false");
  }
}

markCurrentNav();
$("#api-filter").addEventListener("input", filter);
$("#api-tools").addEventListener("submit", (event) => event.preventDefault());
$("#expand-all").addEventListener("click", () => openAll(true));
$("#collapse-all").addEventListener("click", () => openAll(false));
load();
