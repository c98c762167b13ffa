// The client's review of a delivered milestone (/escrows/{id}/milestones/{m}/review): a rating,
// the acceptance criteria, a comment and uploaded photos or PDFs; what each side receives at the
// chosen rating (the typed-data answer's `payout`); then the EIP-712 signature, the confirmation
// posted to the relayer and its progress until the provider's credit shows. Or a dispute: the
// reason and the files attached are stored (POST .../dispute) and the answer's `openDispute`
// carrying their hash goes through the wallet.
import { api, checkChain, connect, explain, runTx, status } from "/static/js/app.js";
import { formatUnits } from "/static/js/new_escrow.js";

const root = document.querySelector('[data-page="review"]');
const data = JSON.parse(document.getElementById("qe-page-data").textContent);
const messages = JSON.parse(document.getElementById("qe-page-messages").textContent);
const $ = (id) => document.getElementById(id);
const base = `/api/escrows/${data.escrow_id}/milestones/${data.milestone}`;
const token = data.token;
const client = data.client.toLowerCase();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function t(key, values = {}) {
  let text = messages[key] || key;
  for (const [name, value] of Object.entries(values)) text = text.replaceAll(`%(${name})s`, value);
  return text;
}

function units(value) {
  return formatUnits(value, token.decimals || 0, token.symbol || "");
}

function short(address) {
  return `${address.slice(0, 6)}…${address.slice(-4)}`;
}

/** An API refusal (error.status set) or a wallet error, in words. */
function describe(error) {
  if (error && error.status !== undefined) {
    const detail = error.message;
    if (error.status === 410) return t("err_410", { detail });
    if (error.status === 409 && error.code === "already_confirmed") return t("err_already");
    if (error.status === 409) return t("err_409", { detail });
    if ([403, 404, 413, 422].includes(error.status)) return t(`err_${error.status}`, { detail });
    if (error.status === 503) return t("err_503");
    return t("err_other", { detail });
  }
  return explain(error);
}

const form = $("review-form");
if (root && form) startReview();

