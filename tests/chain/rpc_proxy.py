"""A JSON-RPC proxy on 127.0.0.1 in front of a real node that enforces what hosted providers
enforce: a cap on calls per batch, on blocks per `eth_getLogs` and on logs per answer, and a rate
limit. It records every HTTP request it saw and what it answered, so tests can show that the
limits were hit and then respected.

The refusals look like the real ones: a too-large batch as one JSON-RPC error object (jsonrpsee,
hosted gateways: ``{"id": null, "error": {...}}``), geth-style as a one-item list answering the
first call with -32600 "batch too large", or as HTTP 413 Content Too Large; a wide log range as
-32005 "query exceeds max block range N"; too many logs as -32005 "query returned more than N
results" (Infura); a rate limit as HTTP 429 with `Retry-After` and Infura's -32005 "project ID
request rate exceeded" body, or as an HTTP 200 carrying a JSON-RPC rate-limit error (-32005
"limit exceeded" with Infura's `backoff_seconds`, or 429 "Too many requests" for a batch).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import requests

from tests.support import serving

BatchRefusal = Literal["object", "geth", "http413"]
RateStyle = Literal["http", "jsonrpc"]


@dataclass
class ProxyLimits:
    #: most calls per batch; a bigger batch is refused whole
    max_batch: int | None = None
    batch_refusal: BatchRefusal = "object"
    #: most blocks per eth_getLogs (a range cap: never lifted)
    max_log_blocks: int | None = None
    #: most logs per eth_getLogs answer
    max_log_results: int | None = None
    #: every k-th single request and every k-th batch is rate-limited (separate counters)
    rate_every: int | None = None
    rate_style: RateStyle = "http"
    #: the Retry-After header of an HTTP 429 (None: no header)
    retry_after: str | None = "0"
    #: at most this many rate-limited answers of each kind, single and batch (None: no bound)
    rate_budget: int | None = None


@dataclass(frozen=True)
class Seen:
    """One HTTP request: its methods, whether it was a batch, what the proxy answered
    (``ok``, ``batch_refused``, ``range_refused``, ``results_refused``, ``rate_limited``), the
    block spans of its `eth_getLogs` calls, and when it arrived (monotonic seconds)."""

    methods: tuple[str, ...]
    batch: bool
    outcome: str
    spans: tuple[int, ...]
    at: float

    @property
    def size(self) -> int:
        return len(self.methods)


@dataclass
class RpcProxy:
    upstream: str
    limits: ProxyLimits
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _singles: int = 0
    _batches: int = 0
    _rate_limited: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})

    # ------------------------------------------------------------ what it saw

    def batches(self) -> list[Seen]:
        return [s for s in self.seen if s.batch]

    def log_calls(self) -> list[tuple[int, str]]:
        """(span, outcome) of every eth_getLogs call, in order."""
        return [(span, s.outcome) for s in self.seen for span in s.spans]

    def outcomes(self) -> list[str]:
        return [s.outcome for s in self.seen]

    # ------------------------------------------------------------ answering

    def answer(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """(HTTP status, headers, body) for one request."""
        payload = json.loads(body)
        batch = isinstance(payload, list)
        calls: list[dict[str, Any]] = payload if batch else [payload]
        methods = tuple(str(c.get("method")) for c in calls)
        spans = tuple(self._span(c) for c in calls if c.get("method") == "eth_getLogs")
        limited = self._rate_limit(batch, calls[0].get("id"))
        if limited is not None:
            self._record(methods, batch, "rate_limited", spans)
            return limited
        lim = self.limits
        if batch and lim.max_batch is not None and len(calls) > lim.max_batch:
            self._record(methods, batch, "batch_refused", spans)
            if lim.batch_refusal == "http413":
                return 413, {"Content-Type": "text/plain"}, b"Request Entity Too Large"
            if lim.batch_refusal == "geth":
                first = {"jsonrpc": "2.0", "id": calls[0].get("id"),
                         "error": {"code": -32600, "message": "batch too large"}}
                return _json(200, [first])
            return _json(200, {"jsonrpc": "2.0", "id": None, "error": {
                "code": -32005, "message": "batch size too large",
                "data": f"Exceeded max limit of {lim.max_batch}"}})
        replies: dict[int, dict[str, Any]] = {}
        forward: list[dict[str, Any]] = []
        outcome = "ok"
        for n, call in enumerate(calls):
            if call.get("method") == "eth_getLogs" and lim.max_log_blocks is not None:
                span = self._span(call)
                if span > lim.max_log_blocks:
                    outcome = "range_refused"
                    replies[n] = _error(call, -32005,
                                        f"query exceeds max block range {lim.max_log_blocks}")
                    continue
            forward.append({**call, "id": n})
        if forward:
            upstream = requests.post(self.upstream, json=forward, timeout=30).json()
            for reply in upstream:
                n = int(reply["id"])
                call = calls[n]
                result = reply.get("result")
                if (
                    call.get("method") == "eth_getLogs"
                    and lim.max_log_results is not None
                    and isinstance(result, list)
                    and len(result) > lim.max_log_results
                ):
                    outcome = "results_refused"
                    replies[n] = _error(call, -32005,
                                        f"query returned more than {lim.max_log_results} results")
                    continue
                replies[n] = {**reply, "id": call.get("id")}
        self._record(methods, batch, outcome, spans)
        ordered = [replies[n] for n in range(len(calls))]
        return _json(200, ordered if batch else ordered[0])

    def _rate_limit(self, batch: bool, first_id: Any) -> tuple[int, dict[str, str], bytes] | None:
        lim = self.limits
        if lim.rate_every is None:
            return None
        with self._lock:
            if batch:
                self._batches += 1
                count = self._batches
            else:
                self._singles += 1
                count = self._singles
            if count % lim.rate_every:
                return None
            if lim.rate_budget is not None and self._rate_limited[batch] >= lim.rate_budget:
                return None
            self._rate_limited[batch] += 1
        if lim.rate_style == "http":
            headers = {} if lim.retry_after is None else {"Retry-After": lim.retry_after}
            status, head, body = _json(429, {"jsonrpc": "2.0", "id": 1, "error": {
                "code": -32005, "message": "project ID request rate exceeded"}})
            return status, {**head, **headers}, body
        if batch:
            return _json(200, {"jsonrpc": "2.0", "id": None, "error": {
                "code": 429, "message": "Too many requests"}})
        return _json(200, {"jsonrpc": "2.0", "id": first_id, "error": {
            "code": -32005, "message": "limit exceeded", "data": {"backoff_seconds": 0}}})

    def _span(self, call: dict[str, Any]) -> int:
        f = call["params"][0]
        return self._block(f.get("toBlock", "latest")) - self._block(f.get("fromBlock")) + 1

    def _block(self, tag: Any) -> int:
        if tag in (None, "earliest"):
            return 0
        if isinstance(tag, str) and tag.startswith("0x"):
            return int(tag, 16)
        if isinstance(tag, int):
            return tag
        reply = requests.post(self.upstream, json={"jsonrpc": "2.0", "id": 1,
                                                   "method": "eth_blockNumber", "params": []},
                              timeout=30).json()
        return int(reply["result"], 16)

    def _record(
        self, methods: tuple[str, ...], batch: bool, outcome: str, spans: tuple[int, ...]
    ) -> None:
        with self._lock:
            self.seen.append(Seen(methods, batch, outcome, spans, time.monotonic()))


def _error(call: dict[str, Any], code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call.get("id"), "error": {"code": code, "message": message}}


def _json(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


@contextmanager
def running_proxy(upstream: str, limits: ProxyLimits) -> Iterator[RpcProxy]:
    """The proxy serving on a free 127.0.0.1 port, always stopped on exit."""
    proxy = RpcProxy(upstream, limits)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                status, headers, reply = proxy.answer(body)
            except Exception as exc:  # the test sees a 500, not a hang
                status, headers, reply = 500, {"Content-Type": "text/plain"}, str(exc).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    with serving(server):
        yield proxy


# ------------------------------------------------------------------ assertions


def assert_batches_refused_then_respected(proxy: RpcProxy) -> None:
    """Some batch was refused; from the first refusal on, batches were refused only until one
    was accepted, then every batch stayed within the cap (the size that works is remembered)."""
    cap = proxy.limits.max_batch
    assert cap is not None
    batches = [s for s in proxy.batches() if s.outcome != "rate_limited"]
    first = next((i for i, s in enumerate(batches) if s.outcome == "batch_refused"), None)
    assert first is not None, "no batch was refused"
    after = batches[first:]
    ok = next((i for i, s in enumerate(after) if s.outcome != "batch_refused"), len(after))
    assert all(s.outcome == "batch_refused" for s in after[:ok])
    assert all(s.outcome != "batch_refused" and s.size <= cap for s in after[ok:]), [
        (s.size, s.outcome) for s in after
    ]
    refused = [s.size for s in after[:ok]]
    assert all(b <= a // 2 for a, b in itertools.pairwise(refused)), refused


def assert_ranges_refused_then_respected(proxy: RpcProxy) -> None:
    """Some eth_getLogs range was refused as too wide; from the first refusal on, ranges were
    refused only until one was accepted, then no range exceeded the cap."""
    cap = proxy.limits.max_log_blocks
    assert cap is not None
    calls = [(span, outcome) for span, outcome in proxy.log_calls() if outcome != "rate_limited"]
    first = next((i for i, (_, o) in enumerate(calls) if o == "range_refused"), None)
    assert first is not None, "no log range was refused"
    after = calls[first:]
    ok = next((i for i, (_, o) in enumerate(after) if o != "range_refused"), len(after))
    assert ok < len(after), after
    assert all(o != "range_refused" and span <= cap for span, o in after[ok:]), after


def assert_rate_limits_hit_then_retried(proxy: RpcProxy) -> None:
    """Some requests were rate-limited, and each was sent again (the same methods) next."""
    limited = [i for i, s in enumerate(proxy.seen) if s.outcome == "rate_limited"]
    assert limited, "no request was rate-limited"
    for i in limited:
        assert i + 1 < len(proxy.seen), "a rate-limited request was never sent again"
        assert proxy.seen[i + 1].methods == proxy.seen[i].methods


def assert_every_limit_hit_then_respected(proxy: RpcProxy) -> None:
    """The limits the proxy enforced were each met and then kept: batches and rate limits
    always, log ranges and result caps when the proxy's limits set them."""
    assert_batches_refused_then_respected(proxy)
    assert_rate_limits_hit_then_retried(proxy)
    if proxy.limits.max_log_blocks is not None:
        assert_ranges_refused_then_respected(proxy)
    if proxy.limits.max_log_results is not None:
        assert "results_refused" in proxy.outcomes()


