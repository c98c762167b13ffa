"""One relayer process per (chain, account): the worker holds a lock for its whole life, a
PostgreSQL session advisory lock or, on SQLite, an exclusive lock on a file in the data dir. A
second relayer refuses to start instead of racing the first for nonces."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from hashlib import sha256

from sqlalchemy import text

from backend.errors import ConfigurationError
from backend.services import Services


class RelayerBusyError(ConfigurationError):
    code = "relayer_busy"

    def __init__(self, account: str, chain_id: int) -> None:
        self.account = account
        self.chain_id = chain_id
        super().__init__(
            f"another relayer already sends from {account} on chain {chain_id}; "
            "only one process may own its nonce"
        )


def lock_key(chain_id: int, account: str) -> int:
    """A signed 64-bit advisory-lock key for (chain, account)."""
    digest = sha256(f"quality-escrow relayer {chain_id} {account.lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def relayer_ownership(services: Services, account: str) -> Iterator[None]:
    engine = services.engine
    if engine.dialect.name == "postgresql":
        key = lock_key(services.chain_id, account)
        with engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            if not got:
                raise RelayerBusyError(account, services.chain_id)
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    path = services.settings.data_dir / f"relayer-{services.chain_id}-{account.lower()}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RelayerBusyError(account, services.chain_id) from exc
        yield
    finally:
        os.close(fd)