function startReview() {
  const sign = $("sign");
  const disputeButton = $("dispute");
  const attachments = []; // {file, sha256, state: uploading|done|failed, item}
  let account = null;
  let busy = false;
  let finished = false;

  // ---------------------------------------------------------------- who may sign
  function allowed() {
    return !account || account === client;
  }

  function syncButtons() {
    const off = busy || finished || !allowed();
    sign.disabled = off;
    if (disputeButton) disputeButton.disabled = off;
  }

  function onAccount(current) {
    account = current ? current.toLowerCase() : null;
    const note = $("signer-note");
    if (!account) note.textContent = t("connect_to_sign");
    else if (account === client) note.textContent = t("is_client", { account: short(account) });
    else note.textContent = t("not_client", { account: short(account), client: short(client) });
    note.classList.toggle("form-error", Boolean(account) && account !== client);
    syncButtons();
  }

  connect({ quiet: true }).then((session) => {
    if (!session) return;
    onAccount(session.account);
    session.wallet.on("accountsChanged", (accounts) => onAccount(accounts[0] || null));
  }).catch(() => {});

  // ---------------------------------------------------------------- the review's values
  function rating() {
    const checked = form.querySelector('input[name="rating"]:checked');
    return checked ? Number(checked.value) : null;
  }

  function criteria() {
    const answers = [];
    let missing = null;
    for (let index = 0; index < data.criteria; index += 1) {
      const checked = form.querySelector(`input[name="criterion-${index}"]:checked`);
      const slot = $(`criterion-${index}-error`);
      slot.textContent = "";
      if (!checked) {
        slot.textContent = t("criterion_unanswered");
        missing = missing || form.querySelector(`input[name="criterion-${index}"]`);
        continue;
      }
      const entry = { index, met: checked.value === "met" };
      const note = $(`criterion-${index}-note`).value.trim();
      if (note) entry.note = note;
      answers.push(entry);
    }
    return { answers, missing };
  }

  /** The body typed-data and confirmations share; null (after saying why) when incomplete. */
  function review() {
    $("rating-error").textContent = "";
    $("attachments-error").textContent = "";
    const chosen = rating();
    if (!chosen) {
      $("rating-error").textContent = t("choose_rating");
      form.querySelector('input[name="rating"]').focus();
      return null;
    }
    const body = { rating: chosen, comment: $("comment").value, attachments: [] };
    if (data.criteria) {
      const { answers, missing } = criteria();
      if (missing) {
        $("review-error").textContent = t("answer_criteria");
        missing.focus();
        return null;
      }
      body.criteria = answers;
    }
    if (attachments.some((a) => a.state !== "done")) {
      $("attachments-error").textContent = t("wait_uploads");
      return null;
    }
    body.attachments = attachments.map((a) => a.sha256);
    return body;
  }

  // ---------------------------------------------------------------- comment
  const comment = $("comment");
  const count = () => {
    $("comment-count").textContent = t("comment_count", { n: comment.value.length, max: data.limits.max_comment_chars });
  };
  comment.addEventListener("input", count);
  count();

  // ---------------------------------------------------------------- what each side receives
  let previewTimer = null;
  let previewAsked = 0;

  function showPayout(payout, chosen) {
    if (!payout) return;
    $("payout").textContent = t("payout_text", {
      rating: chosen, provider: units(payout.to_provider), client: units(payout.to_client),
    });
  }

  async function preview() {
    const chosen = rating();
    if (!chosen) return;
    const asked = ++previewAsked;
    $("payout").textContent = t("payout_loading");
    try {
      const answer = await api(`${base}/typed-data`, { rating: chosen });
      if (asked !== previewAsked) return;
      if (answer.payout) showPayout(answer.payout, chosen);
      else $("payout").textContent = "";
    } catch (error) {
      if (asked === previewAsked) $("payout").textContent = t("payout_unavailable", { detail: describe(error) });
    }
  }

  $("rating-group").addEventListener("change", () => {
    $("rating-error").textContent = "";
    clearTimeout(previewTimer);
    previewTimer = setTimeout(preview, 300);
  });

  // ---------------------------------------------------------------- attachments
  const previews = $("previews");

  function attachmentItem(file) {
    const item = document.createElement("li");
    item.className = "preview";
    if (file.type.startsWith("image/")) {
      const img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = t("photo_of", { name: file.name });
      item.append(img);
    } else {
      const icon = document.createElement("span");
      icon.className = "file-icon";
      icon.setAttribute("aria-hidden", "true");
      icon.textContent = "PDF";
      item.append(icon);
    }
    const name = document.createElement("span");
    name.className = "file-name";
    name.textContent = file.name;
    const state = document.createElement("span");
    state.className = "file-state";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = t("remove");
    remove.setAttribute("aria-label", t("remove_file", { name: file.name }));
    item.append(name, state, remove);
    previews.append(item);
    return item;
  }

  function removeAttachment(entry) {
    const at = attachments.indexOf(entry);
    if (at >= 0) attachments.splice(at, 1);
    const img = entry.item.querySelector("img");
    if (img) URL.revokeObjectURL(img.src);
    const next = entry.item.nextElementSibling || entry.item.previousElementSibling;
    entry.item.remove();
    $("attachments-error").textContent = "";
    (next ? next.querySelector("button") : $("photos")).focus();
  }

  async function upload(entry) {
    const state = entry.item.querySelector(".file-state");
    state.textContent = t("uploading");
    try {
      const body = new FormData();
      body.append("file", entry.file, entry.file.name);
      const response = await fetch("/api/attachments", { method: "POST", body });
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) throw Object.assign(new Error(answer.detail || `${response.status}`), { status: response.status });
      if (attachments.some((a) => a !== entry && a.sha256 === answer.sha256)) {
        state.textContent = t("duplicate");
        entry.state = "failed";
        removeAttachment(entry);
        $("attachments-error").textContent = t("duplicate");
        return;
      }
      entry.sha256 = answer.sha256;
      entry.state = "done";
      state.textContent = t("uploaded");
    } catch (error) {
      entry.state = "failed";
      state.textContent = t("upload_failed", { detail: error.message });
      entry.item.classList.add("failed");
    }
  }

  function addFiles(input) {
    $("attachments-error").textContent = "";
    for (const file of input.files) {
      if (attachments.length >= data.limits.max_attachments) {
        $("attachments-error").textContent = t("too_many");
        break;
      }
      const entry = { file, sha256: null, state: "uploading", item: attachmentItem(file) };
      entry.item.querySelector("button").addEventListener("click", () => removeAttachment(entry));
      attachments.push(entry);
      if (file.size > data.limits.max_attachment_bytes) {
        entry.state = "failed";
        entry.item.classList.add("failed");
        entry.item.querySelector(".file-state").textContent = t("too_big");
        continue;
      }
      upload(entry);
    }
    input.value = ""; // the same file may be chosen again after a removal
  }

  for (const id of ["photos", "pdfs"]) $(id).addEventListener("change", (event) => addFiles(event.target));

  // ---------------------------------------------------------------- sign and follow
  function showProgress(current) {
    const list = $("progress");
    list.hidden = false;
    const order = ["pending", "signed", "sent", "mined"];
    const reached = order.indexOf(current);
    for (const item of list.children) {
      const at = order.indexOf(item.dataset.status);
      item.classList.toggle("done", at <= reached);
      if (at === reached) item.setAttribute("aria-current", "step");
      else item.removeAttribute("aria-current");
    }
  }

  async function follow(requestId) {
    const started = Date.now();
    for (;;) {
      const progress = await api(`/api/confirmations/${requestId}`, undefined, "GET");
      if (progress.status === "failed") throw Object.assign(new Error(progress.error || "failed"), { relay: true });
      showProgress(progress.status);
      status(t(`st_${progress.status}`));
      if (progress.status === "mined") return progress;
      if (Date.now() - started > 120000) { status(t("st_slow")); return null; }
      await sleep(700);
    }
  }

  async function settledMilestone() {
    status(t("indexing"));
    for (let attempt = 0; attempt < 120; attempt += 1) {
      const escrow = await api(`/api/escrows/${data.escrow_id}`, undefined, "GET");
      const milestone = escrow.milestones[data.milestone];
      if (milestone && milestone.state === "settled") return milestone;
      await sleep(500);
    }
    return null;
  }

  async function providerCredit() {
    try {
      const answer = await api(`/api/accounts/${data.provider}/credits`, undefined, "GET");
      const entry = answer.credits.find((c) => c.token.toLowerCase() === token.address.toLowerCase());
      return entry ? entry.amount : null;
    } catch {
      return null;
    }
  }

  async function finish(milestone) {
    finished = true;
    for (const el of root.querySelectorAll("input, textarea, button.remove")) el.disabled = true;
    const dispute = root.querySelector(".dispute");
    if (dispute) dispute.hidden = true;
    syncButtons();
    const done = $("done");
    $("done-text").textContent = t("settled", {
      rating: milestone.rating, provider: units(milestone.to_provider), client: units(milestone.to_client),
    });
    const credit = await providerCredit();
    if (credit !== null) $("credit-text").textContent = t("provider_credit", { amount: units(credit) });
    done.hidden = false;
    status(t("st_mined"), "ok");
    done.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy || finished) return;
    $("review-error").textContent = "";
    status("");
    const body = review();
    if (!body) return;
    busy = true;
    syncButtons();
    try {
      const session = await connect();
      if (!session) { $("review-error").textContent = t("connect_to_sign"); return; }
      onAccount(session.account);
      if (!allowed()) return;
      if (!(await checkChain())) { $("review-error").textContent = t("wrong_chain"); return; }
      status(t("preparing"));
      const prepared = await api(`${base}/typed-data`, body);
      showPayout(prepared.payout, body.rating);
      status(t("signing"));
      const signature = await session.wallet.signTypedData(session.account, prepared.typed_data);
      status(t("submitting"));
      const queued = await api(`${base}/confirmations`, {
        ...body, deadline: String(prepared.typed_data.message.deadline), signature,
      });
      showProgress(queued.status);
      const mined = await follow(queued.id);
      if (!mined) return;
      const milestone = await settledMilestone();
      if (milestone) await finish(milestone);
    } catch (error) {
      status("");
      $("review-error").textContent = error && error.relay ? t("st_failed", { error: error.message }) : describe(error);
    } finally {
      busy = false;
      syncButtons();
    }
  });

  // ---------------------------------------------------------------- dispute instead
  /** The reason and the uploaded files; null (after saying why) when there is neither, or an
   *  upload is still running or failed. */
  function disputeBody() {
    const reason = $("dispute-reason").value;
    if (attachments.some((a) => a.state !== "done")) {
      $("dispute-error").textContent = t("wait_uploads");
      return null;
    }
    if (!reason.trim() && attachments.length === 0) {
      $("dispute-error").textContent = t("reason_needed");
      $("dispute-reason").focus();
      return null;
    }
    return { reason, attachments: attachments.map((a) => a.sha256) };
  }

  if (disputeButton) {
    disputeButton.addEventListener("click", async () => {
      $("review-error").textContent = "";
      $("dispute-error").textContent = "";
      const body = disputeBody();
      if (!body) return;
      const session = await connect();
      if (session) onAccount(session.account);
      if (!session || !allowed()) return;
      busy = true;
      syncButtons();
      // the reason is stored first; its answer is the dispute carrying the reason's hash
      const receipt = await runTx(async () => {
        try {
          return (await api(`${base}/dispute`, body)).tx;
        } catch (error) {
          $("dispute-error").textContent = describe(error);
          throw error;
        }
      });
      busy = false;
      if (receipt) {
        finished = true;
        $("dispute-reason").disabled = true;
        status(t("disputed"), "ok");
      }
      syncButtons();
    });
  }

  syncButtons();
  root.dataset.ready = "1";
}
