// The page header's account: who is signed in, and the sign-out button (POST /signout).
// Shown only when the server needs a sign-in (API tokens on); without tokens everyone is
// `local` and there is nothing to sign out of.
import { getJson } from "./api.js";

async function showAccount() {
  const form = document.getElementById("account");
  if (!form) { return; }
  let me;
  try {
    me = await getJson("/api/v1/me");
  } catch {
    return; // not signed in (the open API docs page), or the server is away
  }
  if (!me.sign_in || !me.principal) { return; }
  document.getElementById("account-name").textContent = me.principal + (me.auditor ? " (auditor)" : "");
  form.hidden = false;
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", showAccount);
} else {
  showAccount();
}
