"""A TCP proxy on 127.0.0.1 in front of the node that injects connection faults, switched at run
time (`FaultProxy.mode`). Unlike tests/chain/rpc_proxy.py, which answers like a hosted provider
at the JSON-RPC level, this one breaks the transport under the HTTP client:

- `pass`: bytes flow both ways untouched;
- `drop`: a request is not forwarded; the client's connection is reset (RST) at once;
- `delay`: each request is forwarded after `delay` seconds;
- `cut`: the request reaches the node (a transaction is broadcast), but the answer is cut after
  its first `cut_after` bytes with a reset: the client cannot tell whether it arrived;
- `freeze`: the request is held, unanswered, while the mode stays `freeze` (a node that accepts
  connections and never answers), then the connection is closed.

The mode is read for every request (every chunk the client sends), so connections kept alive by
the client's pool are hit too. `counts` says how many requests each fault hit (`cut_send`:
how many of the cut ones broadcast a transaction)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["pass", "drop", "delay", "cut", "freeze"]
FAULTS: tuple[Mode, ...] = ("drop", "delay", "cut", "freeze")


def _reset(sock: socket.socket) -> None:
    """Closes `sock` with a TCP RST (SO_LINGER 0) rather than a FIN."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _wake(sock: socket.socket) -> None:
    """Ends a `recv` another thread is blocked in on `sock` (it returns b""), sending nothing
    (closing the socket alone would not wake it, nor send anything while it waits)."""
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RD)


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    mode: Mode = "pass"
    delay: float = 0.3
    cut_after: int = 20
    url: str = ""
    counts: Counter[str] = field(default_factory=Counter)
    stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _open: set[socket.socket] = field(default_factory=set)

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def _serve(self, client: socket.socket) -> None:
        try:
            node = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            _reset(client)
            return
        node.settimeout(None)
        with self._lock:
            self._open |= {client, node}
        cut = threading.Event()
        back = threading.Thread(target=self._answers, args=(node, client, cut), daemon=True)
        back.start()
        try:
            while not self.stopping.is_set():
                try:
                    chunk = client.recv(65_536)
                except OSError:
                    break
                if not chunk:
                    break
                mode = self.mode
                if mode == "drop":
                    self._count("drop")
                    break
                if mode == "freeze":
                    self._count("freeze")
                    while self.mode == "freeze" and not self.stopping.is_set():
                        time.sleep(0.02)
                    break
                if mode == "delay":
                    self._count("delay")
                    time.sleep(self.delay)
                elif mode == "cut":
                    self._count("cut")
                    if b"eth_sendRawTransaction" in chunk:  # the node takes it; the answer is lost
                        self._count("cut_send")
                    cut.set()
                try:
                    node.sendall(chunk)
                except OSError:
                    break
        finally:
            _reset(client)
            _wake(node)
            node.close()
            with self._lock:
                self._open -= {client, node}
            back.join(5)

    def _answers(self, node: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        """Node -> client; after a `cut` request, only the first `cut_after` bytes, then RST."""
        while True:
            try:
                chunk = node.recv(65_536)
            except OSError:
                return
            if not chunk:
                return
            try:
                if cut.is_set():
                    client.sendall(chunk[: self.cut_after])
                    _wake(client)  # the request side then resets the connection
                    return
                client.sendall(chunk)
            except OSError:
                return

    def close_all(self) -> None:
        with self._lock:
            for sock in list(self._open):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def fault_proxy(upstream: tuple[str, int]) -> Iterator[FaultProxy]:
    """The proxy on a free 127.0.0.1 port in front of `upstream`; stopped (every connection
    closed) afterwards."""
    proxy = FaultProxy(upstream)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    proxy.url = f"http://127.0.0.1:{server.getsockname()[1]}"

    def accept() -> None:
        while not proxy.stopping.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            threading.Thread(target=proxy._serve, args=(client,), daemon=True).start()

    acceptor = threading.Thread(target=accept, name="fault-proxy", daemon=True)
    acceptor.start()
    try:
        yield proxy
    finally:
        proxy.stopping.set()
        acceptor.join(5)
        server.close()
        proxy.close_all()
