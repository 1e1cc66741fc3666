// A job's PROV-JSON as an ordered timeline (an image's lineage: lineage.js).

import { jobLink } from "./api.js";
import { h } from "./dom.js";
import { duration, localTime, parseTime, pipelineSummary, stepText } from "./format.js";

/** A PROV-JSON value: plain, or typed as {"$": value, "type": ...}. */
const plain = (value) => (value && typeof value === "object" && "$" in value ? value.$ : value);

function parsedJson(value) {
  const text = plain(value);
  if (typeof text !== "string") { return text; }
  try { return JSON.parse(text); } catch { return text; }
}

/** Activities in the order they happened, each with the agents (service, version) that ran it. */
export function timelineSteps(doc) {
  const agents = doc.agent || {};
  const associated = new Map();
  for (const relation of Object.values(doc.wasAssociatedWith || {})) {
    const list = associated.get(relation["prov:activity"]) || [];
    list.push(agents[relation["prov:agent"]] || {});
    associated.set(relation["prov:activity"], list);
  }
  const steps = Object.entries(doc.activity || {}).map(([id, activity]) => {
    const related = associated.get(id) || [];
    const service = related.find((agent) => agent["imagemesh:service"]) || {};
    const client = related.find((agent) => agent["imagemesh:address"] || agent["imagemesh:user_agent"]) || null;
    return {
      id,
      activity,
      type: plain(activity["prov:type"]),
      start: parseTime(plain(activity["prov:startTime"])),
      end: parseTime(plain(activity["prov:endTime"]) || plain(activity["prov:startTime"])),
      service: plain(service["imagemesh:service"]) || "",
      version: plain(service["imagemesh:version"]) || "",
      host: plain(service["imagemesh:host"]) || "",
      client,
    };
  });
  // An operation of a computation (`<processed activity>/operation/<n>`) has no times of
  // its own (imageproc says how long, not when): it shows within the computation, before it.
  const byId = new Map(steps.map((step) => [step.id, step]));
  for (const step of steps) {
    const whole = byId.get(step.id.split("/operation/")[0]);
    if (whole && whole !== step && Number.isNaN(step.end)) {
      Object.assign(step, { start: whole.start, end: whole.end, within: true });
    }
  }
  // A reused job's document names the earlier job's computation it took (no times, no
  // agent: they are that job's): it shows as taken at the reuse, by the service that reused
  // it, as the job's progress stream sends it (upload/steps.py).
  for (const relation of Object.values(doc.wasInformedBy || {})) {
    const taken = byId.get(relation["prov:informant"]);
    const reuse = byId.get(relation["prov:informed"]);
    if (taken && reuse && reuse.type === "image.reused" && Number.isNaN(taken.end)) {
      const { start, end, service, version, host } = reuse;
      const reusedFrom = plain(reuse.activity["imagemesh:reused_from"]);
      Object.assign(taken, { start, end, service, version, host, reusedFrom });
    }
  }
  // By end time: a whole-job activity (image.processed) starts early but ends last.
  steps.sort((a, b) => (a.end - b.end) || (Number(!a.within) - Number(!b.within)) || (a.start - b.start)
    || ((plain(a.activity["imagemesh:index"]) ?? 0) - (plain(b.activity["imagemesh:index"]) ?? 0)));
  return steps;
}


function details(step) {
  const a = (name) => plain(step.activity[`imagemesh:${name}`]);
  const parts = [];
  switch (step.type) {
    case "upload.received":
      if (a("filename")) { parts.push(["file ", h("code", {}, a("filename"))]); }
      if (step.client) {
        const who = [plain(step.client["imagemesh:address"]), plain(step.client["imagemesh:user_agent"])].filter(Boolean);
        parts.push(`from ${who.join(", ")}`);
      }
      if (step.activity["prov:location"]) {
        parts.push(["stored at ", h("code", {}, plain(step.activity["prov:location"]))]);
      }
      break;
    case "image.stored": // recorded before upload.received and image.processed said it
      parts.push([`${a("role") || "image"} at `, h("code", {}, plain(step.activity["prov:location"]) || "?")]);
      break;
    case "image.uploaded":
    case "job.processing-started": {
      const pipeline = parsedJson(step.activity["imagemesh:pipeline"]);
      if (Array.isArray(pipeline)) { parts.push(["pipeline ", h("code", {}, pipelineSummary(pipeline))]); }
      if (a("retry_of")) { parts.push(["a retry of job ", jobLink(a("retry_of"))]); }
      break;
    }
    case "job.retried":
      parts.push(["as job ", jobLink(a("retry")), a("principal") ? `, by ${a("principal")}` : ""]);
      break;
    case "job.erased": {
      const deleted = parsedJson(step.activity["imagemesh:deleted"]);
      const kept = parsedJson(step.activity["imagemesh:kept"]);
      parts.push([`by ${a("principal") || "?"}: ${Array.isArray(deleted) ? deleted.length : 0} stored objects deleted`,
        Array.isArray(kept) && kept.length
          ? `, ${kept.length} kept (${kept.map((k) => k.kept_because).join("; ")})` : ""]);
      break;
    }
    case "webhook.attempted": {
      const answer = a("status_code") ? `answered ${a("status_code")}` : "no answer";
      parts.push(["POST ", h("code", {}, a("url") || "?"), `: ${answer}, ${a("outcome") || "?"}`]);
      break;
    }
    case "operation.applied": {
      const params = parsedJson(step.activity["imagemesh:params"]);
      const shown = params && typeof params === "object" ? JSON.stringify(params) : String(params ?? "");
      parts.push([h("code", {}, a("operation")), shown && shown !== "{}" ? [" ", h("code", {}, shown)] : null]);
      break;
    }
    default:
      break;
  }
  const code = a("error_code");
  const message = a("error_message") || a("error");
  if (code || message) { parts.push(["error ", h("code", {}, code || ""), message ? ` ${plain(message)}` : ""]); }
  if (typeof a("duration_ms") === "number") { parts.push(`took ${duration(a("duration_ms"))}`); }
  return parts;
}

/** The timeline as an ordered list: time since the first step, what, who. */
export function timeline(doc) {
  const steps = timelineSteps(doc);
  if (steps.length === 0) { return h("p", { class: "hint" }, "No steps recorded yet."); }
  const first = Math.min(...steps.map((step) => step.start).filter(Number.isFinite));
  return h("ol", { class: "timeline" }, steps.map((step) => {
    const attrs = {
      type: step.type,
      role: plain(step.activity["imagemesh:role"]),
      operation: plain(step.activity["imagemesh:operation"]),
      index: plain(step.activity["imagemesh:index"]),
      attempt: plain(step.activity["imagemesh:attempt"]),
      reused_from: step.reusedFrom,
    };
    const offset = Math.max(0, step.end - first);
    const when = Number.isFinite(step.end) ? (offset < 1 ? "start" : `+${duration(offset)}`) : "";
    const text = details(step);
    return h("li", { dataset: { type: step.type, service: step.service } },
      h("div", { class: "tl-head" },
        h("span", { class: "tl-title" }, stepText(attrs)),
        step.service ? h("span", { class: "tl-agent", title: step.host ? `on ${step.host}` : null },
          `${step.service}${step.version ? ` ${step.version}` : ""}`) : null,
        h("time", { class: "tl-when", datetime: plain(step.activity["prov:endTime"]) || "",
          title: localTime(plain(step.activity["prov:endTime"])) }, when)),
      text.length ? h("p", { class: "tl-detail" }, text.flatMap((part, i) => (i ? [" \u00b7 ", part] : [part]))) : null);
  }));
}
