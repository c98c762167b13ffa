// The escrow page: marks the connected account among the parties, shows that party the actions
// the server found open (elements with data-roles, hidden until then), and runs each through the
// wallet: POST /api/escrows/{id}/tx/{action} gives the ready transaction (a delivery or a dispute
// goes through POST .../milestones/{m}/delivery | dispute, which store the note or the reason
// with its files and answer the transaction carrying its hash), `runTx` sends it, and the page
// reloads once the service has indexed the block.
import { api, connect, runTx, status } from "/static/js/app.js";

const root = document.querySelector("[data-page='escrow']");
const messages = JSON.parse(document.getElementById("qe-page-messages").textContent);
const escrowId = root.dataset.escrow;
const parties = {
  client: root.dataset.client, provider: root.dataset.provider,
  arbiter: root.dataset.arbiter, oracle: root.dataset.oracle,
};
const ZERO_HASH = `0x${"0".repeat(64)}`;

function t(key, values = {}) {
  let text = messages[key] || key;
  for (const [name, value] of Object.entries(values)) text = text.replace(`%(${name})s`, value);
  return text;
}

/** The roles `account` holds in this escrow ("client", "provider", ...). */
function rolesOf(account) {
  if (!account) return [];
  return Object.keys(parties).filter((role) => parties[role] === account.toLowerCase());
}

/** Shows the connected party its own actions (and `anyone`'s to every connected account). */
function showFor(account) {
  const roles = rolesOf(account);
  for (const el of root.querySelectorAll("[data-roles]")) {
    const wanted = el.dataset.roles.split(" ");
    el.hidden = !account || !(wanted.includes("anyone") || wanted.some((r) => roles.includes(r)));
  }
  for (const code of root.querySelectorAll("[data-address]")) {
    const badge = code.parentElement.querySelector(".you-badge");
    const mine = Boolean(account) && code.dataset.address === account.toLowerCase();
    code.closest("[data-party]")?.classList.toggle("is-you", mine);
    if (badge) badge.hidden = !mine;
  }
  const line = document.getElementById("escrow-you");
  const hint = document.getElementById("escrow-connect");
  if (hint) hint.hidden = Boolean(account);
  if (!account) { line.hidden = true; return; }
  line.textContent = roles.length
    ? t("your_roles", { roles: roles.map((r) => t(r)).join(", ") })
    : t("not_a_party");
  line.hidden = false;
}

/** Waits until the service's index holds `blockNumber` (so the reloaded page shows the change). */
async function waitIndexed(blockNumber) {
  const target = Number(blockNumber);
  status(t("indexing"));
  for (let i = 0; i < 60; i += 1) {
    try {
      const response = await fetch(`/api/escrows/${escrowId}`, { cache: "no-store" });
      if (response.ok && (await response.json()).updated_block >= target) return;
    } catch (error) { /* the next try tells */ }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const reload = async (receipt) => { await waitIndexed(receipt.blockNumber); window.location.reload(); };

/** Runs one action; `fetchTx` gives `{to, data, value}`; errors of the API land in `errorBox`. */
async function act(fetchTx, errorBox) {
  if (errorBox) errorBox.hidden = true;
  return runTx(async () => {
    try {
      return await fetchTx();
    } catch (error) {
      if (errorBox) { errorBox.textContent = error.message; errorBox.hidden = false; }
      throw error;
    }
  }, { done: reload });
}

const txFor = (action, args = {}) => api(`/api/escrows/${escrowId}/tx/${action}`, args);

async function upload(file) {
  status(t("uploading", { name: file.name }));
  const body = new FormData();
  body.append("file", file, file.name);
  const response = await fetch("/api/attachments", { method: "POST", body });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(answer.detail ? `${file.name}: ${answer.detail}` : `${response.status}`);
    error.status = response.status;
    error.code = answer.error;
    throw error;
  }
  return answer.sha256;
}

/** Missing route (an older service): 404 "no such path", or 405. */
const missingRoute = (error) => error.status === 405
  || (error.status === 404 && /^no such path/.test(error.message));

async function deliveryTx(form) {
  const milestone = Number(form.dataset.milestone);
  const note = form.elements.note.value;
  const attachments = [];
  for (const file of form.elements.files.files) attachments.push(await upload(file));
  status(t("preparing"));
  try {
    const answer = await api(`/api/escrows/${escrowId}/milestones/${milestone}/delivery`,
      { note, attachments });
    return answer.tx;
  } catch (error) {
    if (!missingRoute(error)) throw error;
    status(t("no_delivery_endpoint"));
    return txFor("deliver", { milestone, deliveryHash: ZERO_HASH });
  }
}

/** Stores the client's reason and files; the answer's `tx` is `openDispute` with its hash. */
async function disputeTx(form) {
  const milestone = Number(form.dataset.milestone);
  const reason = form.elements.reason.value;
  const attachments = [];
  for (const file of form.elements.files.files) attachments.push(await upload(file));
  status(t("preparing"));
  const answer = await api(`/api/escrows/${escrowId}/milestones/${milestone}/dispute`,
    { reason, attachments });
  return answer.tx;
}

for (const button of root.querySelectorAll("button[data-tx]")) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    const args = button.dataset.args ? JSON.parse(button.dataset.args) : {};
    const box = button.closest(".actions")?.querySelector(".form-error");
    try {
      await act(() => txFor(button.dataset.tx, args), box);
    } finally {
      button.disabled = false;
    }
  });
}

for (const form of root.querySelectorAll("form[data-form]")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submit = form.querySelector("button[type='submit']");
    const box = form.querySelector(".form-error");
    submit.disabled = true;
    try {
      if (form.dataset.form === "deliver") {
        await act(() => deliveryTx(form), box);
      } else if (form.dataset.form === "dispute") {
        if (!form.elements.reason.value.trim() && form.elements.files.files.length === 0) {
          box.textContent = t("reason_needed"); // the API refuses an empty dispute too (422)
          box.hidden = false;
          form.elements.reason.focus();
          return;
        }
        await act(() => disputeTx(form), box);
      }
    } finally {
      submit.disabled = false;
    }
  });
}

// the account: from the wallet when already connected, and again whenever the chip changes
// (connect button, account switch in the wallet)
const chip = document.getElementById("qe-account");
const fromChip = () => (chip.hidden ? null : chip.title || null);
new MutationObserver(() => showFor(fromChip())).observe(chip, {
  attributes: true, attributeFilter: ["hidden", "title"],
});
showFor(null);
connect({ quiet: true }).then((session) => showFor(session ? session.account : fromChip()))
  .catch(() => {});
