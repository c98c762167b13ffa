"""What an outbox still has to do, as `escrow status` shows it: its rows by status, how many
wait, and the oldest waiting one. Each outbox counts its own: every transaction sender through
`Sender.backlog` (`backend/outbox/sender.py`: the relayer's confirmation requests, the oracle's
breach reports), the webhook dispatcher through `delivery_backlog`
(`backend/notify/dispatch.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Backlog", "WaitingItem"]


@dataclass(frozen=True)
class WaitingItem:
    """One item an outbox has not done yet."""

    #: the row's id (a number, or a webhook delivery's UUID), as text
    id: str
    status: str
    #: unix seconds (service time) the item was queued
    since: int
    #: what it is about: `escrow 5 milestone 0`, `milestone_settled:31337:5:0` ...
    about: str

    def to_json(self, now: int) -> dict[str, Any]:
        """`{id, status, since, age_seconds, about}`; `age_seconds` counted to `now`."""
        return {"id": self.id, "status": self.status, "since": self.since,
                "age_seconds": max(0, now - self.since), "about": self.about}


@dataclass(frozen=True)
class Backlog:
    """An outbox's rows by status (every status it knows, 0 included), how many of them are
    still to be done (`waiting`), and the oldest of those (None when none waits)."""

    counts: dict[str, int]
    waiting: int
    oldest: WaitingItem | None

    def to_json(self, now: int) -> dict[str, Any]:
        return {"counts": dict(self.counts), "waiting": self.waiting,
                "oldest": None if self.oldest is None else self.oldest.to_json(now)}
