// The auditor: the checks run on the server when the form is sent (a plain GET, so an audit
// has an address to share); this only says that reading the chain may take a while.
const running = document.getElementById("audit-running");
for (const form of document.querySelectorAll("[data-page='audit'] form")) {
  form.addEventListener("submit", () => {
    running.hidden = false;
    for (const button of form.querySelectorAll("button")) button.setAttribute("aria-disabled", "true");
  });
}
