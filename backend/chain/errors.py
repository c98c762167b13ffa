"""Errors from the chain: contract reverts decoded from the ABI, and transport failures.

Every custom error of the contract has its own subclass of `ContractRevert` (generated into
`revert_types.py` from the compiled ABI by `escrow compile`), carrying the error's fields as
attributes named as in Solidity.

"The node is unavailable" has one test, `is_transport_failure`, and one error, `NodeUnavailable`
(a 503 with `Retry-After`); `from_node` runs a read and turns a transport failure into it. Every
call site that talks to the node on behalf of a request goes through `from_node`. A node that
rate-limits us (`is_rate_limited`: HTTP 429, or a JSON-RPC rate-limit error) is unavailable for
now too; the provider of `backend.chain.connect` backs off and retries it first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import requests
from web3.exceptions import (
    BlockNotFound,
    PersistentConnectionError,
    ProviderConnectionError,
    RequestTimedOut,
    Web3RPCError,
)

from backend.errors import QualityEscrowError, UnavailableError

T = TypeVar("T")


class ChainError(QualityEscrowError):
    """What the chain answered that the caller did not want: a revert, an unknown escrow, a
    missing deployment, an event that does not decode."""

    code = "chain"


class NodeUnavailable(UnavailableError, ChainError):
    """503 with `Retry-After`: the Ethereum node did not answer (refused or dropped connection,
    timeout, an HTTP error status from the node or a proxy in front of it).

    `what` names the read that failed ("latest block", "credits"); the message reads
    ``node unavailable: <what>: <reason>``."""

    code = "unavailable"

    def __init__(self, what: str, reason: str) -> None:
        self.read = what
        UnavailableError.__init__(self, "node", f"{what}: {reason}")


class DeploymentGone(UnavailableError, ChainError):
    """503: the chain no longer has the deployment this process serves (a local chain was reset
    under it); a restart archives the old deployment's data and serves the new one."""

    code = "deployment_gone"
    retry_after = 30

    def __init__(self, reason: str) -> None:
        UnavailableError.__init__(self, "deployment", reason)


def is_transport_failure(exc: BaseException) -> bool:
    """Whether `exc` means the node did not answer, as opposed to an answer the caller did not
    like. The one test for "the node is unavailable" in the project.

    True for: `NodeUnavailable` itself; `OSError` and its subclasses, which include the builtin
    `ConnectionError` and `TimeoutError` and every `requests` error (a refused connection, a
    timeout, an HTTP 5xx/429 status raised by the provider, a reply that is not JSON);
    web3.py's `ProviderConnectionError`, `RequestTimedOut` and `PersistentConnectionError`.

    Also true for a rate limit (`is_rate_limited`), including a JSON-RPC rate-limit error object:
    the node did not serve us now, and asking again later is the cure.

    False for: a revert (`ContractLogicError` and kin), a JSON-RPC error object
    (`Web3RPCError`: the node answered), a value that does not decode, and every other error of
    this project (a `QualityEscrowError` is never a transport failure unless it is a
    `NodeUnavailable`).
    """
    if isinstance(exc, NodeUnavailable) or is_rate_limited(exc):
        return True
    if isinstance(exc, QualityEscrowError):
        return False
    return isinstance(
        exc, OSError | ProviderConnectionError | RequestTimedOut | PersistentConnectionError
    )


#: JSON-RPC error codes that mean "too many requests" whatever the message: 429 in the body
#: (QuickNode, Alchemy) and -32029 / -32090 (gateways' "request rate exceeded")
RATE_LIMIT_CODES = frozenset({429, -32029, -32090})
#: -32005 is EIP-1474's "limit exceeded": a rate limit (Infura: "project ID request rate
#: exceeded", "daily request count exceeded") unless the message names a range, a result count, a
#: size, a batch or a query timeout, which a smaller request cures
_RATE_WORDS = re.compile(
    r"rate.?limit|too many requests|request rate|requests per|request count|request limit|"
    r"compute units|throughput|retry after|backoff",
    re.IGNORECASE,
)
_SIZE_WORDS = re.compile(
    r"range|result|size|large|big|wide|batch|timeout|timed out|query", re.IGNORECASE
)


def is_rate_limit_error(error: Any) -> bool:
    """Whether a JSON-RPC error object (``{"code": ..., "message": ...}``) says "slow down"
    rather than "this request is wrong or too big"."""
    if not isinstance(error, Mapping):
        return False
    code = error.get("code")
    message = str(error.get("message") or "")
    if code == 3 or "revert" in message.lower():  # a contract's own words, whatever they say
        return False
    if code in RATE_LIMIT_CODES or _RATE_WORDS.search(message):
        return True
    return code == -32005 and not _SIZE_WORDS.search(message)


