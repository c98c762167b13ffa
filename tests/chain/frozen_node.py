"""A frozen node on 127.0.0.1: it accepts TCP connections, reads what is sent, and never answers
(a node process stopped with SIGSTOP, a gateway whose backend hangs). Every connection it took is
closed when the context ends, so the clients still waiting fail then."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class FrozenNode:
    url: str = ""
    #: connections accepted so far
    accepted: int = 0
    _held: list[socket.socket] = field(default_factory=list)


@contextmanager
def frozen_node() -> Iterator[FrozenNode]:
    """The frozen node on a free loopback port (`FrozenNode.url`), stopped on exit."""
    node = FrozenNode()
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    node.url = f"http://127.0.0.1:{server.getsockname()[1]}"
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            readable, _, _ = select.select([server, *node._held], [], [], 0.05)
            for sock in readable:
                if sock is server:
                    conn, _ = server.accept()
                    node._held.append(conn)
                    node.accepted += 1
                else:
                    try:
                        data = sock.recv(65536)  # read and drop: never an answer
                    except OSError:
                        data = b""
                    if not data:  # the client gave up
                        node._held.remove(sock)
                        sock.close()

    thread = threading.Thread(target=serve, name="frozen-node", daemon=True)
    thread.start()
    try:
        yield node
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in node._held:
            conn.close()
        server.close()
