"""One factory for the three chains (`docs/interface.md`, configuration): in-process eth-tester,
the local Hardhat node, and any JSON-RPC network.

Over HTTP the provider is a `LimitedHTTPProvider`: every request of the process (web3.py's own
calls and the raw requests and batches of `bulk_rpc`) that the node or a gateway in front of it
rate-limits (HTTP 429, or a JSON-RPC rate-limit error: `errors.is_rate_limit_error`) or answers
with 502/503/504 is tried again after a bounded exponential backoff (`RpcPolicy`), waiting the
node's own `Retry-After` (or Infura's `backoff_seconds`) when it gives one; after
`RpcPolicy.max_attempts` tries the request raises `NodeUnavailable` (a 503, CLI exit 2). How many
calls a batch may hold and how many blocks an `eth_getLogs` may span are learned per provider in
`bulk_rpc` and `logs`.
"""

from __future__ import annotations

import email.utils
import logging
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from web3 import Web3
from web3.providers.rpc import HTTPProvider
from web3.providers.rpc.utils import ExceptionRetryConfiguration, check_if_retry_on_failure
from web3.types import RPCEndpoint, RPCResponse

from backend.chain.errors import NodeUnavailable, is_rate_limit_error
from backend.chain.transport import NodeTransport
from backend.config import Settings, get_settings
from backend.errors import ConfigurationError

#: the URL that selects the in-process chain (eth-tester + py-evm)
IN_PROCESS = "tester://"
HARDHAT_CHAIN_ID = 31337
#: seconds an HTTP request to the node may take when the caller names no timeout (the default
#: of `ESCROW_RPC_TIMEOUT`)
DEFAULT_RPC_TIMEOUT = 10.0
#: HTTP statuses of a gateway whose node is briefly away: tried again like a rate limit (for
#: the methods web3.py deems safe to repeat)
TRANSIENT_STATUS = frozenset({502, 503, 504})

