"""The page tests' browser wallet: an EIP-1193 provider in the page (wallet.js), announced through
EIP-6963 and set as `window.ethereum` when no other wallet took it, whose every request is answered
here in Python by a `TestWallet` holding a Hardhat dev key.

It behaves as MetaMask does where a page can tell: addresses come back lowercase, nothing is
exposed before `eth_requestAccounts` (or `connected=True`), signing and sending need the connected
account, `eth_signTypedData_v4` takes the typed data as a JSON string and refuses a domain chain id
other than the active one, a refusal is a `ProviderRpcError` with EIP-1193's code (4001 user
rejected, 4100 unauthorized, 4200 unsupported, 4901 wrong chain) or MetaMask's 4902 for a chain it
does not know. Transactions are signed here with the account's key and sent raw to the node
(Hardhat automines them); every other read (`eth_call`, `eth_getTransactionReceipt`, ...) is
forwarded to the node verbatim.

The binding runs while the test's thread is inside a Playwright call (a click, an `expect`, a
`wait_for_*`, `page.wait_for_timeout`): a page waiting on its wallet makes no progress while the
test sleeps in `time.sleep`. `tests.web.support.wait_until` polls without that pitfall.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from playwright.sync_api import BrowserContext
from playwright.sync_api import Error as PlaywrightError
from web3 import Web3

WALLET_JS = (Path(__file__).parent / "wallet.js").read_text().strip().rstrip(";")
BINDING = "__testWalletRequest"
GLOBAL = "__testWallet"
NAME = "Test Wallet"
RDNS = "org.quality-escrow.testwallet"
MAINNET = 1

USER_REJECTED = 4001
UNAUTHORIZED = 4100
UNSUPPORTED_METHOD = 4200
CHAIN_DISCONNECTED = 4901
UNRECOGNIZED_CHAIN = 4902
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

#: what a page may not reach through a wallet: the node's test controls and the signing methods
#: wallets do not offer
BLOCKED_PREFIXES = ("hardhat_", "evm_", "debug_", "anvil_", "personal_", "admin_", "miner_")
BLOCKED_METHODS = frozenset({
    "eth_sign", "eth_signTransaction", "eth_signTypedData", "eth_signTypedData_v1",
    "eth_signTypedData_v3",
})


def icon(colour: str = "#1d4ed8", letter: str = "T") -> str:
    """A 96x96 square SVG as an RFC 2397 data URI, as EIP-6963 asks of `info.icon`."""
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96">'
        f'<rect width="96" height="96" rx="16" fill="{colour}"/>'
        '<text x="48" y="64" font-size="48" text-anchor="middle" fill="#fff" '
        f'font-family="sans-serif">{letter}</text></svg>'
    )
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


class WalletError(Exception):
    """An EIP-1193 error the page receives as a `ProviderRpcError` (`code`, `message`, `data`)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def reply(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


@dataclass
class WalletRequest:
    """One request a page made, and how the wallet answered it."""

    method: str
    params: Any
    result: Any = None
    error: dict[str, Any] | None = None


class NodeRpc:
    """Raw JSON-RPC to the node: answers pass through untouched, as a wallet's RPC would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx.Client(timeout=30)
        self._ids = itertools.count(1)

    def request(self, method: str, params: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        reply = self._http.post(self.url, json=body).json()
        if "error" in reply:
            error = reply["error"]
            raise WalletError(int(error.get("code", INTERNAL_ERROR)), str(error.get("message")),
                              error.get("data"))
        return reply["result"]

    def close(self) -> None:
        self._http.close()


@dataclass(eq=False)
class TestWallet:
    """The wallet behind the page's provider. Change it from the test at any time:

    - `reject_next_connection` / `reject_next_signature` / `reject_next_transaction` /
      `reject_next_chain_request`: the next such request is refused with 4001 "User rejected the
      request." (each flag resets once used);
    - `switch_account(account)`, `switch_chain(chain_id)`, `disconnect()`: what a user does in
      the wallet's own window; they emit `accountsChanged` / `chainChanged` in every open page;
    - `forget_chain(chain_id)`: `wallet_switchEthereumChain` to it answers 4902 until the page
      adds it with `wallet_addEthereumChain`.

    `requests` logs every request with its answer; `signatures` and `transactions` what the
    wallet signed and sent; `internal_errors` the wallet's own failures (a bug in this file or a
    node away), which the `wallet_browser` fixture reports."""

    __test__ = False  # not a pytest test class

    node: NodeRpc
    account: LocalAccount
    #: the chain the wallet says it is on (`eth_chainId`); default the node's
    chain_id: int = 0
    connected: bool = False
    name: str = NAME
    rdns: str = RDNS
    icon: str = field(default_factory=icon)
    #: chains `wallet_switchEthereumChain` accepts (default: Ethereum mainnet and the node's)
    known_chains: set[int] = field(default_factory=set)
    reject_next_connection: bool = False
    reject_next_signature: bool = False
    reject_next_transaction: bool = False
    reject_next_chain_request: bool = False
    requests: list[WalletRequest] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)
    transactions: list[str] = field(default_factory=list)
    added_chains: list[dict[str, Any]] = field(default_factory=list)
    internal_errors: list[str] = field(default_factory=list)
    contexts: list[BrowserContext] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.node_chain_id = int(self.node.request("eth_chainId", []), 16)
        self.chain_id = self.chain_id or self.node_chain_id
        self.known_chains |= {MAINNET, self.node_chain_id, self.chain_id}
        self._events: list[list[Any]] = []

    @property
    def address(self) -> str:
        """The account as MetaMask reports it: lowercase hex."""
        return self.account.address.lower()

    # ------------------------------------------------------------------ install and emit

    def install(self, context: BrowserContext, *, window_ethereum: str = "ifUnset") -> None:
        """Answers `context`'s pages (call before opening them). `window_ethereum`: "ifUnset"
        (set `window.ethereum` unless an earlier wallet did), "always" or "never"."""
        context.expose_binding(BINDING, self._binding)
        context.add_init_script(script=self._script(GLOBAL, BINDING, window_ethereum))
        self.contexts.append(context)

    def _script(self, name: str, binding: str | None, window_ethereum: str) -> str:
        config = {
            "global": name, "binding": binding, "name": self.name, "rdns": self.rdns,
            "icon": self.icon, "windowEthereum": window_ethereum,
        }
        return f"({WALLET_JS})({json.dumps(config)});"

    def emit(self, event: str, payload: Any) -> None:
        """Emits a provider event in every frame of every open page of the wallet's contexts."""
        for context in self.contexts:
            for page in context.pages:
                for frame in page.frames:
                    with contextlib.suppress(PlaywrightError):  # navigated or closed meanwhile
                        frame.evaluate(
                            "([g, e, p]) => window[g] && window[g].emit(e, p)",
                            [GLOBAL, event, payload],
                        )

    def switch_account(self, account: LocalAccount) -> None:
        self.account = account
        if self.connected:
            self.emit("accountsChanged", [self.address])

    def switch_chain(self, chain_id: int) -> None:
        self.known_chains.add(chain_id)
        if chain_id != self.chain_id:
            self.chain_id = chain_id
            self.emit("chainChanged", hex(chain_id))

    def forget_chain(self, chain_id: int) -> None:
        self.known_chains.discard(chain_id)

    def disconnect(self) -> None:
        """The user disconnects the site in the wallet."""
        if self.connected:
            self.connected = False
            self.emit("accountsChanged", [])

    # ------------------------------------------------------------------ requests

    def _binding(self, _source: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        method, params = str(payload.get("method")), payload.get("params")
        logged = WalletRequest(method, params)
        self.requests.append(logged)
        self._events = []
        try:
            logged.result = self.handle(method, params)
            reply: dict[str, Any] = {"result": logged.result}
        except WalletError as exc:
            logged.error = exc.reply()
            reply = {"error": logged.error}
        except Exception as exc:  # the wallet's own bug: the page sees -32603, the test fails
            self.internal_errors.append(f"{method}: {exc!r}")
            logged.error = {"code": INTERNAL_ERROR, "message": f"Test wallet failed: {exc!r}"}
            reply = {"error": logged.error}
        reply["events"], self._events = self._events, []
        return reply

    def handle(self, method: str, params: Any) -> Any:
        """The answer to one request (raises `WalletError` for a refusal)."""
        args: list[Any] = params if isinstance(params, list) else [params]
        if method in ("eth_requestAccounts", "wallet_requestPermissions"):
            self._connect()
            return self._permissions() if method == "wallet_requestPermissions" else [self.address]
        if method == "eth_accounts":
            return [self.address] if self.connected else []
        if method == "wallet_getPermissions":
            return self._permissions() if self.connected else []
        if method == "wallet_revokePermissions":
            self.connected = False
            self._events.append(["accountsChanged", []])
            return None
        if method == "eth_chainId":
            return hex(self.chain_id)
        if method == "net_version":
            return str(self.chain_id)
        if method == "wallet_switchEthereumChain":
            return self._switch(_chain_param(args))
        if method == "wallet_addEthereumChain":
            return self._add_chain(args)
        if method == "eth_signTypedData_v4":
            return self._sign_typed_data(args)
        if method == "personal_sign":
            return self._personal_sign(args)
        if method == "eth_sendTransaction":
            return self._send_transaction(args)
        if (
            method in BLOCKED_METHODS
            or method.startswith(BLOCKED_PREFIXES)
            or method.startswith("wallet_")
        ):
            raise WalletError(UNSUPPORTED_METHOD, f"The method {method!r} is not supported.")
        return self.node.request(method, params if params is not None else [])

    def _connect(self) -> None:
        if self.reject_next_connection:
            self.reject_next_connection = False
            raise WalletError(USER_REJECTED, "User rejected the request.")
        if not self.connected:
            self.connected = True
            self._events.append(["accountsChanged", [self.address]])

    def _permissions(self) -> list[dict[str, Any]]:
        return [{
            "parentCapability": "eth_accounts",
            "caveats": [{"type": "restrictReturnedAccounts", "value": [self.address]}],
        }]

    def _require(self, address: Any) -> None:
        """Signing needs the connected account (MetaMask: 4100 otherwise)."""
        if not self.connected:
            raise WalletError(UNAUTHORIZED, "The requested account and/or method has not been "
                              "authorized by the user.")
        if address is not None and str(address).lower() != self.address:
            raise WalletError(UNAUTHORIZED, f"The requested account {address} is not the "
                              f"connected account {self.address}.")

    def _user_decides(self, flag: str) -> None:
        if getattr(self, flag):
            setattr(self, flag, False)
            raise WalletError(USER_REJECTED, "User rejected the request.")

    def _switch(self, chain_id: int) -> None:
        self._user_decides("reject_next_chain_request")
        if chain_id not in self.known_chains:
            raise WalletError(
                UNRECOGNIZED_CHAIN,
                f'Unrecognized chain ID "{hex(chain_id)}". Try adding the chain using '
                "wallet_addEthereumChain first.",
            )
        if chain_id != self.chain_id:
            self.chain_id = chain_id
            self._events.append(["chainChanged", hex(chain_id)])

    def _add_chain(self, args: list[Any]) -> None:
        chain_id = _chain_param(args)
        spec = args[0]
        if not spec.get("rpcUrls") or not spec.get("chainName"):
            raise WalletError(INVALID_PARAMS, "wallet_addEthereumChain needs chainName, rpcUrls.")
        self._user_decides("reject_next_chain_request")
        self.added_chains.append(dict(spec))
        self.known_chains.add(chain_id)
        self._switch(chain_id)  # MetaMask offers to switch at once; the test user agrees

    def _sign_typed_data(self, args: list[Any]) -> str:
        if len(args) != 2:
            raise WalletError(INVALID_PARAMS, "eth_signTypedData_v4 expects [address, typedData].")
        address, raw = args
        self._require(address)
        try:
            typed = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise WalletError(INVALID_PARAMS, f"The typed data is not JSON: {exc}") from exc
        if not isinstance(typed, dict) or not {"types", "domain", "primaryType", "message"} <= set(
            typed
        ):
            raise WalletError(INVALID_PARAMS, "The typed data needs types, domain, primaryType "
                              "and message.")
        domain_chain = typed["domain"].get("chainId")
        if domain_chain is not None and _int(domain_chain) != self.chain_id:
            raise WalletError(INVALID_PARAMS, f'Provided chainId "{_int(domain_chain)}" must match '
                              f'the active chainId "{self.chain_id}"')
        self._user_decides("reject_next_signature")
        signed = self.account.sign_typed_data(full_message=typed)
        signature = "0x" + bytes(signed.signature).hex()
        self.signatures.append(signature)
        return signature

    def _personal_sign(self, args: list[Any]) -> str:
        if len(args) < 2:
            raise WalletError(INVALID_PARAMS, "personal_sign expects [message, address].")
        message, address = args[0], args[1]
        self._require(address)
        self._user_decides("reject_next_signature")
        data = _hex_or_text(str(message))
        signature = "0x" + bytes(self.account.sign_message(encode_defunct(data)).signature).hex()
        self.signatures.append(signature)
        return signature

    def _send_transaction(self, args: list[Any]) -> str:
        if not args or not isinstance(args[0], dict):
            raise WalletError(INVALID_PARAMS, "eth_sendTransaction expects [transaction].")
        tx: dict[str, Any] = args[0]
        self._require(tx.get("from"))
        if self.chain_id != self.node_chain_id:
            raise WalletError(
                CHAIN_DISCONNECTED,
                f"The test wallet is on chain {hex(self.chain_id)}, not the node's "
                f"{hex(self.node_chain_id)}: the page sent a transaction without switching chains.",
            )
        self._user_decides("reject_next_transaction")
        sender = self.account.address
        call: dict[str, Any] = {"from": sender, "value": hex(_int(tx.get("value", 0)))}
        data = tx.get("data") or tx.get("input")
        if data:
            call["data"] = data
        if tx.get("to"):
            call["to"] = tx["to"]
        gas = tx.get("gas") or tx.get("gasLimit")
        if gas is None:
            estimate = _int(self.node.request("eth_estimateGas", [call]))
            gas = estimate + estimate // 5
        unsigned: dict[str, Any] = {
            "chainId": self.node_chain_id,
            "nonce": _int(tx.get("nonce") or self.node.request(
                "eth_getTransactionCount", [sender, "pending"]
            )),
            "gas": _int(gas),
            "value": _int(call["value"]),
            "data": call.get("data", "0x"),
        }
        if "to" in call:
            unsigned["to"] = _checksum(call["to"])
        if tx.get("gasPrice") and not tx.get("maxFeePerGas"):
            unsigned["gasPrice"] = _int(tx["gasPrice"])
        else:
            tip = _int(tx.get("maxPriorityFeePerGas")
                       or self.node.request("eth_maxPriorityFeePerGas", []))
            base = _int(self.node.request("eth_getBlockByNumber", ["latest", False])
                        ["baseFeePerGas"])
            unsigned["maxPriorityFeePerGas"] = tip
            unsigned["maxFeePerGas"] = _int(tx.get("maxFeePerGas") or 2 * base + tip)
        raw = self.account.sign_transaction(unsigned).raw_transaction
        tx_hash = str(self.node.request("eth_sendRawTransaction", ["0x" + bytes(raw).hex()]))
        self.transactions.append(tx_hash)
        return tx_hash


def add_decoy_wallet(
    context: BrowserContext,
    *,
    name: str = "Other Wallet",
    rdns: str = "com.example.otherwallet",
    window_ethereum: str = "never",
    index: int = 1,
) -> None:
    """A second extension in `context`: announced through EIP-6963 beside the test wallet, it
    refuses every request with 4001. With `window_ethereum="always"` it takes `window.ethereum`
    as pushy extensions do, so a page that ignores EIP-6963 talks to the wrong wallet."""
    config = {
        "global": f"{GLOBAL}Decoy{index}", "binding": None, "name": name, "rdns": rdns,
        "icon": icon("#b45309", name[:1].upper() or "O"), "windowEthereum": window_ethereum,
    }
    context.add_init_script(script=f"({WALLET_JS})({json.dumps(config)});")


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    return int(text, 16) if text.lower().startswith("0x") else int(text)


def _chain_param(args: Sequence[Any]) -> int:
    if not args or not isinstance(args[0], dict) or "chainId" not in args[0]:
        raise WalletError(INVALID_PARAMS, "Expected [{chainId: '0x...'}].")
    chain = args[0]["chainId"]
    if not isinstance(chain, str) or not chain.startswith("0x"):
        raise WalletError(INVALID_PARAMS, f"chainId must be a 0x-prefixed hex string: {chain!r}")
    return int(chain, 16)


def _hex_or_text(message: str) -> bytes:
    """personal_sign's message: hex bytes when it is 0x hex, else the text (as MetaMask)."""
    if message.startswith("0x"):
        try:
            return bytes.fromhex(message[2:])
        except ValueError:
            pass
    return message.encode()


def _checksum(address: str) -> str:
    return str(Web3.to_checksum_address(address))
