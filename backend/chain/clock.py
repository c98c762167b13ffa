"""The one clock of the service: chain time and service time.

- **chain time**: the latest block's timestamp (unix seconds). The contract measures its windows
  (review, challenge, arbitration, signature deadlines) against `block.timestamp`, so every check
  that predicts what the contract will say uses it.
- **service time**: the wall clock of this process (unix seconds), for what only the service
  records or decides: row timestamps, nonce and token expiry, webhook schedules. It is injectable
  (`Clock(w3, wall=...)`) so tests can fix it.
- **now**: the later of the two, a lower bound of the next block's timestamp (a block is never
  older than its parent, and a fresh block on a live chain carries about the wall clock; a dev
  chain moved forward with `evm_increaseTime` runs ahead of the wall clock).

Chain reads go through `from_node`: a node that does not answer raises `NodeUnavailable` (503),
except in `now_or_service_time`, which falls back to service time for checks that must not fail
because the node is down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from web3 import Web3

from backend.chain.errors import NodeUnavailable, from_node

#: a wall clock: unix seconds, fractions allowed
WallClock = Callable[[], float]


def system_wall() -> float:
    """`time.time()`: the default wall clock."""
    return time.time()


@dataclass(frozen=True)
class Clock:
    """Chain time of `w3` (None: no chain, service time only) and service time of `wall`."""

    w3: Web3 | None
    wall: WallClock = field(default=system_wall)

    def service_time(self) -> int:
        """The wall clock in whole unix seconds."""
        return int(self.wall())

    def chain_time(self) -> int:
        """The latest block's timestamp (unix seconds). Raises `NodeUnavailable` when the node
        does not answer, and `NodeUnavailable` too when there is no chain (`w3` is None)."""
        w3 = self.w3
        if w3 is None:
            raise NodeUnavailable("latest block", "no node configured")
        return from_node("latest block", lambda: int(w3.eth.get_block("latest")["timestamp"]))

    def now(self) -> int:
        """max(chain time, service time): a lower bound of the next block's timestamp.
        Raises `NodeUnavailable` when the node does not answer."""
        return max(self.chain_time(), self.service_time())

    def now_or_service_time(self) -> int:
        """`now()`, or service time alone when there is no chain or the node does not answer."""
        try:
            return self.now()
        except NodeUnavailable:
            return self.service_time()


def chain_time(w3: Web3) -> int:
    """The latest block's timestamp of `w3` (`Clock.chain_time`)."""
    return Clock(w3).chain_time()


def service_time() -> int:
    """This process's wall clock in whole unix seconds (`Clock.service_time`)."""
    return Clock(None).service_time()
