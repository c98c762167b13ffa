// The browser wallet, through EIP-1193 only (no Ethereum library): found by EIP-6963
// announcements (several extensions at once), window.ethereum as the fallback.

const ANNOUNCE = "eip6963:announceProvider";
const REQUEST = "eip6963:requestProvider";

/** Every wallet that announces itself within `waitMs`: [{info: {uuid, name, icon, rdns}, provider}]. */
export function discoverWallets(waitMs = 250) {
  return new Promise((resolve) => {
    const found = new Map();
    const onAnnounce = (event) => {
      const detail = event.detail || {};
      if (detail.provider && detail.info && !found.has(detail.info.uuid)) {
        found.set(detail.info.uuid, { info: detail.info, provider: detail.provider });
      }
    };
    window.addEventListener(ANNOUNCE, onAnnounce);
    window.dispatchEvent(new Event(REQUEST));
    setTimeout(() => {
      window.removeEventListener(ANNOUNCE, onAnnounce);
      const wallets = [...found.values()];
      if (wallets.length === 0 && window.ethereum) {
        wallets.push({ info: { uuid: "window.ethereum", name: "Browser wallet", icon: "", rdns: "" },
                       provider: window.ethereum });
      }
      resolve(wallets);
    }, waitMs);
  });
}

/** A wallet error as {kind, reason}: kind is "rejected", "unknown_chain", "insufficient_funds",
 *  "reverted" (reason: the contract's custom error in words) or "failed". */
export function classifyError(error, reverts = {}) {
  const code = error && (error.code ?? (error.data && error.data.code));
  const message = String((error && (error.message || error.reason)) || error || "");
  if (code === 4001 || /user (rejected|denied)/i.test(message)) return { kind: "rejected", reason: message };
  if (code === 4902) return { kind: "unknown_chain", reason: message };
  if (/insufficient funds/i.test(message)) return { kind: "insufficient_funds", reason: message };
  const data = findRevertData(error);
  if (data) {
    const name = reverts[data.slice(0, 10).toLowerCase()];
    if (name) return { kind: "reverted", reason: words(name) };
  }
  const custom = message.match(/reverted with custom error '([A-Za-z0-9_]+)\(/);
  if (custom) return { kind: "reverted", reason: words(custom[1]) };
  if (/revert/i.test(message)) return { kind: "reverted", reason: message };
  return { kind: "failed", reason: message };
}

function findRevertData(error) {
  for (let e = error, depth = 0; e && depth < 5; e = e.data || e.error || e.cause, depth += 1) {
    if (typeof e === "string" && /^0x[0-9a-fA-F]{8}/.test(e)) return e;
    if (e && typeof e.data === "string" && /^0x[0-9a-fA-F]{8}/.test(e.data)) return e.data;
  }
  return null;
}

/** "EscrowWindowClosed" -> "window closed". */
export function words(name) {
  return name.replace(/^Escrow/, "").replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase();
}

/** One connected EIP-1193 provider. */
export class Wallet {
  constructor(provider, info) {
    this.provider = provider;
    this.info = info;
  }
  request(method, params = []) {
    return this.provider.request({ method, params });
  }
  async connect() {
    const accounts = await this.request("eth_requestAccounts");
    return accounts[0];
  }
  async accounts() {
    return this.request("eth_accounts");
  }
  async chainId() {
    return parseInt(await this.request("eth_chainId"), 16);
  }
  /** Asks the wallet to switch to `config.chain_id`, adding the chain first when it does not know it. */
  async switchChain(config) {
    const chainId = "0x" + Number(config.chain_id).toString(16);
    try {
      await this.request("wallet_switchEthereumChain", [{ chainId }]);
    } catch (error) {
      if (error && error.code === 4902) {
        await this.request("wallet_addEthereumChain", [{
          chainId, chainName: config.chain_name || `Quality Escrow ${config.chain_id}`,
          rpcUrls: [config.rpc_url], nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
        }]);
      } else {
        throw error;
      }
    }
  }
  signTypedData(account, typedData) {
    return this.request("eth_signTypedData_v4", [account, JSON.stringify(typedData)]);
  }
  /** Sends a ready `{to, data, value}` from `account`; returns the transaction hash. */
  sendTransaction(account, tx) {
    const sent = { from: account, to: tx.to, data: tx.data };
    if (tx.value && tx.value !== "0x0" && tx.value !== "0") sent.value = tx.value;
    return this.request("eth_sendTransaction", [sent]);
  }
  /** Polls the receipt until the transaction is mined (or `timeoutMs` passes). */
  async waitForReceipt(hash, timeoutMs = 120000) {
    const started = Date.now();
    for (;;) {
      const receipt = await this.request("eth_getTransactionReceipt", [hash]);
      if (receipt) return receipt;
      if (Date.now() - started > timeoutMs) throw new Error(`no receipt for ${hash} yet`);
      await new Promise((r) => setTimeout(r, 700));
    }
  }
  on(event, handler) {
    if (typeof this.provider.on === "function") this.provider.on(event, handler);
  }
}