# ------------------------------------------------------------------ a history to read


def busy_history(env: Any, escrows: int = 4) -> list[int]:
    """A few escrows with every kind of event the readers handle (signed confirmation, breach
    report and settlement, cancellation, a token escrow), spread over blocks with empty blocks
    between them: enough logs, blocks and views for every limit to bite."""
    from tests.support import CHALLENGE, ETH

    e = env.escrow
    ids: list[int] = []
    first = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(first, 0)
    signed = env.confirmation(first, 0, 4)
    e.confirm_with_sig(signed, env.sign(signed), env.parties.relayer.address)
    breach_id, _ = e.report_breach(first, 1, 0, b"\x01" * 32, env.oracle)
    env.advance(CHALLENGE + 1)
    e.finalize_breach(first, breach_id, env.client)
    ids.append(first)
    _mine(env, 6)
    cancelled = env.create()
    e.cancel(cancelled, env.client)
    ids.append(cancelled)
    _mine(env, 6)
    token = env.create_active(env.params((5 * 10**6, 7 * 10**6), token=env.token))
    e.confirm(token, 0, 3, None, env.client)
    ids.append(token)
    for _ in range(max(0, escrows - 3)):
        _mine(env, 3)
        ids.append(env.create_active())
    _mine(env, 5)
    return ids


def _mine(env: Any, blocks: int) -> None:
    env.w3.provider.make_request("hardhat_mine", [hex(blocks)])
