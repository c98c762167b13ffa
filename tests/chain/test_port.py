"""`escrow up` / `scripts/run` started again within a minute: connections of the earlier run
that linger in TIME_WAIT must not make the local node's port look taken (Node.js listens with
SO_REUSEADDR), while a port something still listens on is taken."""

from __future__ import annotations

import socket

from backend.chain.node import HOST, port_is_free


def _leave_time_wait() -> int:
    """A port on which the only trace of an earlier server (listening as Node.js does, with
    SO_REUSEADDR) is a connection in TIME_WAIT: the server accepts one connection and closes its
    side first, then stops listening."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((HOST, 0))
    server.listen(1)
    port: int = server.getsockname()[1]
    client = socket.create_connection((HOST, port), timeout=5)
    accepted, _ = server.accept()
    accepted.close()  # the side that closes first keeps the TIME_WAIT on `port`
    client.recv(1)  # sees the FIN
    client.close()
    server.close()
    return port


def test_a_port_held_only_by_time_wait_connections_is_free() -> None:
    port = _leave_time_wait()
    # a bind without SO_REUSEADDR would still refuse it: the state the fault came from
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:
        try:
            plain.bind((HOST, port))
            plain_refused = False
        except OSError:
            plain_refused = True
    assert plain_refused
    assert port_is_free(port)


def test_a_port_something_listens_on_is_not_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind((HOST, 0))
        server.listen(1)
        assert not port_is_free(server.getsockname()[1])
