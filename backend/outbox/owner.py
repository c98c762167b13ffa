"""One process per (sender, chain, account): a sender's worker holds a lock for its whole life, a
PostgreSQL session advisory lock or, on SQLite, an exclusive lock on a file in the data dir
(`<sender>-<chain id>-<account>.lock`). A second worker of the same sender refuses to start
instead of racing the first for nonces."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from hashlib import sha256

from sqlalchemy import text

from backend.errors import ConfigurationError
from backend.services import Services


class SenderBusyError(ConfigurationError):
    """Another process already runs this sender from this account on this chain."""

    code = "sender_busy"

    def __init__(self, sender: str, account: str, chain_id: int) -> None:
        self.sender = sender
        self.account = account
        self.chain_id = chain_id
        super().__init__(
            f"another {sender} already sends from {account} on chain {chain_id}; "
            "only one process may own its nonce"
        )


def lock_key(sender: str, chain_id: int, account: str) -> int:
    """A signed 64-bit advisory-lock key for (sender, chain, account)."""
    digest = sha256(f"quality-escrow {sender} {chain_id} {account.lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def ownership(services: Services, sender: str, account: str) -> Iterator[None]:
    """Holds the lock of (`sender`, the chain, `account`) while the block runs.

    Raises `SenderBusyError` at once when another process (or thread) holds it."""
    engine = services.engine
    if engine.dialect.name == "postgresql":
        key = lock_key(sender, services.chain_id, account)
        with engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            if not got:
                raise SenderBusyError(sender, account, services.chain_id)
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    path = services.settings.data_dir / f"{sender}-{services.chain_id}-{account.lower()}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise SenderBusyError(sender, account, services.chain_id) from exc
        yield
    finally:
        os.close(fd)
