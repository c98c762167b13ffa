// What every page does: local times and countdowns, the wallet button, the network check, and
// the shared way to run a ready transaction (`runTx`) that page scripts import.
import { Wallet, classifyError, discoverWallets } from "/static/js/wallet.js";

const config = JSON.parse(document.getElementById("qe-config").textContent);
const messages = JSON.parse(document.getElementById("qe-messages").textContent);
const lang = document.documentElement.lang || "en";
const STORAGE = "qe-wallet";

export { config, messages };
let current = null; // {wallet, account}

export function t(key, values = {}) {
  let text = messages[key] || key;
  for (const [name, value] of Object.entries(values)) text = text.replace(`%(${name})s`, value);
  return text;
}

// ------------------------------------------------------------------ times
function localTimes(root = document) {
  const format = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" });
  for (const el of root.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) continue;
    el.title = el.getAttribute("datetime");
    el.dataset.local = format.format(when);
    el.textContent = el.dataset.local;
  }
  countdowns();
}

function span(ms) {
  const minutes = Math.floor(Math.abs(ms) / 60000);
  const d = Math.floor(minutes / 1440), h = Math.floor((minutes % 1440) / 60), m = minutes % 60;
  if (d) return `${d} ${t("days")} ${h} ${t("hours")}`;
  if (h) return `${h} ${t("hours")} ${m} ${t("minutes")}`;
  return `${m} ${t("minutes")}`;
}

function countdowns() {
  const now = Date.now();
  for (const el of document.querySelectorAll("time[data-countdown]")) {
    const left = new Date(el.getAttribute("datetime")).getTime() - now;
    const text = left >= 0 ? `${span(left)} ${t("left")}` : `${t("overdue")} ${span(left)} ${t("ago")}`;
    el.textContent = `${el.dataset.local} (${text})`;
    el.classList.toggle("overdue", left < 0);
  }
}

// ------------------------------------------------------------------ status line and banner
export function status(text, kind = "") {
  const line = document.getElementById("qe-status");
  if (!line) return;
  line.textContent = text;
  line.className = `status-line ${kind}`;
}

function banner(text, action) {
  const el = document.getElementById("qe-banner");
  el.replaceChildren();
  if (!text) { el.hidden = true; return; }
  const p = document.createElement("span");
  p.textContent = text;
  el.append(p);
  if (action) el.append(action);
  el.hidden = false;
}

/** A wallet error in plain language. */
export function explain(error) {
  const { kind, reason } = classifyError(error, config.reverts || {});
  if (kind === "rejected") return t("rejected");
  if (kind === "insufficient_funds") return t("insufficient_funds");
  if (kind === "unknown_chain") return t("wrong_chain");
  if (kind === "reverted") return t("reverted", { reason });
  return t("failed", { reason });
}

// ------------------------------------------------------------------ wallet
async function pickWallet() {
  const wallets = await discoverWallets();
  if (wallets.length === 0) return null;
  const remembered = localStorage.getItem(STORAGE);
  const chosen = wallets.find((w) => w.info.rdns === remembered || w.info.uuid === remembered);
  if (chosen || wallets.length === 1) return chosen || wallets[0];
  return chooseFrom(wallets);
}

function chooseFrom(wallets) {
  return new Promise((resolve) => {
    const dialog = document.createElement("dialog");
    dialog.setAttribute("aria-label", t("choose_wallet"));
    const title = document.createElement("h2");
    title.textContent = t("choose_wallet");
    dialog.append(title);
    for (const w of wallets) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = w.info.name;
      button.dataset.wallet = w.info.rdns || w.info.uuid;
      button.addEventListener("click", () => { dialog.close(); dialog.remove(); resolve(w); });
      dialog.append(button);
    }
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** The connected wallet and account, connecting when needed; null (after saying why) without one. */
export async function connect({ quiet = false } = {}) {
  if (current) return current;
  const found = await pickWallet();
  if (!found) {
    if (!quiet) banner(t("no_wallet"));
    return null;
  }
  const wallet = new Wallet(found.provider, found.info);
  let account;
  if (quiet) {
    [account] = await wallet.accounts();
    if (!account) return null;
  } else {
    account = await wallet.connect();
  }
  localStorage.setItem(STORAGE, found.info.rdns || found.info.uuid);
  current = { wallet, account: account.toLowerCase() };
  showAccount(account);
  wallet.on("accountsChanged", (accounts) => onAccount(accounts[0]));
  wallet.on("chainChanged", () => window.location.reload());
  await checkChain();
  return current;
}

function showAccount(account) {
  const chip = document.getElementById("qe-account");
  chip.textContent = `${account.slice(0, 6)}…${account.slice(-4)}`;
  chip.title = account;
  chip.hidden = false;
  document.getElementById("qe-connect").hidden = true;
  for (const link of document.querySelectorAll("a[data-keep-account]")) {
    const url = new URL(link.href, window.location.origin);
    url.searchParams.set("account", account);
    link.href = url.pathname + url.search;
  }
  const page = document.querySelector("[data-page]");
  if (page && page.dataset.page === "dashboard-connect") {
    window.location.assign(`/?account=${account}`);
  }
}

function onAccount(account) {
  if (!account) { window.location.assign("/"); return; }
  const page = document.querySelector("[data-account]");
  if (page && page.dataset.account.toLowerCase() !== account.toLowerCase()) {
    const url = new URL(window.location.href);
    url.searchParams.set("account", account);
    window.location.assign(url.pathname + url.search);
    return;
  }
  current.account = account.toLowerCase();
  showAccount(account);
}

/** True when the wallet is on the service's chain; otherwise a banner with a switch button. */
export async function checkChain() {
  if (!current) return false;
  const chainId = await current.wallet.chainId();
  if (chainId === Number(config.chain_id)) { banner(null); return true; }
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = t("switch_chain");
  button.addEventListener("click", async () => {
    try { await current.wallet.switchChain(config); } catch (error) { banner(explain(error)); }
  });
  banner(t("wrong_chain"), button);
  return false;
}

/** Runs one ready transaction: `fetchTx()` gives `{to, data, value}`; the wallet sends it and the
 *  receipt is awaited. Returns the receipt, or null after showing why not. */
export async function runTx(fetchTx, { done } = {}) {
  const session = await connect();
  if (!session) return null;
  if (!(await checkChain())) return null;
  try {
    status(t("pending"));
    const tx = await fetchTx();
    const hash = await session.wallet.sendTransaction(session.account, tx);
    status(t("sent"));
    const receipt = await session.wallet.waitForReceipt(hash);
    if (receipt.status !== "0x1" && receipt.status !== 1) throw new Error(`reverted in ${hash}`);
    status(t("mined"), "ok");
    if (done) await done(receipt);
    return receipt;
  } catch (error) {
    status(explain(error), "bad");
    return null;
  }
}

/** POST JSON to the API; throws an Error carrying the API's `detail` on a refusal. */
export async function api(path, body, method = "POST") {
  const response = await fetch(path, {
    method, headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(answer.detail || `${response.status}`);
    error.status = response.status;
    error.code = answer.error;
    throw error;
  }
  return answer;
}

// ------------------------------------------------------------------ page start
document.getElementById("qe-connect").addEventListener("click", () => {
  connect().catch((error) => banner(explain(error)));
});
for (const button of document.querySelectorAll("button[data-action='withdraw']")) {
  button.addEventListener("click", () => runTx(
    () => api("/api/tx/withdraw", { token: button.dataset.token }),
    { done: () => window.location.reload() },
  ));
}
localTimes();
setInterval(countdowns, 30000);
connect({ quiet: true }).catch(() => {});
