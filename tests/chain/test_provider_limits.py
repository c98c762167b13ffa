"""Every chain read within a hosted node's limits: what counts as a rate limit, the backoff
(bounded, capped, honoring Retry-After, then `NodeUnavailable`), batches split down to what the
node accepts and remembered, `eth_getLogs` paged and remembered; through a JSON-RPC proxy
(`tests/chain/rpc_proxy.py`) in front of the session's Hardhat node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from web3 import Web3
from web3.exceptions import Web3RPCError

from backend.chain.bulk_rpc import block_headers, eth_calls, get_logs, node_limits
from backend.chain.client import EscrowClient
from backend.chain.connect import LimitedHTTPProvider, RpcPolicy, connect, retry_after_header
from backend.chain.errors import (
    NodeRefused,
    NodeUnavailable,
    from_node,
    is_rate_limit_error,
    is_rate_limited,
    is_transport_failure,
)
from backend.chain.logs import is_range_cap, logs_between
from tests.chain.rpc_proxy import (
    BatchRefusal,
    ProxyLimits,
    RateStyle,
    RpcProxy,
    assert_batches_refused_then_respected,
    assert_ranges_refused_then_respected,
    assert_rate_limits_hit_then_retried,
    busy_history,
    running_proxy,
)
from tests.index.support import endpoint
from tests.support import EscrowEnv

# ------------------------------------------------------------------ what is a rate limit

RATE_LIMITS: list[dict[str, Any]] = [
    {"code": -32005, "message": "project ID request rate exceeded",
     "data": {"backoff_seconds": 30.0}},  # Infura, with HTTP 429
    {"code": -32005, "message": "daily request count exceeded, request rate limited"},
    {"code": -32005, "message": "limit exceeded"},  # EIP-1474's wording
    {"code": 429, "message": "Your app has exceeded its compute units per second capacity"},
    {"code": 429, "message": "The requests per second (RPS) of your requests are higher than "
                             "your plan allows."},  # QuickNode
    {"code": -32029, "message": "request rate exceeded"},
    {"code": -32000, "message": "Too Many Requests"},
]
NOT_RATE_LIMITS: list[dict[str, Any]] = [
    {"code": -32005, "message": "query returned more than 10000 results"},
    {"code": -32005, "message": "query exceeds max block range 100"},
    {"code": -32005, "message": "query timeout exceeded"},
    {"code": -32005, "message": "batch size too large"},
    {"code": -32600, "message": "batch too large"},
    {"code": -32602, "message": "Log response size exceeded."},
    {"code": -32000, "message": "header not found"},
    {"code": 3, "message": "execution reverted: rate limit"},  # a contract's own words
]


@pytest.mark.parametrize("error", RATE_LIMITS, ids=lambda e: str(e["message"])[:30])
def test_a_rate_limit_error_object_is_a_rate_limit_and_the_node_unavailable_for_now(
    error: dict[str, Any],
) -> None:
    assert is_rate_limit_error(error)
    exc = NodeRefused(f"eth_call: {error['message']}", rpc_response={"error": error})
    assert is_rate_limited(exc) and is_transport_failure(exc)
    with pytest.raises(NodeUnavailable):
        from_node("credits", lambda: _raise(Web3RPCError(repr(error), rpc_response={
            "jsonrpc": "2.0", "id": 1, "error": error})))


@pytest.mark.parametrize("error", NOT_RATE_LIMITS, ids=lambda e: str(e["message"])[:30])
def test_a_refusal_of_the_request_itself_is_no_rate_limit(error: dict[str, Any]) -> None:
    assert not is_rate_limit_error(error)
    exc = NodeRefused(f"eth_getLogs: {error['message']}", rpc_response={"error": error})
    assert not is_rate_limited(exc) and not is_transport_failure(exc)


def test_an_http_429_is_a_rate_limit() -> None:
    response = requests.Response()
    response.status_code = 429
    assert is_rate_limited(requests.HTTPError("429 Too Many Requests", response=response))
    response.status_code = 502
    assert not is_rate_limited(requests.HTTPError("502 Bad Gateway", response=response))


def test_a_range_cap_is_told_from_a_result_cap() -> None:
    def refused(message: str) -> NodeRefused:
        return NodeRefused(f"eth_getLogs: {message}")

    assert is_range_cap(refused("query exceeds max block range 100"))
    assert is_range_cap(refused("exceed maximum block range: 5000"))
    assert not is_range_cap(refused("query returned more than 10000 results"))
    assert not is_range_cap(refused(
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block "
        "range and no limit on the response size"
    ))


# ------------------------------------------------------------------ the backoff


def test_the_backoff_doubles_with_jitter_up_to_its_cap_and_takes_the_nodes_retry_after() -> None:
    policy = RpcPolicy(backoff_base=0.25, backoff_max=1.5)
    for attempt, full in [(1, 0.25), (2, 0.5), (3, 1.0), (4, 1.5), (9, 1.5)]:
        for _ in range(20):
            assert full / 2 <= policy.delay(attempt) <= full
    assert policy.delay(1, retry_after=1.0) == 1.0
    assert policy.delay(1, retry_after=0) == 0
    assert policy.delay(1, retry_after=3600) == 1.5  # capped


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert retry_after_header("0") == 0
    assert retry_after_header(" 2 ") == 2
    assert retry_after_header("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past
    assert (retry_after_header("Fri, 01 Jan 2100 00:00:00 GMT") or 0) > 50
    assert retry_after_header("soon") is None
    assert retry_after_header(None) is None


@pytest.fixture
def proxy_of(hardhat_env: EscrowEnv) -> Iterator[Any]:
    """Starts proxies in front of the session's node; each is stopped at the end of the test."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        def start(limits: ProxyLimits) -> RpcProxy:
            return stack.enter_context(running_proxy(endpoint(hardhat_env), limits))

        yield start


