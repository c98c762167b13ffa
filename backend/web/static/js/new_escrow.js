// The terms builder (/escrows/new): reads the form into a terms document and the contract's
// rules, asks the API to prepare the creation (POST /api/escrows/prepare), sends the ERC-20
// approve first when there is one, then the creation, and opens the new escrow's page.
//
// Exports the exact unit conversions (no floating point) the review page uses as well.
import { api, checkChain, connect, runTx, status } from "/static/js/app.js";
import { Wallet, discoverWallets } from "/static/js/wallet.js";

export const ZERO_ADDRESS = "0x0000000000000000000000000000000000000000";
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const KPI_ID = /^[A-Za-z0-9_.:-]{1,64}$/;
const UINT32_MAX = 2n ** 32n - 1n;
const SYMBOL_SELECTOR = "0x95d89b41"; // symbol()
const DECIMALS_SELECTOR = "0x313ce567"; // decimals()

// ------------------------------------------------------------------ units, exactly

/** The decimal separator of `lang` ("," in Russian and Spanish). */
export function decimalSeparator(lang = document.documentElement.lang || "en") {
  const part = new Intl.NumberFormat(lang).formatToParts(1.5).find((p) => p.type === "decimal");
  return part ? part.value : ".";
}

/** A refusal of typed text: `kind` is "empty", "invalid" or "too_many_decimals". */
export class UnitsError extends Error {
  constructor(kind, decimals) {
    super(kind);
    this.kind = kind;
    this.decimals = decimals;
  }
}

/** "1.5" in a token of `decimals` decimals -> "1500000000000000000" (base units, a decimal
 *  string), without floating point: the text is split on its decimal separator and the
 *  fraction padded to `decimals` digits. "." is always a separator, the locale's own ("," in
 *  Russian) too; spaces (digit grouping) are ignored. More decimals than the token has are
 *  refused, never rounded. */
export function parseUnits(text, decimals, separator = decimalSeparator()) {
  let s = String(text ?? "").replace(/[\s\u00a0\u202f]/g, "");
  if (s === "") throw new UnitsError("empty");
  if (separator !== "." && s.split(separator).length === 2 && !s.includes(".")) {
    s = s.replace(separator, ".");
  }
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(s)) throw new UnitsError("invalid");
  const [whole, fraction = ""] = s.split(".");
  if (fraction.length > decimals) throw new UnitsError("too_many_decimals", decimals);
  return BigInt((whole || "0") + fraction.padEnd(decimals, "0")).toString();
}

/** Base units (a decimal string or a BigInt) in the token's units, grouped and with the decimal
 *  separator of `lang`, never rounded: ("1500000000000000000", 18, "ETH") -> "1.5 ETH". */
export function formatUnits(value, decimals, symbol = "", lang = document.documentElement.lang || "en") {
  let v = BigInt(value);
  const negative = v < 0n;
  if (negative) v = -v;
  const base = 10n ** BigInt(decimals || 0);
  const fraction = decimals ? (v % base).toString().padStart(decimals, "0").replace(/0+$/, "") : "";
  const whole = new Intl.NumberFormat(lang).format(v / base);
  const text = `${negative ? "-" : ""}${whole}${fraction ? decimalSeparator(lang) + fraction : ""}`;
  return symbol ? `${text} ${symbol}` : text;
}

/** An ABI-encoded `string` (or a zero-padded bytes32, MKR-style) from an eth_call answer. */
export function decodeAbiString(hex) {
  const data = String(hex || "0x").replace(/^0x/, "");
  const toBytes = (h) => Uint8Array.from((h.match(/../g) || []).map((b) => parseInt(b, 16)));
  if (data.length === 64) {
    return new TextDecoder().decode(toBytes(data.replace(/(00)+$/, ""))) || null;
  }
  if (data.length < 128) return null;
  const offset = Number(BigInt("0x" + data.slice(0, 64))) * 2;
  if (offset + 64 > data.length) return null;
  const length = Number(BigInt("0x" + data.slice(offset, offset + 64))) * 2;
  const start = offset + 64;
  if (start + length > data.length || length > 64) return null;
  return new TextDecoder().decode(toBytes(data.slice(start, start + length)));
}

