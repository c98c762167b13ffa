"""What each HTTP request to the node costs besides the node's answer: the environment (proxy
variables, CA bundle, ~/.netrc) is read once per provider, not per request, and a block's hash
is read without web3.py's formatting of the whole block; on the session's Hardhat node."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from web3 import Web3
from web3.exceptions import BadResponseFormat

from backend.chain.bulk_rpc import block_hash
from backend.chain.connect import LimitedHTTPProvider, connect
from backend.chain.errors import NodeRefused
from backend.chain.node import HardhatNode

#: no node listens here: the tests that use it answer for the node themselves
NO_NODE = "http://127.0.0.1:9"


def test_requests_to_the_node_do_not_walk_the_environment_each_time(
    hardhat_node: HardhatNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests reads the proxy variables and looks for ~/.netrc on every request of a session
    that trusts the environment; the provider's sessions read nothing of it per request."""
    w3 = connect(hardhat_node.url)
    walks: list[str] = []
    environ_proxies = requests.utils.get_environ_proxies

    def counting(url: str, no_proxy: Any = None) -> dict[str, str]:
        walks.append(url)
        return environ_proxies(url, no_proxy)

    monkeypatch.setattr(requests.utils, "get_environ_proxies", counting)
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting, raising=False)
    for _ in range(5):
        assert w3.eth.block_number >= 0
    assert walks == []


def test_the_provider_keeps_the_proxy_and_ca_bundle_of_the_environment_it_started_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read once is not dropped: an operator's HTTPS_PROXY and REQUESTS_CA_BUNDLE still apply to
    every request of a provider made while they were set."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    kwargs = LimitedHTTPProvider("https://node.example:8545").get_request_kwargs()
    assert kwargs["proxies"].get("https") == "http://127.0.0.1:3128"
    assert kwargs["verify"] == "/etc/ssl/certs/ca-certificates.crt"


def test_a_block_hash_read_raw_is_web3s_and_a_missing_block_is_none(
    hardhat_node: HardhatNode,
) -> None:
    w3 = connect(hardhat_node.url)
    head = w3.eth.block_number
    assert block_hash(w3, head) == "0x" + bytes(w3.eth.get_block(head)["hash"]).hex()
    assert block_hash(w3, head + 1000) is None
    assert block_hash(w3, -1) is None


def test_a_block_hash_refused_by_the_node_raises_node_refused() -> None:
    w3 = Web3(LimitedHTTPProvider(NO_NODE))
    provider = w3.provider

    def refusing(method: Any, params: Any) -> Any:
        return {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "no such thing"}}

    provider.make_request = refusing  # type: ignore[method-assign]
    with pytest.raises(NodeRefused, match="no such thing"):
        block_hash(w3, 0)


def test_a_reply_without_a_block_or_null_is_not_taken_for_a_missing_block() -> None:
    """A missing block means a chain reset to the deployment check and the indexer: a broken
    gateway's reply with neither `result` nor `error` must not say so."""
    w3 = Web3(LimitedHTTPProvider(NO_NODE))

    def empty(method: Any, params: Any) -> Any:
        return {"jsonrpc": "2.0", "id": 1}

    w3.provider.make_request = empty  # type: ignore[method-assign]
    with pytest.raises(BadResponseFormat):
        block_hash(w3, 0)