def _limited_w3(proxy: RpcProxy, **policy: Any) -> tuple[Web3, list[float]]:
    """A Web3 through `proxy` whose backoff records its waits instead of sleeping."""
    w3 = connect(proxy.url, policy=RpcPolicy(**policy))
    provider = w3.provider
    assert isinstance(provider, LimitedHTTPProvider)
    waits: list[float] = []
    provider.sleep = waits.append
    return w3, waits


@pytest.mark.parametrize("style", ["http", "jsonrpc"])
def test_a_node_that_keeps_rate_limiting_is_unavailable_after_max_attempts(
    hardhat_env: EscrowEnv, proxy_of: Any, style: RateStyle
) -> None:
    proxy = proxy_of(ProxyLimits(rate_every=1, rate_style=style, retry_after=None))
    w3, waits = _limited_w3(proxy, max_attempts=4, backoff_base=0.5, backoff_max=1.5)
    escrow = EscrowClient(w3, hardhat_env.escrow.address)
    with pytest.raises(NodeUnavailable, match=r"rate limited.*\(4 attempts\)"):
        from_node("credits", lambda: escrow.credits(hardhat_env.provider))
    assert len(proxy.seen) == 4 and set(proxy.outcomes()) == {"rate_limited"}
    if style == "http":  # no Retry-After: exponential, with jitter, capped
        assert [w > 0 for w in waits] == [True] * 3
        assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0 and 0.75 <= waits[2] <= 1.5
    else:  # the node's own backoff_seconds (0)
        assert waits == [0, 0, 0]


def test_a_retry_after_longer_than_the_cap_is_cut_to_the_cap(
    hardhat_env: EscrowEnv, proxy_of: Any
) -> None:
    proxy = proxy_of(ProxyLimits(rate_every=1, retry_after="120", rate_budget=2))
    w3, waits = _limited_w3(proxy, backoff_max=0.05)
    assert int(w3.eth.block_number) == int(hardhat_env.w3.eth.block_number)
    assert waits == [0.05, 0.05]
    assert proxy.outcomes() == ["rate_limited", "rate_limited", "ok"]


@pytest.mark.parametrize("style", ["http", "jsonrpc"])
def test_reads_through_a_rate_limiting_node_equal_the_direct_reads(
    hardhat_env: EscrowEnv, proxy_of: Any, style: RateStyle
) -> None:
    env = hardhat_env
    ids = busy_history(env)
    proxy = proxy_of(ProxyLimits(rate_every=2, rate_style=style, retry_after="0"))
    w3, _ = _limited_w3(proxy, backoff_base=0.001)
    limited = EscrowClient(w3, env.escrow.address, from_block=env.deployment_block)
    for escrow_id in ids:
        assert limited.get_escrow(escrow_id) == env.escrow.get_escrow(escrow_id)
    for account in (env.client, env.provider):
        assert limited.credits(account) == env.escrow.credits(account)
        assert limited.credits(account, env.token) == env.escrow.credits(account, env.token)
    assert_rate_limits_hit_then_retried(proxy)


# ------------------------------------------------------------------ batches


