// Checking a pipeline that arrives as data (typed JSON, a shared link, a saved pipeline)
// before the builder takes it: each problem names the step, the operation, the parameter
// and why, so nothing is dropped or rewritten without a word. A problem is
// {index, message}: `index` is the step's (null for the pipeline as a whole).

import { checkValue, quoteValue } from "./schema.js";

/** "Step 2 (convert)": where a problem is, as every message of the builder says it. */
export const stepWords = (index, op) => `Step ${index + 1}${op ? ` (${op})` : ""}`;

function stepMessages(step, index, catalogue) {
  if (!step || typeof step !== "object" || Array.isArray(step)) {
    return [`${stepWords(index)}: must be an operation such as {"op": "grayscale"}, not ${JSON.stringify(step)}.`];
  }
  if (!("op" in step)) { return [`${stepWords(index)}: says no "op" (which operation to run).`]; }
  const op = catalogue.get(step.op);
  if (!op) {
    return [`${stepWords(index)}: ${quoteValue(step.op)} is not an operation (see \u201cOperation to add\u201d).`];
  }
  const known = Object.keys((op.params && op.params.properties) || {});
  const has = known.length ? `it has ${known.join(", ")}` : "it has none";
  return Object.keys(step)
    .filter((name) => name !== "op" && !known.includes(name))
    .map((name) => `${stepWords(index, step.op)}, ${name}: is not a parameter of ${step.op} (${has}).`);
}

/** Problems with a pipeline's shape: a list of known operations with known parameters. */
export function shapeProblems(value, catalogue, maxOps) {
  if (!Array.isArray(value)) {
    return [{ index: null, message: 'The pipeline must be a JSON list of operations, such as [{"op": "grayscale"}].' }];
  }
  const problems = [];
  if (maxOps && value.length > maxOps) {
    problems.push({ index: null, message: `A pipeline has at most ${maxOps} operations; this one has ${value.length}.` });
  }
  value.forEach((step, index) => {
    problems.push(...stepMessages(step, index, catalogue).map((message) => ({ index, message })));
  });
  return problems;
}

/** Why a field cannot hold `value` as written (a type or a choice it does not offer). */
export function valueProblem(index, op, name, schema, value) {
  const errors = checkValue(schema || {}, value, name);
  const why = errors.length ? [...new Set(errors.map((e) => e.message))].join("; ") : "cannot be set in the builder as written";
  return { index, message: `${stepWords(index, op)}, ${name} = ${quoteValue(value)}: ${why}.` };
}