/** An ABI-encoded uint8 (`decimals()`), or null when the answer is no number up to 255. */
export function decodeAbiUint8(hex) {
  const data = String(hex || "0x").replace(/^0x/, "");
  if (data.length < 64) return null;
  const value = BigInt("0x" + data.slice(0, 64));
  return value <= 255n ? Number(value) : null;
}

// ------------------------------------------------------------------ the page

const root = document.querySelector('[data-page="new-escrow"]');
if (root) startBuilder();

function startBuilder() {
  const data = JSON.parse(document.getElementById("qe-page-data").textContent);
  const messages = JSON.parse(document.getElementById("qe-page-messages").textContent);
  const form = document.getElementById("new-escrow");
  const $ = (id) => document.getElementById(id);
  const separator = decimalSeparator();
  let account = null;
  // the token amounts are in: ETH, or the ERC-20 once its symbol and decimals are read
  let token = { address: ZERO_ADDRESS, ...data.native };
  let tokenRead = 0; // counts reads, so a late answer for an old address is dropped
  let tokenPending = Promise.resolve(); // the read in flight, awaited before a submit

  function t(key, values = {}) {
    let text = messages[key] || key;
    for (const [name, value] of Object.entries(values)) text = text.replaceAll(`%(${name})s`, value);
    return text;
  }

  class FieldError extends Error {
    constructor(input, message) {
      super(message);
      this.input = input;
    }
  }

  // ---------------------------------------------------------------- field messages
  function errorSlot(input) {
    const id = `${input.id}-error`;
    let slot = document.getElementById(id);
    if (!slot) {
      slot = document.createElement("p");
      slot.id = id;
      slot.className = "field-error";
      (input.closest(".field") || input.parentElement).append(slot);
    }
    return slot;
  }

  function markField(input, message) {
    const slot = errorSlot(input);
    slot.textContent = message;
    input.setAttribute("aria-invalid", "true");
    const described = (input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
    if (!described.includes(slot.id)) {
      input.setAttribute("aria-describedby", [...described, slot.id].join(" "));
    }
  }

  function clearField(input) {
    const slot = document.getElementById(`${input.id}-error`);
    if (slot && slot.id !== "payout-error") slot.textContent = "";
    input.removeAttribute("aria-invalid");
  }

  function clearAll() {
    for (const input of form.querySelectorAll("[aria-invalid]")) clearField(input);
    $("form-error").textContent = "";
  }

  // ---------------------------------------------------------------- rows
  const lists = {
    milestone: { list: $("milestones"), template: $("milestone-template"), prefix: "milestone", min: 1 },
    kpi: { list: $("kpis"), template: $("kpi-template"), prefix: "kpi", min: 1 },
    criterion: { list: $("criteria"), template: $("criterion-template"), prefix: "criterion", min: 0 },
  };

  function renumber(kind) {
    const { list, prefix, min } = lists[kind];
    const rows = [...list.children];
    rows.forEach((row, i) => {
      const n = i + 1;
      for (const el of row.querySelectorAll("[data-label]")) {
        const text = t(el.dataset.label, { n });
        if (el.tagName === "BUTTON") el.setAttribute("aria-label", text);
        else el.textContent = text;
      }
      // ids: <prefix>-<n> or <prefix>-<n>-<part>; labels follow their input
      for (const input of row.querySelectorAll("input, select")) {
        const old = input.id;
        const part = old.replace(/^[a-z]+-\d+/, "");
        input.id = `${prefix}-${n}${part}`;
        const label = row.querySelector(`label[for="${old}"]`);
        if (label) label.htmlFor = input.id;
        const slot = document.getElementById(`${old}-error`);
        if (slot && old !== input.id) {
          slot.id = `${input.id}-error`;
          input.setAttribute("aria-describedby", slot.id);
        }
      }
      const remove = row.querySelector("[data-remove]");
      if (remove) remove.disabled = rows.length <= min;
    });
    $("add-milestone").disabled = lists.milestone.list.children.length >= data.limits.max_milestones;
  }

  function addRow(kind) {
    const { list, template } = lists[kind];
    const row = template.content.firstElementChild.cloneNode(true);
    list.append(row);
    renumber(kind);
    if (kind === "milestone") showSymbol();
    row.querySelector("input").focus();
    return row;
  }

  function wireRows(kind) {
    lists[kind].list.addEventListener("click", (event) => {
      const button = event.target.closest("[data-remove]");
      if (!button) return;
      const row = button.closest("[data-row]");
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      renumber(kind);
      updateTotal();
      const focus = next ? next.querySelector("input") : $(`add-${kind}`);
      if (focus) focus.focus();
    });
    renumber(kind);
  }

  $("add-milestone").addEventListener("click", () => addRow("milestone"));
  $("add-kpi").addEventListener("click", () => addRow("kpi"));
  $("add-criterion").addEventListener("click", () => addRow("criterion"));
  for (const kind of Object.keys(lists)) wireRows(kind);

  // the default of min_samples follows the aggregate chosen
  $("kpis").addEventListener("change", (event) => {
    if (event.target.name !== "kpi_aggregate") return;
    const row = event.target.closest("[data-row]");
    const min = row.querySelector('[name="kpi_min_samples"]');
    min.placeholder = t("default_samples", { n: data.default_min_samples[event.target.value] });
  });

  // ---------------------------------------------------------------- rules on and off
  function toggleRule(checkbox, rule) {
    const sync = () => { $(rule).hidden = !checkbox.checked; };
    checkbox.addEventListener("change", sync);
    sync();
  }
  toggleRule($("streak-on"), "streak-rule");
  toggleRule($("incident-on"), "incident-rule");

  // ---------------------------------------------------------------- token
  function showSymbol() {
    for (const el of root.querySelectorAll("[data-token-symbol]")) el.textContent = token.symbol || "?";
  }

  function tokenKind() {
    return form.querySelector('input[name="token_kind"]:checked').value;
  }

  async function readerWallet() {
    const session = await connect({ quiet: true }).catch(() => null);
    if (session) return session.wallet;
    const [found] = await discoverWallets();
    return found ? new Wallet(found.provider, found.info) : null;
  }

  async function readToken() {
    const info = $("token-info");
    const read = ++tokenRead;
    if (tokenKind() === "eth") {
      token = { address: ZERO_ADDRESS, ...data.native };
      info.textContent = t("token_found", token);
      showSymbol();
      updateTotal();
      return;
    }
    const address = $("token").value.trim();
    token = { address, symbol: null, decimals: null };
    showSymbol();
    updateTotal();
    if (!ADDRESS.test(address)) {
      info.textContent = t("token_unknown");
      return;
    }
    info.textContent = t("token_reading");
    const wallet = await readerWallet();
    if (!wallet) {
      if (read === tokenRead) info.textContent = t("token_no_wallet");
      return;
    }
    try {
      const call = (selector) => wallet.request("eth_call", [{ to: address, data: selector }, "latest"]);
      const [symbolHex, decimalsHex] = await Promise.all([call(SYMBOL_SELECTOR), call(DECIMALS_SELECTOR)]);
      const decimals = decodeAbiUint8(decimalsHex);
      if (read !== tokenRead) return;
      if (decimals === null) throw new Error("no decimals");
      token = { address, symbol: decodeAbiString(symbolHex) || `${address.slice(0, 6)}…`, decimals };
      info.textContent = t("token_found", token);
    } catch (error) {
      if (read !== tokenRead) return;
      token = { address, symbol: null, decimals: null };
      info.textContent = t("token_unreadable");
    }
    showSymbol();
    updateTotal();
  }

  function startTokenRead() {
    tokenPending = readToken().catch(() => {});
  }
  for (const radio of form.querySelectorAll('input[name="token_kind"]')) {
    radio.addEventListener("change", () => {
      $("token-field").hidden = tokenKind() === "eth";
      startTokenRead();
    });
  }
  $("token").addEventListener("change", startTokenRead);

  // ---------------------------------------------------------------- values
  function address(input, { optional = false } = {}) {
    const value = input.value.trim();
    if (value === "" && optional) return null;
    if (value === "") throw new FieldError(input, t("required"));
    if (!ADDRESS.test(value)) throw new FieldError(input, t("bad_address"));
    return value;
  }

  function units(input, decimals) {
    try {
      return parseUnits(input.value, decimals, separator);
    } catch (error) {
      if (!(error instanceof UnitsError)) throw error;
      if (error.kind === "empty") throw new FieldError(input, t("required"));
      if (error.kind === "too_many_decimals") throw new FieldError(input, t("too_many_decimals", { decimals }));
      throw new FieldError(input, t("invalid_amount"));
    }
  }

  function amount(input) {
    if (token.decimals === null || token.decimals === undefined) {
      throw new FieldError($("token"), t("token_unknown"));
    }
    const value = units(input, token.decimals);
    if (BigInt(value) === 0n) throw new FieldError(input, t("zero_amount"));
    return value;
  }

  /** A percentage "12.5" -> 1250 bps (a number, 0..10000). */
  function bps(input) {
    let value;
    try {
      value = BigInt(parseUnits(input.value, 2, separator));
    } catch (error) {
      if (error instanceof UnitsError && error.kind === "empty") throw new FieldError(input, t("required"));
      throw new FieldError(input, t("percent_invalid"));
    }
    if (value > BigInt(data.bps)) throw new FieldError(input, t("percent_invalid"));
    return Number(value);
  }

  /** Seconds of a duration input and its unit select ("1.5" days -> 129600). */
  function seconds(input, { min = 1n } = {}) {
    const unit = BigInt($(input.dataset.duration).value);
    let hundredths;
    try {
      hundredths = BigInt(parseUnits(input.value, 2, separator));
    } catch (error) {
      if (error instanceof UnitsError && error.kind === "empty") throw new FieldError(input, t("required"));
      throw new FieldError(input, t("duration_invalid"));
    }
    const value = (hundredths * unit) / 100n;
    if (value < min) throw new FieldError(input, t("duration_invalid"));
    if (value > UINT32_MAX) throw new FieldError(input, t("duration_too_long"));
    return Number(value);
  }

  function threshold(input) {
    const text = input.value.trim().replace(separator, ".");
    const value = Number(text);
    if (text === "" || !Number.isFinite(value)) throw new FieldError(input, t("threshold_invalid"));
    return value;
  }

  function wholeNumber(input, min, message) {
    const text = input.value.trim();
    if (!/^\d{1,9}$/.test(text) || Number(text) < min) throw new FieldError(input, message);
    return Number(text);
  }

  function kpiRule(row) {
    const field = (name) => row.querySelector(`[name="${name}"]`);
    const id = field("kpi_id");
    if (!KPI_ID.test(id.value.trim())) throw new FieldError(id, t("kpi_id_invalid"));
    const rule = {
      id: id.value.trim(),
      aggregate: field("kpi_aggregate").value,
      op: field("kpi_op").value,
      threshold: threshold(field("kpi_threshold")),
    };
    const min = field("kpi_min_samples");
    if (min.value.trim() !== "") rule.min_samples = wholeNumber(min, 1, t("min_samples_invalid"));
    return rule;
  }

  /** The payout table in bps, with the message next to the table when it breaks a rule. */
  function payoutTable({ throwing = true } = {}) {
    const inputs = [...form.querySelectorAll('[name="payout"]')];
    const slot = $("payout-error");
    slot.textContent = "";
    for (const input of inputs) input.removeAttribute("aria-invalid");
    const fail = (input, message) => {
      slot.textContent = message;
      input.setAttribute("aria-invalid", "true");
      if (throwing) throw new FieldError(input, message);
      return null;
    };
    const table = [];
    for (const input of inputs) {
      try {
        table.push(bps(input));
      } catch (error) {
        if (error instanceof FieldError) return fail(input, error.message);
        throw error;
      }
    }
    for (let i = 1; i < table.length; i += 1) {
      if (table[i] < table[i - 1]) return fail(inputs[i], t("payout_decreasing", { n: i + 1, m: i }));
    }
    if (table[4] !== data.bps) return fail(inputs[4], t("payout_five"));
    return table;
  }
  $("payouts").addEventListener("input", () => payoutTable({ throwing: false }));

  function deadline() {
    const input = $("delivery-deadline");
    if (!input.value) throw new FieldError(input, t("required"));
    const ms = new Date(input.value).getTime(); // datetime-local: the viewer's own zone
    if (Number.isNaN(ms) || ms <= Date.now()) throw new FieldError(input, t("deadline_invalid"));
    return Math.floor(ms / 1000);
  }

  /** Everything the form says, as the body of POST /api/escrows/prepare (client left out). */
  function collect() {
    const errors = [];
    const attempt = (read) => {
      try {
        return read();
      } catch (error) {
        if (!(error instanceof FieldError)) throw error;
        errors.push(error);
        return undefined;
      }
    };
    const title = $("title");
    const provider = attempt(() => address($("provider")));
    if (provider && account && provider.toLowerCase() === account) {
      errors.push(new FieldError($("provider"), t("same_as_client")));
    }
    const oracle = attempt(() => address($("oracle")));
    const arbiter = attempt(() => address($("arbiter"), { optional: true }));
    const tokenAddress = tokenKind() === "eth" ? null : attempt(() => address($("token")));
    const amounts = [...$("milestones").querySelectorAll("[data-amount]")].map((input) => attempt(() => amount(input)));
    if (!title.value.trim()) errors.push(new FieldError(title, t("required")));
    const kpis = [...$("kpis").children].map((row) => attempt(() => kpiRule(row)));
    const seen = new Set();
    [...$("kpis").children].forEach((row, i) => {
      const rule = kpis[i];
      if (!rule) return;
      if (seen.has(rule.id)) errors.push(new FieldError(row.querySelector('[name="kpi_id"]'), t("kpi_duplicate")));
      seen.add(rule.id);
    });
    const criteria = [...$("criteria").querySelectorAll('[name="criterion"]')]
      .map((input) => input.value.trim()).filter(Boolean);
    const terms = {
      version: 1,
      title: title.value.trim(),
      period_seconds: attempt(() => seconds($("period"))),
      kpis,
      missing_data: $("missing-data").value,
      grace_seconds: attempt(() => seconds($("grace"), { min: 0n })),
      acceptance_criteria: criteria,
    };
    const streakOn = $("streak-on").checked;
    if (streakOn) terms.consecutive_periods = attempt(() => wholeNumber($("streak-count"), 2, t("streak_invalid")));
    const incidentOn = $("incident-on").checked;
    if (incidentOn) {
      const kpi = $("incident-kpi");
      terms.incident = {
        kpi: attempt(() => {
          if (!KPI_ID.test(kpi.value.trim())) throw new FieldError(kpi, t("kpi_id_invalid"));
          return kpi.value.trim();
        }),
        aggregate: $("incident-aggregate").value,
        op: $("incident-op").value,
        threshold: attempt(() => threshold($("incident-threshold"))),
      };
    }
    const rules = {
      rating_payout_bps: attempt(() => payoutTable()),
      breach_refund_bps: attempt(() => bps($("breach-refund"))),
      streak_refund_bps: streakOn ? attempt(() => bps($("streak-refund"))) : 0,
      incident_refund_bps: incidentOn ? attempt(() => bps($("incident-refund"))) : 0,
      max_refund_bps: attempt(() => bps($("max-refund"))),
      review_period: attempt(() => seconds($("review-period"))),
      challenge_period: attempt(() => seconds($("challenge-period"))),
      arbitration_period: attempt(() => seconds($("arbitration-period"), { min: arbiter ? 1n : 0n })),
      delivery_deadline: attempt(deadline),
    };
    if (errors.length) throw errors;
    const body = {
      provider, oracle, milestone_amounts: amounts, terms_document: terms,
      rules: Object.fromEntries(Object.entries(rules).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : String(v)])),
    };
    if (arbiter) body.arbiter = arbiter;
    if (tokenAddress) body.token = tokenAddress;
    return body;
  }

  function updateTotal() {
    const out = $("total");
    if (token.decimals === null || token.decimals === undefined) { out.textContent = ""; return; }
    let sum = 0n;
    for (const input of $("milestones").querySelectorAll("[data-amount]")) {
      try {
        sum += BigInt(parseUnits(input.value, token.decimals, separator));
      } catch {
        // an unfinished or wrong amount: counted once it reads
      }
    }
    out.textContent = t("total", { amount: formatUnits(sum, token.decimals, token.symbol) });
  }
  $("milestones").addEventListener("input", updateTotal);

  // ---------------------------------------------------------------- submit
  function showErrors(errors) {
    for (const error of errors) markField(error.input, error.message);
    $("form-error").textContent = t("fix_fields");
    errors[0].input.focus();
  }

  /** The id of the escrow the mined creation `receipt` made, from GET /api/tx/{hash}. */
  async function escrowIdOf(receipt) {
    const hash = receipt.transactionHash;  // 404 until the service's node has it: ask again
    for (let attempt = 0; attempt < 60; attempt += 1) {
      try {
        const tx = await api(`/api/tx/${hash}`, undefined, "GET");
        if (tx.status === "reverted") throw new Error(tx.error || "reverted");
        if (tx.escrow_ids && tx.escrow_ids.length) return tx.escrow_ids[0];
      } catch (error) {
        if (error.status !== 404 && error.status !== 503) throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    return null;
  }

  /** Waits (at most a minute) until the service has indexed escrow `id`. */
  async function indexed(id) {
    for (let attempt = 0; attempt < 120; attempt += 1) {
      const response = await fetch(`/api/escrows/${id}`, { headers: { Accept: "application/json" } });
      if (response.ok) return;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  const submit = $("create");
  const step = $("create-step");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearAll();
    status("");
    step.textContent = "";
    await tokenPending; // an address typed just before the click is read first
    let body;
    try {
      body = collect();
    } catch (errors) {
      if (Array.isArray(errors)) { showErrors(errors); return; }
      throw errors;
    }
    submit.disabled = true;
    try {
      const session = await connect();
      if (!session) { $("form-error").textContent = t("connect_first"); return; }
      onAccount(session.account);
      if (session.account === body.provider.toLowerCase()) {
        showErrors([new FieldError($("provider"), t("same_as_client"))]);
        return;
      }
      if (!(await checkChain())) { $("form-error").textContent = t("wrong_chain"); return; }
      status(t("preparing"));
      let prepared;
      try {
        prepared = await api("/api/escrows/prepare", { client: session.account, ...body });
      } catch (error) {
        status("");
        $("form-error").textContent = t("refused", { detail: error.message });
        return;
      }
      const total = formatUnits(prepared.total, token.decimals, token.symbol);
      if (prepared.approve) {
        step.textContent = t("approve_step", { amount: total });
        const approved = await runTx(async () => prepared.approve);
        if (!approved) return;
      }
      step.textContent = t("create_step", { amount: total });
      const receipt = await runTx(async () => prepared.tx);
      if (!receipt) return;
      status(t("finding"));
      const id = await escrowIdOf(receipt);
      if (id === null) { status(t("not_found_tx"), "bad"); return; }
      await indexed(id);  // the escrow page reads the service's index, a block behind the node
      window.location.assign(`/escrows/${id}`);
    } catch (error) {
      status(String(error.message || error), "bad");
    } finally {
      submit.disabled = false;
    }
  });

  // fields fixed by the user lose their message as they are edited
  form.addEventListener("input", (event) => {
    if (event.target.matches("[aria-invalid]") && event.target.name !== "payout") clearField(event.target);
  });

  // ---------------------------------------------------------------- account and defaults
  function onAccount(current) {
    account = current ? current.toLowerCase() : null;
    $("client-line").textContent = account ? t("client_is", { account }) : $("client-line").textContent;
  }

  function defaultDeadline() {
    const input = $("delivery-deadline");
    const pad = (n) => String(n).padStart(2, "0");
    const local = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
    input.min = local(new Date());
    if (!input.value) {
      const later = new Date(Date.now() + 30 * 86400 * 1000);
      later.setSeconds(0, 0);
      input.value = local(later);
    }
  }

  defaultDeadline();
  showSymbol();
  updateTotal();
  payoutTable({ throwing: false });
  connect({ quiet: true }).then((session) => session && onAccount(session.account)).catch(() => {});
  root.dataset.ready = "1";
}
