"""No request body can kill the service: bodies are bounded in size and JSON
nesting before any parser sees them (`backend.api.body_bounds`), on every route that takes one,
and the recursion limit the chain libraries raise on import is put back.

The live tests serve the app from a process of its own (`tests/api/live_app.py`), so a crash
shows as a dead child (SIGSEGV, as observed before the fix) instead of ending the test run."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from backend.api.app import create_app
from backend.api.body_bounds import (
    BODY_RULES,
    MAX_JSON_BODY_BYTES,
    MAX_JSON_DEPTH,
    BodyBounds,
    NestingScan,
)
from backend.api.routes.measurements import MAX_MEASUREMENTS_BYTES
from backend.chain.connect import RECURSION_LIMIT
from backend.confirmations.reviews import MAX_ATTACHMENT_BYTES
from backend.oracle.terms_store import MAX_TERMS_BYTES
from backend.paths import REPO_ROOT
from tests.api.support import Api
from tests.support import DAY

#: the observed attack: about 200 KB of JSON nested 100,000 levels deep
DEEP = b"[" * 100_000 + b"]" * 100_000
#: a process's start (imports, deploying the escrow on the in-process chain, migrations)
START_LIMIT = 60.0
#: values for the path parameters of the routes found (the bounds act before routing)
PATH_VALUES = {"escrow_id": "1", "milestone": "0", "action": "accept", "subscription_id": "1"}
TERMS = {
    "version": 1,
    "title": "Managed hosting SLA",
    "period_seconds": DAY,
    "grace_seconds": 3_600,
    "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
}


# ---------------------------------------------------------------------- the live process


@dataclass
class LiveProcess:
    popen: subprocess.Popen[bytes]
    host: str
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def routes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in json.loads((self.data_dir / "routes.json").read_text())]

    def answers(self) -> bool:
        """The health route answers 200 and the process is alive."""
        if self.popen.poll() is not None:
            return False
        try:
            return httpx.get(f"{self.url}/api/health", timeout=10).status_code == 200
        except httpx.TransportError:
            return False

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines()
                        if line.startswith("VmRSS:")))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def live_app(tmp_path: Path, *flags: str) -> Iterator[LiveProcess]:
    """`tests/api/live_app.py` in a child process, once its health route answers."""
    port = _free_port()
    with (tmp_path / "live.log").open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "tests.api.live_app", str(port), str(tmp_path), *flags],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
        live = LiveProcess(popen, "127.0.0.1", port, tmp_path)
        try:
            deadline = time.monotonic() + START_LIMIT
            while not live.answers():
                assert popen.poll() is None, (tmp_path / "live.log").read_text()
                assert time.monotonic() < deadline, "the live app did not start"
                time.sleep(0.1)
            yield live
        finally:
            if popen.poll() is None:
                popen.terminate()
                try:
                    popen.wait(10)
                except subprocess.TimeoutExpired:  # pragma: no cover - a stuck shutdown
                    popen.kill()
                    popen.wait(10)


def raw_request(
    live: LiveProcess, method: str, path: str, headers: dict[str, str], chunks: Iterable[bytes]
) -> tuple[int, dict[str, Any]]:
    """One HTTP/1.1 request over a plain socket (so a body can be cut off, declared larger than
    sent, or chunked without a length); sending stops when the server stops reading. The status
    and JSON body of the answer; `ConnectionError` when the server closed without one."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {live.host}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    ) + "\r\n"
    chunked = headers.get("Transfer-Encoding") == "chunked"
    with socket.create_connection((live.host, live.port), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in chunks:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end: the answer is waiting
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    if not answer:
        raise ConnectionError(f"no answer to {method} {path}: the connection was closed")
    status_line, _, rest = answer.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body)


def _length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


def _fill(path: str) -> str:
    for name, value in PATH_VALUES.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no value for a parameter of {path}"
    return path


def _refusal(answer: tuple[int, dict[str, Any]], *statuses: int) -> str:
    status, body = answer
    assert status in statuses, answer
    assert set(body) == {"error", "detail"}, body
    return str(body["error"])


