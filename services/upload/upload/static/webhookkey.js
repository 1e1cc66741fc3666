// The upload form's webhook key: "Show my signing key" reads the signed-in principal's own
// key (GET /api/v1/webhooks/secret, answered no-store) and shows it, with its generation,
// so that a receiver can be set up to check X-Imagemesh-Signature. Nothing is kept.

import { getJson } from "./api.js";
import { $, fill, h } from "./dom.js";

async function showKey() {
  const button = $("#webhook-key-show");
  const out = $("#webhook-key");
  button.disabled = true;
  try {
    const key = await getJson("/api/v1/webhooks/secret");
    fill(out,
      "Your signing key (generation ", String(key.generation), "): ",
      h("code", { id: "webhook-key-text" }, key.secret),
      ". Each webhook carries ", h("code", {}, `${key.signature_header}: sha256=…`),
      ", the hex HMAC-SHA256 of the exact body keyed with this text.");
    button.hidden = true;
  } catch (err) {
    fill(out, err.status === 404
      ? "Webhooks are off on this server: a notify URL would be refused."
      : `The key cannot be read: ${err.message}`);
    button.disabled = false;
  }
  out.hidden = false;
}

export function wireWebhookKey() {
  $("#webhook-key-show").addEventListener("click", showKey);
}
