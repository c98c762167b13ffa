// A newcomer's own wallet: ethers v6 (pinned in hardhat_local/) drives one escrow through the
// running service's REST API, as a dapp would. It knows only what `escrow up --json` printed: the
// API URL, the RPC URL and the dev accounts' private keys. Every transaction is one the API handed
// out ({to, data, value}), signed and sent by ethers; the confirmation is EIP-712 typed data the
// API built, signed by ethers and posted back for the service's relayer.
//
// stdin:  {"api": "http://127.0.0.1:PORT", "rpc": "http://127.0.0.1:PORT",
//          "client_key": "0x..", "provider_key": "0x..", "arbiter": "0x..", "oracle": "0x.."}
// stdout: {"escrow_id": N, "txs": {...}, "confirmation": {...}, "escrow": {...}}
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const hardhatRequire = createRequire(
  path.join(__dirname, "..", "..", "hardhat_local", "package.json"),
);
const { ethers } = hardhatRequire("ethers");

async function api(base, method, route, body) {
  const res = await fetch(base + route, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route}: HTTP ${res.status} ${text}`);
  return JSON.parse(text);
}

async function send(wallet, tx) {
  // the API answers value as a decimal string; ethers takes a bigint
  const sent = await wallet.sendTransaction({ to: tx.to, data: tx.data, value: BigInt(tx.value) });
  const receipt = await sent.wait();
  if (receipt.status !== 1) throw new Error(`transaction ${sent.hash} reverted`);
  return sent.hash;
}

async function until(what, fn, timeoutMs = 60000) {
  const start = Date.now();
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function main() {
  const input = JSON.parse(fs.readFileSync(0, "utf8"));
  const provider = new ethers.JsonRpcProvider(input.rpc);
  const client = new ethers.NonceManager(new ethers.Wallet(input.client_key, provider));
  const worker = new ethers.NonceManager(new ethers.Wallet(input.provider_key, provider));
  const clientAddress = await client.getAddress();
  const providerAddress = await worker.getAddress();
  const now = (await provider.getBlock("latest")).timestamp;
  const txs = {};

  const prepared = await api(input.api, "POST", "/api/escrows/prepare", {
    client: clientAddress,
    provider: providerAddress,
    oracle: input.oracle,
    arbiter: input.arbiter,
    // amounts as strings: a JSON number above 2^53 would already be rounded by JavaScript
    milestone_amounts: [ethers.parseEther("1.5").toString(), ethers.parseEther("0.5").toString()],
    terms_document: {
      version: 1,
      title: "Newcomer: website redesign",
      period_seconds: 86400,
      kpis: [{ id: "uptime_pct", aggregate: "mean", op: ">=", threshold: 99.5 }],
      acceptance_criteria: ["Pages load on a phone", "Content migrated"],
    },
    rules: {
      rating_payout_bps: [0, 2500, 5000, 7500, 10000],
      breach_refund_bps: 500,
      streak_refund_bps: 1000,
      incident_refund_bps: 2000,
      max_refund_bps: 3000,
      review_period: 3 * 86400,
      challenge_period: 2 * 86400,
      arbitration_period: 7 * 86400,
      delivery_deadline: now + 30 * 86400,
    },
  });
  txs.create = await send(client, prepared.tx);
  const created = await until("the creation's receipt", async () => {
    const t = await api(input.api, "GET", `/api/tx/${txs.create}`);
    return t.status === "mined" ? t : null;
  });
  const escrowId = created.escrow_ids[0];
  await until("the index to hold the escrow", async () => {
    const res = await fetch(`${input.api}/api/escrows/${escrowId}`);
    return res.ok;
  });

  txs.accept = await send(worker, await api(input.api, "POST", `/api/escrows/${escrowId}/tx/accept`, {}));
  const delivery = await api(input.api, "POST", `/api/escrows/${escrowId}/milestones/0/delivery`, {
    note: "Redesign live on staging",
  });
  txs.deliver = await send(worker, delivery.tx);
  await until("the delivery to be indexed", async () => {
    const e = await api(input.api, "GET", `/api/escrows/${escrowId}`);
    return e.milestones[0].state === "Delivered" || e.milestones[0].delivered_at ? e : null;
  });

  const review = {
    rating: 4,
    comment: "Good work; one page was slow on a phone",
    criteria: [
      { index: 0, met: false, note: "the pricing page takes 6 s" },
      { index: 1, met: true },
    ],
  };
  const typed = await api(
    input.api, "POST", `/api/escrows/${escrowId}/milestones/0/typed-data`, review,
  );
  const td = typed.typed_data;
  const { EIP712Domain, ...types } = td.types; // eslint-disable-line no-unused-vars
  const signer = new ethers.Wallet(input.client_key);
  const signature = await signer.signTypedData(td.domain, types, td.message);
  const queued = await api(
    input.api, "POST", `/api/escrows/${escrowId}/milestones/0/confirmations`,
    { ...review, deadline: td.message.deadline.toString(), signature },
  );
  const escrow = await until("the relayed confirmation to settle", async () => {
    const e = await api(input.api, "GET", `/api/escrows/${escrowId}`);
    return e.milestones[0].settled_at ? e : null;
  });

  process.stdout.write(
    JSON.stringify({
      escrow_id: escrowId,
      txs,
      confirmation: queued,
      payout: typed.payout,
      escrow,
    }),
  );
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
