// The arbiter's desk: without `?account=` it connects the wallet and comes back with it (like the
// dashboard); with it, the decisions (a split of a disputed milestone, uphold or reject of a
// challenged breach report) show once the connected account is that arbiter, and each runs
// through the wallet: POST /api/escrows/{id}/tx/resolve-dispute | resolve-breach, then reload.
import { api, connect, runTx, status } from "/static/js/app.js";

const page = document.querySelector("[data-page]");
const chip = document.getElementById("qe-account");
const fromChip = () => (chip.hidden ? null : chip.title || null);

function goToDesk(account) {
  if (account) window.location.assign(`/arbiter?account=${account}`);
}

if (page.dataset.page === "arbiter-connect") {
  // the header's button and this page's own both connect; the chip appearing means connected
  new MutationObserver(() => goToDesk(fromChip())).observe(chip, {
    attributes: true, attributeFilter: ["hidden", "title"],
  });
  document.getElementById("arbiter-connect").addEventListener("click", () => {
    connect().then((session) => goToDesk(session && session.account)).catch(() => {});
  });
  goToDesk(fromChip());
} else {
  desk();
}

function desk() {
  const messages = JSON.parse(document.getElementById("qe-page-messages").textContent);
  const t = (key, values = {}) => {
    let text = messages[key] || key;
    for (const [name, value] of Object.entries(values)) text = text.replace(`%(${name})s`, value);
    return text;
  };
  const arbiter = page.dataset.account.toLowerCase();
  const lang = document.documentElement.lang || "en";

  function showFor(account) {
    const mine = Boolean(account) && account.toLowerCase() === arbiter;
    for (const el of page.querySelectorAll("[data-decide]")) el.hidden = !mine;
    const note = document.getElementById("arbiter-wrong");
    note.textContent = t("connect_to_decide");
    note.hidden = mine || !page.querySelector("[data-decide]");
  }

  async function waitIndexed(escrowId, blockNumber) {
    status(t("indexing"));
    for (let i = 0; i < 60; i += 1) {
      try {
        const response = await fetch(`/api/escrows/${escrowId}`, { cache: "no-store" });
        if (response.ok && (await response.json()).updated_block >= Number(blockNumber)) return;
      } catch (error) { /* the next try tells */ }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  function decide(escrowId, action, args, errorBox) {
    if (errorBox) errorBox.hidden = true;
    return runTx(async () => {
      try {
        return await api(`/api/escrows/${escrowId}/tx/${action}`, args);
      } catch (error) {
        if (errorBox) { errorBox.textContent = error.message; errorBox.hidden = false; }
        throw error;
      }
    }, {
      done: async (receipt) => {
        await waitIndexed(escrowId, receipt.blockNumber);
        window.location.reload();
      },
    });
  }

  /** "12.5" -> 1250 basis points; null when not a share from 0 to 100 with 2 decimals at most. */
  function percentToBps(text) {
    const match = /^\s*(\d{1,3})(?:[.,](\d{1,2}))?\s*$/.exec(text);
    if (!match) return null;
    const bps = Number(match[1]) * 100 + Number((match[2] || "").padEnd(2, "0"));
    return bps <= 10000 ? bps : null;
  }

  /** The base units of `amount * bps / 10000` written in token units (BigInt: no rounding). */
  function units(amount, decimals, symbol) {
    const scale = 10n ** BigInt(decimals);
    const whole = amount / scale;
    const fraction = (amount % scale).toString().padStart(decimals, "0").replace(/0+$/, "");
    const number = new Intl.NumberFormat(lang).format(whole) + (fraction
      ? new Intl.NumberFormat(lang, { minimumFractionDigits: 1 }).format(0.5).charAt(1) + fraction
      : "");
    return `${number} ${symbol}`.trim();
  }

  for (const form of page.querySelectorAll("form[data-form='resolve-dispute']")) {
    const input = form.elements.provider_percent;
    const split = form.querySelector("[data-split]");
    const box = form.querySelector(".form-error");
    const amount = BigInt(form.dataset.amount);
    const decimals = Number(form.dataset.decimals);
    const symbol = form.dataset.symbol;
    input.addEventListener("input", () => {
      const bps = percentToBps(input.value);
      if (bps === null) return;
      const provider = (amount * BigInt(bps)) / 10000n;
      split.textContent = t("split", {
        provider: units(provider, decimals, symbol), client: units(amount - provider, decimals, symbol),
      });
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const bps = percentToBps(input.value);
      if (bps === null) {
        box.textContent = t("percent_invalid");
        box.hidden = false;
        input.focus();
        return;
      }
      const submit = form.querySelector("button[type='submit']");
      submit.disabled = true;
      try {
        await decide(form.dataset.escrow, "resolve-dispute",
          { milestone: Number(form.dataset.milestone), providerBps: bps }, box);
      } finally {
        submit.disabled = false;
      }
    });
  }

  for (const button of page.querySelectorAll("button[data-upheld]")) {
    button.addEventListener("click", async () => {
      const group = button.closest("[data-decide]");
      for (const b of group.querySelectorAll("button")) b.disabled = true;
      try {
        await decide(button.dataset.escrow, "resolve-breach", {
          breachId: Number(button.dataset.breach), upheld: button.dataset.upheld === "true",
        });
      } finally {
        for (const b of group.querySelectorAll("button")) b.disabled = false;
      }
    });
  }

  new MutationObserver(() => showFor(fromChip())).observe(chip, {
    attributes: true, attributeFilter: ["hidden", "title"],
  });
  showFor(null);
  connect({ quiet: true }).then((session) => showFor(session ? session.account : fromChip()))
    .catch(() => {});
}
