"""The demo escrows `escrow up` seeds on a first start of the local chain (31337, a contract
without any escrow yet), so the dashboard shows something real: one proposed, one delivered and
waiting for the client's review, one settled with a rating, one breached (an oracle report on
the chain). Each title starts with "Demo:" and names its state.

They are made through the REST API by the dev accounts (client #1, provider #2, arbiter #4) as
wallets would (`backend/escrows/scripted.py`). The breach is the service's own: the operator
issues a measurement token, the monitoring posts samples of a one-hour period (the shortest the
service accepts, `ESCROW_MIN_PERIOD_SECONDS`) that miss the uptime KPI, the chain's clock moves
past the period's close (plus its grace), and the oracle worker, which judges periods by chain
time, reports it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.client import ServiceClient
from backend.config import Settings
from backend.errors import QualityEscrowError
from backend.escrows.scripted import (
    DAY,
    ETH,
    IssueToken,
    Stage,
    Stopped,
    operator_token_issuer,
    wait_until_answering,
)

__all__ = [
    "BREACH_PERIOD_SECONDS",
    "Seeded",
    "Seeding",
    "seed_demo_escrows",
    "seed_rules",
    "start_seeding",
]

logger = logging.getLogger(__name__)

#: the breached demo escrow's KPI period: the shortest allowed (`ESCROW_MIN_PERIOD_SECONDS`'s
#: default), so the clock moves only an hour
BREACH_PERIOD_SECONDS = 3_600
BREACH_GRACE_SECONDS = 60


@dataclass(frozen=True)
class Seeded:
    """One seeded escrow: its id, the state it was made to show, its title and page."""

    escrow_id: int
    state: str
    title: str
    url: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.escrow_id, "state": self.state, "title": self.title, "url": self.url}


def seed_rules(now: int) -> dict[str, Any]:
    """The contract's rules of the demo escrows (`POST /api/escrows/prepare`'s `rules`), with
    the delivery deadline 30 days after `now` (chain time)."""
    return {
        "rating_payout_bps": [2_000, 4_000, 6_000, 8_000, 10_000],
        "breach_refund_bps": 500,
        "streak_refund_bps": 1_000,
        "incident_refund_bps": 2_000,
        "max_refund_bps": 3_000,
        "review_period": 3 * DAY,
        "challenge_period": 2 * DAY,
        "arbitration_period": 5 * DAY,
        "delivery_deadline": now + 30 * DAY,
    }


def _terms(title: str, kpi: dict[str, Any], period_seconds: int,
           criteria: list[str], **extra: Any) -> dict[str, Any]:
    return {"version": 1, "title": title, "period_seconds": period_seconds, "kpis": [kpi],
            "acceptance_criteria": criteria, **extra}


PROPOSED = _terms(
    "Demo: office cleaning (proposed)",
    {"id": "rooms_cleaned_pct", "aggregate": "mean", "op": ">=", "threshold": 95},
    7 * DAY, ["Every office and kitchen cleaned twice a week", "Waste sorted and taken out"],
)
DELIVERED = _terms(
    "Demo: website redesign (delivered, waiting for review)",
    {"id": "page_load_ms", "aggregate": "p90", "op": "<=", "threshold": 2_000},
    DAY, ["Home and pricing pages in the new design", "Lighthouse score of 90 or more"],
)
SETTLED = _terms(
    "Demo: logo design (settled)",
    {"id": "revision_rounds", "aggregate": "max", "op": "<=", "threshold": 3},
    7 * DAY, ["Logo in SVG and PNG", "Colour and clear-space guide"],
)
BREACHED = _terms(
    "Demo: managed hosting (breached)",
    {"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9},
    BREACH_PERIOD_SECONDS, ["Site reachable at the agreed address"],
    grace_seconds=BREACH_GRACE_SECONDS,
)


def seed_demo_escrows(
    stage: Stage, issue_token: IssueToken, report: Callable[[Seeded], None] | None = None
) -> list[Seeded]:
    """Makes the four demo escrows on `stage` and returns them in order (proposed, delivered,
    settled, breached), calling `report` as each is ready (indexed in its state). Raises the
    client's errors (`ServiceRefusedError`, `ServiceTimeoutError`, a contract revert) and
    `Stopped` when the stage's `stop` is set."""
    done: list[Seeded] = []

    def ready(escrow_id: int, state: str, terms: dict[str, Any]) -> None:
        seeded = Seeded(escrow_id, state, str(terms["title"]), stage.url(escrow_id))
        done.append(seeded)
        if report is not None:
            report(seeded)

    rules = seed_rules(stage.chain_time())

    # proposed: the provider has not accepted yet
    escrow_id, _ = stage.create(PROPOSED, [4 * ETH // 10, 4 * ETH // 10], rules)
    ready(escrow_id, "proposed", PROPOSED)

    # delivered, waiting for the client's review (three days)
    escrow_id, _ = stage.create(DELIVERED, [6 * ETH // 10, 6 * ETH // 10], rules)
    stage.act("provider", escrow_id, "accept")
    stage.deliver(escrow_id, 0, "Demo delivery: the home and pricing pages are live on staging.")
    stage.wait_for_escrow(escrow_id, lambda d: d["milestones"][0]["state"] == "delivered")
    ready(escrow_id, "delivered", DELIVERED)

    # settled: delivered, rated 4 with a comment through the relayer; closed
    escrow_id, _ = stage.create(SETTLED, [ETH // 2], rules)
    stage.act("provider", escrow_id, "accept")
    stage.deliver(escrow_id, 0, "Demo delivery: logo files and the style guide.")
    stage.wait_for_escrow(escrow_id, lambda d: d["milestones"][0]["state"] == "delivered")
    stage.review(escrow_id, 0, 4, comment="Demo review: clean work, one round late.")
    stage.wait_for_escrow(escrow_id, lambda d: d["milestones"][0]["state"] == "settled")
    ready(escrow_id, "settled", SETTLED)

    # breached: uptime samples below 99.9 in the first period; the clock moves past its close
    escrow_id, _ = stage.create(BREACHED, [ETH, ETH], rules)
    stage.act("provider", escrow_id, "accept")
    detail = stage.wait_for_escrow(escrow_id, lambda d: d["accepted_at"] is not None)
    accepted = int(detail["accepted_at"])
    token = issue_token(escrow_id)
    # observed within 300 s of the acceptance: never ahead of the service's clock
    stage.measure(escrow_id, token, [
        {"kpi": "uptime_pct", "value": value, "observed_at": accepted + offset}
        for value, offset in ((99.2, 30), (97.5, 120), (98.4, 240))
    ])
    stage.advance_to(accepted + BREACH_PERIOD_SECONDS + BREACH_GRACE_SECONDS + 1)
    stage.wait_for_escrow(
        escrow_id, lambda d: bool(d["breaches"]),
        what=f"the oracle's breach report on demo escrow {escrow_id}",
    )
    ready(escrow_id, "breached", BREACHED)
    return done


@dataclass
class Seeding:
    """The background seeding of `escrow up`: its thread, the event that stops it, and what it
    made so far."""

    thread: threading.Thread
    stop: threading.Event
    seeded: list[Seeded] = field(default_factory=list)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Asks the seeding to stop (its waits end at once) and waits for the thread."""
        self.stop.set()
        self.thread.join(timeout)


def start_seeding(
    settings: Settings,
    api_url: str,
    rpc_url: str,
    *,
    report: Callable[[Seeded], None],
    failed: Callable[[str], None],
) -> Seeding:
    """Seeds the demo escrows in a background thread once the service at `api_url` answers,
    with wallets on the node at `rpc_url` and measurement tokens issued in the database of
    `settings`. `report(seeded)` is called per escrow; `failed(message)` once when seeding
    fails (the service keeps running). A stop asked for (`Seeding.shutdown`) ends it
    silently."""
    stop = threading.Event()
    seeding = Seeding(threading.Thread(), stop)

    def made(seeded: Seeded) -> None:
        seeding.seeded.append(seeded)
        report(seeded)

    def run() -> None:
        try:
            with ServiceClient(api_url, timeout=30.0) as api:
                wait_until_answering(api, stop)
                stage = Stage.open(api, rpc_url=rpc_url, stop=stop)
                issue = operator_token_issuer(settings, stage.w3, str(stage.config["contract"]),
                                              int(stage.config["deployment_block"]))
                seed_demo_escrows(stage, issue, made)
        except Stopped:
            return
        except QualityEscrowError as exc:
            if not stop.is_set():
                failed(f"seeding the demo escrows failed: {exc.message}")
        except Exception as exc:  # a bug: its traceback goes to the log, the service goes on
            if not stop.is_set():
                logger.exception("seeding the demo escrows failed")
                failed(f"seeding the demo escrows failed: {type(exc).__name__}: {exc}")

    seeding.thread = threading.Thread(target=run, name="seed-demo-escrows", daemon=True)
    seeding.thread.start()
    return seeding