@pytest.mark.parametrize("refusal", ["object", "geth", "http413"])
def test_a_refused_batch_is_split_down_to_what_the_node_takes_and_remembered(
    hardhat_env: EscrowEnv, proxy_of: Any, refusal: BatchRefusal
) -> None:
    env = hardhat_env
    ids = busy_history(env)
    proxy = proxy_of(ProxyLimits(max_batch=3, batch_refusal=refusal))
    w3, _ = _limited_w3(proxy)
    head = int(env.w3.eth.block_number)
    numbers = range(env.deployment_block, head + 1)
    assert block_headers(w3, numbers) == block_headers(env.w3, numbers)
    assert node_limits(w3).batch_size <= 3
    refusals = proxy.outcomes().count("batch_refused")
    fns = env.escrow.contract.functions
    datas = [fns.getEscrow(i)._encode_transaction_data() for i in ids]
    datas += [fns.credits(a, env.token)._encode_transaction_data()
              for a in (env.client, env.provider)]
    assert eth_calls(w3, env.escrow.address, datas, head) == eth_calls(
        env.w3, env.escrow.address, datas, head
    )
    assert proxy.outcomes().count("batch_refused") == refusals  # the size that works is kept
    assert_batches_refused_then_respected(proxy)


def test_a_batch_of_one_is_a_single_request(hardhat_env: EscrowEnv, proxy_of: Any) -> None:
    proxy = proxy_of(ProxyLimits(max_batch=1))
    w3, _ = _limited_w3(proxy, batch_size=1)
    head = int(hardhat_env.w3.eth.block_number)
    assert block_headers(w3, [head - 1, head]) == block_headers(hardhat_env.w3, [head - 1, head])
    assert proxy.batches() == []


def test_a_reverting_call_in_a_batch_is_still_raised(
    hardhat_env: EscrowEnv, proxy_of: Any
) -> None:
    env = hardhat_env
    escrow_id = env.create_active()
    proxy = proxy_of(ProxyLimits(max_batch=2))
    w3, _ = _limited_w3(proxy)
    fns = env.escrow.contract.functions
    datas = [fns.getEscrow(escrow_id)._encode_transaction_data()] * 3
    datas.append("0xdeadbeef")  # no such function: the contract reverts
    with pytest.raises(NodeRefused, match="eth_call"):
        eth_calls(w3, env.escrow.address, datas, int(env.w3.eth.block_number))


# ------------------------------------------------------------------ logs


def test_logs_are_paged_within_the_nodes_range_cap_and_the_cap_is_remembered(
    hardhat_env: EscrowEnv, proxy_of: Any
) -> None:
    env = hardhat_env
    busy_history(env)
    proxy = proxy_of(ProxyLimits(max_log_blocks=6))
    w3, _ = _limited_w3(proxy)
    head = int(env.w3.eth.block_number)
    direct = get_logs(env.w3, env.escrow.address, env.deployment_block, head)
    assert logs_between(w3, env.escrow.address, env.deployment_block, head) == direct
    assert (node_limits(w3).log_cap or 99) <= 6
    refusals = proxy.outcomes().count("range_refused")
    assert logs_between(w3, env.escrow.address, env.deployment_block, head) == direct
    assert proxy.outcomes().count("range_refused") == refusals
    assert_ranges_refused_then_respected(proxy)


def test_a_configured_log_range_is_never_exceeded(hardhat_env: EscrowEnv, proxy_of: Any) -> None:
    env = hardhat_env
    busy_history(env)
    proxy = proxy_of(ProxyLimits(max_log_blocks=5))
    w3, _ = _limited_w3(proxy, log_blocks=5)
    head = int(env.w3.eth.block_number)
    assert logs_between(w3, env.escrow.address, env.deployment_block, head) == get_logs(
        env.w3, env.escrow.address, env.deployment_block, head
    )
    assert "range_refused" not in proxy.outcomes()


def test_a_result_cap_halves_the_range_but_is_no_cap_for_good(
    hardhat_env: EscrowEnv, proxy_of: Any
) -> None:
    env = hardhat_env
    busy_history(env)
    proxy = proxy_of(ProxyLimits(max_log_results=2))
    w3, _ = _limited_w3(proxy)
    head = int(env.w3.eth.block_number)
    direct = get_logs(env.w3, env.escrow.address, env.deployment_block, head)
    assert logs_between(w3, env.escrow.address, env.deployment_block, head) == direct
    limits = node_limits(w3)
    assert "results_refused" in proxy.outcomes()
    assert limits.log_cap is None and limits.log_span is not None  # not a cap for good


def _raise(exc: BaseException) -> Any:
    raise exc