def test_every_route_that_takes_a_body_refuses_hostile_bodies_and_the_service_lives_on(
    tmp_path: Path,
) -> None:
    bounds = BodyBounds(echo_app([]))  # for its rules
    with live_app(tmp_path) as live:
        routes = live.routes()
        # every POST/DELETE of the app, found by walking its routers (12 when this was written)
        assert ("POST", "/api/escrows/prepare") in routes and len(routes) >= 12, routes
        rss_before = live.rss_kib()
        for method, template in routes:
            path = _fill(template)
            limit = bounds.rule_for(path).limit
            # the observed attack, with and without a JSON content type (the raw-body routes
            # parse any): refused as too deep, or as over the route's own tighter limit
            for kind in ("application/json", "text/plain", None):
                headers = {"Content-Length": str(len(DEEP))}
                if kind:
                    headers["Content-Type"] = kind
                code = _refusal(raw_request(live, method, path, headers, [DEEP]), 400, 413)
                assert code in ("malformed", "too_large"), (method, path, kind)
                assert live.answers(), (method, path, kind)
            # a declared length over the bound: refused before a byte is read
            declared = {"Content-Length": str(limit + 1), "Content-Type": "application/json"}
            assert _refusal(raw_request(live, method, path, declared, []), 413) == "too_large"
            assert live.answers(), (method, path)
            # chunked without a length, streamed until refused (64 KiB past the bound at most)
            chunks = [b" " * 65536] * (limit // 65536 + 2)
            kind = "application/json"
            if bounds.rule_for(path).multipart:  # one file part that never ends
                kind = "multipart/form-data; boundary=b"
                chunks.insert(0, b'--b\r\nContent-Disposition: form-data; name="file"; '
                                 b'filename="a.txt"\r\nContent-Type: text/plain\r\n\r\n')
            streamed = {"Transfer-Encoding": "chunked", "Content-Type": kind}
            assert _refusal(raw_request(live, method, path, streamed, chunks), 413) == "too_large"
            assert live.answers(), (method, path)
        # still serving: a valid document is stored
        stored = httpx.post(f"{live.url}/api/terms", json=TERMS, timeout=10)
        assert stored.status_code == 201, stored.text
        assert live.rss_kib() < rss_before + 200 * 1024, (rss_before, live.rss_kib())


def test_a_deep_body_killed_the_service_without_its_bounds(tmp_path: Path) -> None:
    """The observed failure, so the test above can fail: the app as it was (no bounds, the
    recursion limit py_ecc set) dies with SIGSEGV on one anonymous POST."""
    with live_app(tmp_path, "--unbounded") as live:
        with pytest.raises((httpx.TransportError, ConnectionError)):
            raw_request(live, "POST", "/api/escrows/prepare",
                        {"Content-Length": str(len(DEEP)), "Content-Type": "application/json"},
                        [DEEP])
        assert live.popen.wait(10) == -signal.SIGSEGV


# ---------------------------------------------------------------------- the middleware alone


def echo_app(seen: list[bytes]) -> Any:
    """An ASGI app that reads the whole body (recording each chunk it got) and answers its
    length."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            seen.append(message.get("body", b""))
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(len(body)).encode()})

    return app


def test_nesting_up_to_the_limit_passes_and_one_level_more_never_reaches_the_app() -> None:
    seen: list[bytes] = []
    client = TestClient(BodyBounds(echo_app(seen)))
    ok = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert client.post("/x", content=ok).json() == len(ok)
    seen.clear()
    deep = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    refused = client.post("/x", content=deep)
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "malformed", "detail": f"malformed body: JSON nested deeper than "
        f"{MAX_JSON_DEPTH} levels",
    }
    assert seen == []  # the app got `http.disconnect` instead of the body
    # brackets inside strings, escaped quotes and backslashes do not count
    text = json.dumps({"a": "[{" * 500 + '\\"[', "b\\": ["]]]", "[[["]}).encode()
    assert client.post("/x", content=text).json() == len(text)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16", "utf-32"])
def test_a_body_that_is_not_utf8_is_refused_before_its_brackets_could_hide(encoding: str) -> None:
    """Observed: in UTF-16 a `\\"` inside a string lost the scan its place, and a body nested
    900 deep reached the route's parser. JSON between systems is UTF-8 (RFC 8259 8.1)."""
    seen: list[bytes] = []
    client = TestClient(BodyBounds(echo_app(seen)))
    hidden = '{"a":"\\"","b":' + "[" * 900 + "]" * 900 + "}"
    refused = client.post("/x", content=hidden.encode(encoding))
    assert refused.status_code == 400
    assert refused.json()["detail"] == "malformed body: JSON must be UTF-8 (RFC 8259 section 8.1)"
    assert seen == []
    # the same document in UTF-8 is followed level by level, and refused for its depth
    assert "nested deeper" in client.post("/x", content=hidden.encode()).json()["detail"]


def call(app: Any, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    """One POST through the ASGI `app`, its body in `chunks` (each its own `http.request`
    message, as a server passes a chunked body on); the status and the JSON answer."""
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/x", "headers": headers,
             "query_string": b"", "http_version": "1.1"}
    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def test_a_body_streamed_past_the_limit_is_refused_with_413_whatever_the_app_answers() -> None:
    seen: list[bytes] = []
    bounded = BodyBounds(echo_app(seen), default_limit=1000)
    assert call(bounded, [b" " * 600] * 3, []) == (413, {
        "error": "too_large", "detail": "request body is 1200, over the limit of 1000"
    })
    assert seen == [b" " * 600]  # the chunk past the limit never reached the app
    seen.clear()
    declared = call(bounded, [b" " * 600] * 3, [(b"content-length", b"1800")])
    assert declared[0] == 413 and seen == []  # refused before reading
    assert call(bounded, [b" " * 500] * 2, []) == (200, 1000)


def test_the_nesting_scan_agrees_with_the_json_parser_however_the_body_is_cut() -> None:
    rng = random.Random(12)
    strings = ['a"b\\', '[{"', "\\\\", "\\u005b", "\\" * 5 + '"[', "}]"]

    def document(depth: int) -> Any:
        roll = rng.random()
        if depth > 9 or roll < 0.3:
            return rng.choice([*strings, 1, None])
        if roll < 0.65:
            return [document(depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(strings) + str(i): document(depth + 1) for i in range(rng.randint(0, 3))}

    def nesting(value: Any) -> int:
        if isinstance(value, list | dict):
            inner = value if isinstance(value, list) else list(value.values())
            return 1 + max((nesting(v) for v in inner), default=0)
        return 0

    def passes(body: bytes, size: int, limit: int) -> bool:
        scan = NestingScan(limit)
        return all(scan.feed(body[i : i + size]) for i in range(0, len(body), size))

    for _ in range(400):
        value = document(0)
        body, depth = json.dumps(value).encode(), nesting(value)
        for limit in {max(depth - 1, 0), depth}:
            for size in (1, 2, 5, 64, len(body) or 1):
                assert passes(body, size, limit) == (depth <= limit), (body, size, limit)


def test_the_bounds_leave_room_for_every_routes_own_limit() -> None:
    bounds = BodyBounds(echo_app([]))
    assert MAX_TERMS_BYTES <= MAX_JSON_BODY_BYTES == bounds.rule_for("/api/terms").limit
    assert bounds.rule_for("/api/escrows/7/measurements").limit == MAX_MEASUREMENTS_BYTES
    upload = bounds.rule_for("/api/attachments")
    assert upload.multipart and upload.limit > MAX_ATTACHMENT_BYTES
    assert [rule.path for rule in BODY_RULES] == ["/api/attachments",
                                                  "/api/escrows/[^/]+/measurements"]


def test_create_app_puts_back_the_recursion_limit_the_chain_libraries_raised(api: Api) -> None:
    import py_ecc  # noqa: F401  (raised it to 100,000 on import)

    sys.setrecursionlimit(100_000)
    create_app(api.services)
    assert sys.getrecursionlimit() == RECURSION_LIMIT
