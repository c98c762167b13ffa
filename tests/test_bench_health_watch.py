"""`scripts/bench_api.py` `HealthWatch`: health asked from a thread of its own during a burst,
each answer timed and a refusal or a lost connection counted, on a loopback stand-in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support import load_script, serving

bench_api = load_script(Path(__file__).resolve().parents[1] / "scripts" / "bench_api.py")


@contextmanager
def health_server(status: int) -> Iterator[tuple[str, list[str]]]:
    """A server answering every GET with `status`; yields its base URL and the paths asked."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with serving(server):
        yield f"http://127.0.0.1:{server.server_address[1]}", asked


def test_health_is_asked_every_quarter_second_while_watching_and_then_no_more() -> None:
    with health_server(200) as (base, asked):
        watch = bench_api.HealthWatch(base)
        with watch.watching():
            time.sleep(0.8)
        seen = len(asked)
        time.sleep(0.3)
        assert len(asked) == seen  # stopped with the block
    assert 2 <= len(watch.latencies) == seen <= 5
    assert watch.failures == 0
    assert set(asked) == {"/api/health"}
    assert all(0 < latency < 0.8 for latency in watch.latencies)


def test_a_refused_health_answer_is_counted_as_a_failure() -> None:
    with health_server(503) as (base, _asked):
        watch = bench_api.HealthWatch(base)
        with watch.watching():
            time.sleep(0.3)
    assert watch.failures == len(watch.latencies) >= 1


def test_a_server_that_is_not_there_is_a_failure_not_a_crash() -> None:
    watch = bench_api.HealthWatch("http://127.0.0.1:9")
    with watch.watching():
        time.sleep(0.3)
    assert watch.failures == len(watch.latencies) >= 1
