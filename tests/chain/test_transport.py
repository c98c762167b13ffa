"""What each HTTP request to the node costs besides the node's answer, and how it travels
(`backend/chain/transport.py`): the environment (proxy variables, CA bundle, ~/.netrc) is read
once per provider, not per request; a plain http:// node is posted to over one kept-alive
connection per thread, which is replaced when the node closed it while idle, and fails as
`requests` fails; a block's hash is read without web3.py's formatting of the whole block."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from web3 import Web3
from web3.exceptions import BadResponseFormat

from backend.chain.bulk_rpc import block_hash
from backend.chain.connect import LimitedHTTPProvider, connect
from backend.chain.errors import NodeRefused, is_transport_failure
from backend.chain.node import HardhatNode
from backend.chain.transport import NodeTransport
from tests.support import serving

#: no node listens here: the tests that use it answer for the node themselves
NO_NODE = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests start from an environment without proxy variables (and set their own)."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                 "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("direct", [True, False], ids=["http.client", "requests"])
def test_requests_to_the_node_do_not_walk_the_environment_each_time(
    hardhat_node: HardhatNode, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    """requests reads the proxy variables and looks for ~/.netrc on every request of a session
    that trusts the environment; the provider's sessions read nothing of it per request, on
    either path (a setting the direct path does not know sends it through requests)."""
    w3 = Web3(LimitedHTTPProvider(
        hardhat_node.url, request_kwargs=None if direct else {"allow_redirects": True}
    ))
    assert transport(w3).direct is direct
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


# ------------------------------------------------------------------ the direct path


class _Node(ThreadingHTTPServer):
    """A loopback JSON-RPC stand-in: answers every POST with block number 0x1 (or `status` with
    `headers`), keeps connections alive, closes one idle for `idle` seconds, and counts the
    connections it accepted."""

    daemon_threads = True

    def __init__(self, idle: float, status: int = 200, headers: dict[str, str] | None = None
                 ) -> None:
        self.accepted = 0
        self.closed = 0
        #: the request target (path and query) of every POST
        self.paths: list[str] = []
        self.status = status
        self.headers = headers or {}
        node = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle

            def setup(self) -> None:
                node.accepted += 1
                super().setup()

            def finish(self) -> None:
                super().finish()
                node.closed += 1

            def do_POST(self) -> None:
                node.paths.append(self.path)
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "0x1"})
                moved = self.path == "/moved"  # where a redirect (`status` 3xx) points
                status = 200 if moved else node.status
                if status != 200:  # a gateway's page, not the node's answer
                    body = "<html><body>not here</body></html>"
                self.send_response(status)
                for name, value in ({} if moved else node.headers).items():
                    self.send_header(name, value)
                self.send_header("Content-Type",
                                 "application/json" if status == 200 else "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def stand_in(idle: float = 5.0, status: int = 200, headers: dict[str, str] | None = None
             ) -> Iterator[_Node]:
    node = _Node(idle, status, headers)
    with serving(node):
        yield node


def transport(w3: Web3) -> NodeTransport:
    manager = w3.provider._request_session_manager  # type: ignore[union-attr]
    assert isinstance(manager, NodeTransport)
    return manager


def test_a_plain_http_node_is_asked_over_one_kept_alive_connection_per_thread() -> None:
    with stand_in() as node:
        w3 = Web3(LimitedHTTPProvider(node.url))
        assert transport(w3).direct
        for _ in range(5):
            assert w3.eth.block_number == 1
        assert node.accepted == 1
        other = threading.Thread(target=lambda: w3.eth.block_number)
        other.start()
        other.join(10)
        assert node.accepted == 2


def test_a_connection_the_node_closed_while_idle_is_replaced_without_an_error() -> None:
    with stand_in(idle=0.2) as node:
        w3 = Web3(LimitedHTTPProvider(node.url))
        assert w3.eth.block_number == 1
        deadline = time.monotonic() + 10
        while node.closed < 1 and time.monotonic() < deadline:  # the stand-in closes it
            time.sleep(0.05)
        assert node.closed == 1
        assert w3.eth.block_number == 1
        assert node.accepted == 2


def test_a_status_outside_2xx_is_requests_http_error_with_its_response() -> None:
    with stand_in(status=429, headers={"Retry-After": "3"}) as node:
        provider = LimitedHTTPProvider(node.url)
        with pytest.raises(requests.HTTPError) as raised:
            transport(Web3(provider)).make_post_request(
                provider.endpoint_uri, b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}',
                **provider.get_request_kwargs(),
            )
    response = raised.value.response
    assert response is not None
    assert (response.status_code, response.reason) == (429, "Too Many Requests")
    assert response.headers["retry-after"] == "3"
    assert "429 Client Error: Too Many Requests for url" in str(raised.value)


def test_the_urls_path_and_query_reach_the_node() -> None:
    with stand_in() as node:
        w3 = Web3(LimitedHTTPProvider(node.url + "/v3/key?chain=local"))
        assert transport(w3).direct
        assert w3.eth.block_number == 1
    assert node.paths == ["/v3/key?chain=local"]


def test_a_redirect_is_followed_as_requests_follows_it() -> None:
    """A gateway's 307 is not the node's answer: requests sends the POST where it points."""
    with stand_in(status=307, headers={"Location": "/moved"}) as node:
        w3 = Web3(LimitedHTTPProvider(node.url))
        assert transport(w3).direct
        assert w3.eth.block_number == 1
    assert node.paths == ["/", "/", "/moved"]  # on its own, then through requests


def test_a_refused_connection_is_requests_connection_error_a_transport_failure() -> None:
    w3 = Web3(LimitedHTTPProvider(NO_NODE))
    assert transport(w3).direct
    with pytest.raises(requests.ConnectionError) as raised:
        w3.eth.block_number  # noqa: B018 - the request is the test
    assert is_transport_failure(raised.value)


@pytest.mark.parametrize(
    ("url", "environment", "direct"),
    [
        ("http://127.0.0.1:8545", {}, True),
        ("http://127.0.0.1:8545/rpc?key=1", {}, True),
        ("http://localhost:8545", {}, True),
        ("https://node.example:8545", {}, False),
        ("http://user:secret@127.0.0.1:8545", {}, False),
        ("http://127.0.0.1:8545", {"HTTP_PROXY": "http://127.0.0.1:3128"}, False),
        ("http://127.0.0.1:8545",
         {"HTTP_PROXY": "http://127.0.0.1:3128", "NO_PROXY": "127.0.0.1"}, True),
        ("http://127.0.0.1:8545", {"NETRC": "machine 127.0.0.1 login me password pw"}, False),
    ],
)
def test_requests_go_through_requests_where_the_environment_or_the_url_asks_for_it(
    url: str, environment: dict[str, str], direct: bool, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A proxy, credentials (in the URL or ~/.netrc) and TLS are requests' to handle."""
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    for name, value in environment.items():
        if name == "NETRC":
            (tmp_path / "netrc").write_text(value + "\n")
            value = str(tmp_path / "netrc")
        monkeypatch.setenv(name, value)
    assert transport(Web3(LimitedHTTPProvider(url))).direct is direct
