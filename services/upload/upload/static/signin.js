// The sign-in form: where to come back to (?next=, a path on this site: the server checks
// it again), and the message after a wrong token (?failed=1).
const params = new URLSearchParams(window.location.search);

function setUp() {
  const next = params.get("next");
  if (next && next.startsWith("/") && !next.startsWith("//")) {
    document.getElementById("next").value = next;
  }
  if (params.get("failed")) {
    document.getElementById("sign-in-failed").hidden = false;
  }
  document.getElementById("token").focus();
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", setUp);
} else {
  setUp();
}