logger = logging.getLogger(__name__)
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RpcPolicy:
    """How patient to be with a node, and what it is assumed to accept before it says otherwise
    (`ESCROW_RPC_*`, `docs/interface.md` section 6)."""

    #: tries of one rate-limited request before `NodeUnavailable`
    max_attempts: int = 5
    #: seconds of the first wait; doubles per try
    backoff_base: float = 0.25
    #: cap of one wait, a node's Retry-After included
    backoff_max: float = 8.0
    #: calls per JSON-RPC batch until the node refuses a batch
    batch_size: int = 500
    #: blocks per eth_getLogs (None: as many as asked, until the node refuses a range)
    log_blocks: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RpcPolicy:
        return cls(
            max_attempts=settings.rpc_max_attempts,
            backoff_base=settings.rpc_backoff_base,
            backoff_max=settings.rpc_backoff_max,
            batch_size=settings.rpc_batch_size,
            log_blocks=settings.rpc_log_blocks,
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after try number `attempt` (from 1) was refused: the node's own
        `retry_after` when it gave one, else `backoff_base * 2**(attempt - 1)` less up to half
        of it (jitter, so that many clients do not come back at once); never more than
        `backoff_max`."""
        if retry_after is not None:
            return min(self.backoff_max, max(0.0, retry_after))
        full = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return float(full * random.uniform(0.5, 1.0))


class LimitedHTTPProvider(HTTPProvider):
    """web3.py's HTTP provider that backs off and tries again when the node rate-limits a
    request or a batch (see the module's docstring), and remembers its `policy`."""

    def __init__(
        self,
        endpoint_uri: str,
        *,
        policy: RpcPolicy | None = None,
        request_kwargs: dict[str, Any] | None = None,
    ) -> None:
        # web3.py's own retry would repeat a 429 at once, without Retry-After: connect timeouts
        # (`requests.ConnectTimeout`) stay with it, HTTP statuses come here; a refused or broken
        # connection (`requests.ConnectionError`, not the builtin one named below) is not tried
        # again here. A read that timed out is not sent again: a node that accepts connections
        # and never answers would otherwise hold each call for five timeouts (the caller's next
        # pass asks again)
        kwargs = dict(request_kwargs or {})
        kwargs.setdefault("timeout", DEFAULT_RPC_TIMEOUT)
        # The chain id is asked once per provider: web3.py's validation asks it before (and
        # after) every eth_call, eth_estimateGas and eth_sendTransaction, two of every three
        # requests of a contract call; a node's chain id does not change under a URL (a chain
        # reset keeps it, and `backend.chain.deploy.DeploymentWatch` tells a new chain by the
        # deployment block's hash).
        super().__init__(
            endpoint_uri,
            request_kwargs=kwargs,
            exception_retry_configuration=ExceptionRetryConfiguration(
                errors=(ConnectionError, requests.ConnectTimeout)
            ),
            cache_allowed_requests=True,
            cacheable_requests={RPCEndpoint("eth_chainId")},
            # no block-based validation of cached answers (only the chain id is cached): web3.py
            # would otherwise switch the cache off and on around its own first eth_chainId, a
            # race that can leave it off for good when two threads start at once
            request_cache_validation_threshold=None,
        )
        self.policy = policy or RpcPolicy()
        #: how to wait (tests put a recorder here)
        self.sleep: Callable[[float], None] = time.sleep
        # What requests would read from the environment for this URL on every request (proxy
        # variables, a CA bundle, ~/.netrc: about a third of a request's CPU on loopback), read
        # once here and handed to every request; the sessions then leave the environment alone
        with requests.Session() as reader:
            environment = reader.merge_environment_settings(endpoint_uri, {}, None, None, None)
        for key in ("proxies", "verify", "cert"):
            if environment.get(key) is not None:
                kwargs.setdefault(key, environment[key])
        netrc = requests.utils.get_netrc_auth(endpoint_uri)
        if netrc is not None:
            kwargs.setdefault("auth", netrc)  # `kwargs` is the provider's own request kwargs
        # how each request travels (backend/chain/transport.py): straight over a kept-alive
        # connection when nothing of the environment reroutes it
        self._request_session_manager = NodeTransport(endpoint_uri, kwargs)

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        return self._patiently(
            str(method),
            lambda: HTTPProvider.make_request(self, method, params),
            repeatable=check_if_retry_on_failure(method),
        )

    def make_batch_request(
        self, batch_requests: list[tuple[RPCEndpoint, Any]]
    ) -> list[RPCResponse] | RPCResponse:
        methods = sorted({str(m) for m, _ in batch_requests})
        return self._patiently(
            f"batch of {len(batch_requests)} {'/'.join(methods)}",
            lambda: HTTPProvider.make_batch_request(self, batch_requests),
            repeatable=all(check_if_retry_on_failure(RPCEndpoint(m)) for m in methods),
        )

    def _patiently(self, what: str, send: Callable[[], R], *, repeatable: bool) -> R:
        """`send()`, tried again while the node rate-limits it (any method: a rate-limited
        request was not served) or answers 502/503/504 (`repeatable` methods only)."""
        policy = self.policy
        attempt = 0
        while True:
            attempt += 1
            try:
                reply = send()
            except requests.HTTPError as exc:
                response = exc.response
                status = None if response is None else response.status_code
                if response is None or not (
                    status == 429 or (repeatable and status in TRANSIENT_STATUS)
                ):
                    raise
                reason = f"HTTP {status} {response.reason or ''}".rstrip()
                if status == 429:
                    reason = f"rate limited: {reason}"
                retry_after = retry_after_header(response.headers.get("Retry-After"))
            else:
                limited = _rate_limit_of(reply)
                if limited is None:
                    return reply
                reason, retry_after = limited
            if attempt >= policy.max_attempts:
                raise NodeUnavailable(what, f"{reason} ({attempt} attempts)")
            wait = policy.delay(attempt, retry_after)
            logger.info(
                "%s: %s; trying again in %.2f s (attempt %d of %d)",
                what, reason, wait, attempt + 1, policy.max_attempts,
            )
            self.sleep(wait)


def _rate_limit_of(reply: Any) -> tuple[str, float | None] | None:
    """(reason, seconds the node asked for) when a reply (or any reply of a batch) is a JSON-RPC
    rate-limit error; else None."""
    for item in reply if isinstance(reply, list) else [reply]:
        error = item.get("error") if isinstance(item, Mapping) else None
        if isinstance(error, Mapping) and is_rate_limit_error(error):
            reason = f"rate limited: {error.get('code')} {error.get('message')}"
            return reason, _backoff_seconds(error.get("data"))
    return None


def _backoff_seconds(data: Any) -> float | None:
    """Infura's ``data.backoff_seconds`` (also under ``data.rate``), or a ``retry_after``."""
    if not isinstance(data, Mapping):
        return None
    for key in ("backoff_seconds", "retry_after", "retryAfter"):
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return _backoff_seconds(data.get("rate"))


def retry_after_header(value: str | None) -> float | None:
    """Seconds from an HTTP `Retry-After` header: delta-seconds or an HTTP date; None when
    absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def connect(
    rpc_url: str, *, timeout: float | None = None, policy: RpcPolicy | None = None
) -> Web3:
    """A Web3 for `rpc_url`: ``tester://`` for the in-process chain, or an http(s) URL (a
    `LimitedHTTPProvider` with `policy`, by default the `ESCROW_RPC_*` settings). Every HTTP
    request of it, web3.py's and `bulk_rpc`'s alike, gives up after `timeout` seconds (connect
    and read; default `ESCROW_RPC_TIMEOUT`) with a `requests.Timeout` (a transport failure:
    `NodeUnavailable` where callers use `from_node`)."""
    if rpc_url in (IN_PROCESS, "tester", "eth-tester"):
        return in_process_chain()
    if rpc_url.startswith(("http://", "https://")):
        settings = get_settings()
        return Web3(LimitedHTTPProvider(
            rpc_url,
            policy=policy or RpcPolicy.from_settings(settings),
            request_kwargs={"timeout": settings.rpc_timeout if timeout is None else timeout},
        ))
    raise ConfigurationError(
        f"unsupported RPC URL {rpc_url!r}: use http(s)://host:port or {IN_PROCESS}"
    )


def in_process_chain() -> Web3:
    """A fresh in-process chain with ten funded, unlocked accounts. Needs `web3[tester]`."""
    try:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3.providers.eth_tester import EthereumTesterProvider
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "the in-process chain needs eth-tester: pip install 'web3[tester]'"
        ) from exc
    backend = PyEVMBackend()
    return Web3(EthereumTesterProvider(EthereumTester(backend)))


def is_dev_chain(w3: Web3) -> bool:
    return int(w3.eth.chain_id) == HARDHAT_CHAIN_ID or is_in_process(w3)


def is_in_process(w3: Web3) -> bool:
    return type(w3.provider).__name__ == "EthereumTesterProvider"


#: the recursion limit `bound_recursion` restores: CPython's own default, under which no C
#: recursion (the JSON parser, `repr`, pickling) can reach the end of even a 1 MiB thread stack
RECURSION_LIMIT = 1000


def bound_recursion(limit: int = RECURSION_LIMIT) -> int:
    """Lowers the recursion limit to `limit` (CPython's default) if an import raised it, and
    returns the limit found. Called by `create_app` and `build_services`, after every chain
    library is imported, so the API and every worker process run under it.

    `py_ecc` sets 100,000 for its pure-Python pairing (BLS12-381 keystores, which this service
    never opens) and py-evm at least 12,288 for the EVM's 1,024 call frames on the in-process
    chain (tests and `tester://` only; the escrow never nests calls more than two deep). At
    100,000 a deep enough recursion in C (the JSON parser, `repr`, pickling) ends in SIGSEGV
    instead of `RecursionError`; at 1,000 every such recursion stops cleanly. `BodyBounds`
    (`backend/api/body_bounds.py`) keeps hostile bodies below any limit; this is the second
    line for what is not a request body (a node's or a gateway's deeply nested answer)."""
    found = sys.getrecursionlimit()
    if found > limit:
        sys.setrecursionlimit(limit)
    return found