def is_rate_limited(exc: BaseException) -> bool:
    """Whether `exc` is the node (or a gateway in front of it) asking us to slow down: an HTTP 429
    (`requests.HTTPError`), or a JSON-RPC rate-limit error object (`is_rate_limit_error`) carried
    by a `Web3RPCError` (`NodeRefused` included). A sibling of `is_transport_failure`, which
    counts every rate limit as a transport failure."""
    if isinstance(exc, requests.HTTPError):
        response = exc.response
        return response is not None and response.status_code == 429
    if isinstance(exc, Web3RPCError):
        reply = exc.rpc_response
        return isinstance(reply, Mapping) and is_rate_limit_error(reply.get("error"))
    return False


def from_node(what: str, read: Callable[[], T]) -> T:
    """`read()`, with a transport failure raised as `NodeUnavailable(what, ...)` (503); every
    other exception (reverts included) passes through unchanged."""
    try:
        return read()
    except Exception as exc:
        if isinstance(exc, NodeUnavailable) or not is_transport_failure(exc):
            raise
        raise NodeUnavailable(what, str(exc)) from exc


class NodeRefused(ChainError, Web3RPCError):
    """The node answered a batched request with a JSON-RPC error object (a range too large, too
    many results, a method it does not serve). Also a web3.py `Web3RPCError`, as the same
    refusal of a single request through web3.py would be."""

    code = "node_refused"

    def __init__(self, message: str, rpc_response: Any = None) -> None:
        super().__init__(message)
        self.rpc_response = rpc_response


class BlockMissing(ChainError, BlockNotFound):
    """The chain has no block of that number (any more: a reorganisation); also a web3.py
    `BlockNotFound`, as web3.py's own `get_block` would raise."""

    code = "block_missing"


class EventNotEmitted(ChainError, LookupError):
    """A transaction did not emit exactly the one event its caller expected."""

    code = "event_not_emitted"

    def __init__(self, name: str, found: int) -> None:
        self.name = name
        self.found = found
        super().__init__(f"expected one {name} event, found {found}")


class UnknownEvent(ChainError, ValueError):
    """A log whose first topic is none of the contract's events (or has no topic at all)."""

    code = "unknown_event"


class HardhatNodeError(ChainError, RuntimeError):
    """The Hardhat node could not be started, or did not answer in time."""

    code = "hardhat_node"


class ContractRevert(ChainError):
    """A call reverted with a custom error declared in the contract's ABI."""

    code = "contract_revert"
    #: Solidity signature, e.g. ``EscrowNotFound(uint256)``
    signature: ClassVar[str] = ""
    #: 4-byte selector as 0x hex
    selector: ClassVar[str] = ""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        shown = ", ".join(f"{k}={_show(v)}" for k, v in fields.items())
        super().__init__(f"{type(self).__name__}({shown})")

    @property
    def error_name(self) -> str:
        return type(self).__name__


class ContractPanic(ChainError):
    """Solidity `Panic(uint256)`: an assertion, overflow or similar bug-class failure."""

    code = "contract_panic"

    def __init__(self, panic_code: int) -> None:
        self.panic_code = panic_code
        super().__init__(f"Panic(0x{panic_code:02x})")


class ContractErrorString(ChainError):
    """Solidity `Error(string)`, from `require(cond, "message")` (test tokens, wallets)."""

    code = "contract_error"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Error({reason!r})")


class UnknownRevert(ChainError):
    """A revert whose data matches no known error (empty data included)."""

    code = "unknown_revert"

    def __init__(self, data: str) -> None:
        self.data = data
        super().__init__(f"reverted with unknown data {data or '(empty)'}")


class TransactionFailed(ChainError):
    """A mined transaction has status 0 and replaying it gave no reason."""

    code = "transaction_failed"

    def __init__(self, tx_hash: str) -> None:
        self.tx_hash = tx_hash
        super().__init__(f"transaction {tx_hash} reverted")


class EscrowUnknown(ChainError):
    """No `EscrowCreated` event exists for this id, so its parameters are unknown."""

    code = "escrow_unknown"

    def __init__(self, escrow_id: int) -> None:
        self.escrow_id = escrow_id
        super().__init__(f"escrow {escrow_id} has no EscrowCreated event on this contract")


class DeploymentMissing(ChainError):
    code = "deployment_missing"

    def __init__(self, chain_id: int, path: str) -> None:
        self.chain_id = chain_id
        self.path = path
        super().__init__(
            f"no deployment record for chain id {chain_id} at {path}; run `escrow deploy` "
            "or set ESCROW_CONTRACT_ADDRESS"
        )


class InvalidSignature(ChainError):
    """A confirmation signature that is malformed or not canonical (checked off-chain)."""

    code = "invalid_signature"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid signature: {reason}")


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
