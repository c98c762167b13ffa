"""`escrow demo`: the whole story of one escrow, told against the running service through its
REST API (`backend/escrows/scripted.py`: the API prepares, dev-account wallets sign and send,
the service's indexer, relayer and oracle do the rest).

A managed-hosting SLA with three monthly milestones of 1 ETH. The provider accepts; the operator
issues a measurement token and the monitoring posts hourly samples. Month 1 is delivered and the
client rates it 5 with the acceptance criteria answered and a photo attached, signed (EIP-712)
and relayed by the service. Day 2 misses the uptime KPI (a kind-1 report), days 3 and 4 miss it
again (three bad days in a row: a kind-2 report), day 5 has a 95-minute outage (a kind-3 major
incident, capped by the refund limit). The provider challenges the incident report; the arbiter
rejects the challenge (upholds the report). Two days later the oracle finalizes the unchallenged
reports. Months 2 and 3 are delivered and rated 4 (sent directly) and 3 (relayed). Both parties
withdraw, and the escrow's audit, replayed from the chain, comes out consistent. The chain's
clock is moved forward (about six days) as the story needs: chain 31337 only.

`run_demo` returns the steps and the final figures (what `--json` prints); `render_closing` is
the closing table of who got what and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from backend.audit.render import format_amount
from backend.chain.types import ZERO_ADDRESS
from backend.client import SentTx
from backend.errors import ConfigurationError
from backend.escrows.scripted import DAY, ETH, HOUR, IssueToken, Stage, demo_png

__all__ = [
    "CRITERIA",
    "MILESTONE_AMOUNT",
    "TERMS",
    "ConsoleNarrator",
    "Narrator",
    "Step",
    "day_samples",
    "demo_rules",
    "render_closing",
    "run_demo",
]

TITLE = "Demo: managed hosting SLA, three monthly milestones"
CRITERIA = [
    "The site answers at the agreed address over HTTPS",
    "Nightly backups restore on a test server",
    "The monitoring dashboard is shared with the client",
]
#: the terms document (docs/interface.md section 3.2): daily periods closing an hour after
#: their end, uptime and p95 latency judged per day, three bad days in a row a streak, more than
#: an hour of outage in a day a major incident
TERMS: dict[str, Any] = {
    "version": 1,
    "title": TITLE,
    "period_seconds": DAY,
    "kpis": [
        {"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9},
        {"id": "p95_latency_ms", "aggregate": "p95", "op": "<=", "threshold": 300},
    ],
    "consecutive_periods": 3,
    "incident": {"kpi": "outage_minutes", "aggregate": "sum", "op": ">", "threshold": 60},
    "missing_data": "ignore",
    "grace_seconds": HOUR,
    "acceptance_criteria": CRITERIA,
}
MILESTONE_AMOUNT = ETH
MONTHS = ("month 1", "month 2", "month 3")
#: hours of a day with degraded uptime (percent of the hour up) per day of the story
DEGRADED: dict[int, dict[int, float]] = {
    0: {3: 99.5},                                   # a blip: the day still passes
    1: {2: 97.0, 3: 97.0, 14: 97.0, 15: 97.0},      # mean 99.5 %: a KPI miss
    2: {9: 97.6, 10: 97.6, 11: 97.6, 12: 97.6},     # mean 99.6 %
    3: {20: 98.2, 21: 98.2, 22: 98.2, 23: 98.2},    # mean 99.7 %: the third bad day in a row
}
#: the day-5 outages: (minutes, observed at seconds into the day)
OUTAGES = ((45, HOUR + 5 * 60), (50, 2 * HOUR + 50 * 60))

KIND_WORDS = {
    1: "uptime below 99.9 %",
    2: "three bad days in a row",
    3: "major incident (over an hour of outage)",
}
OUTCOME_WORDS = {
    "finalized": "not challenged, finalized by the oracle",
    "upheld": "challenged; the arbiter rejected the challenge",
    "rejected": "challenged; the arbiter rejected the report",
    "stale_split": "challenged, not arbitrated in time: split",
}


def demo_rules(now: int) -> dict[str, Any]:
    """The contract's rules of the demo escrow (`POST /api/escrows/prepare`'s `rules`): the
    payout per rating (20 % to 100 %), refunds of 5 % (KPI miss), 10 % (streak) and 20 %
    (incident) of the total, at most 40 % in all; review 3 days, challenge 2 days, arbitration
    5 days; delivery deadline 120 days after `now` (chain time)."""
    return {
        "rating_payout_bps": [2_000, 4_000, 6_000, 8_000, 10_000],
        "breach_refund_bps": 500,
        "streak_refund_bps": 1_000,
        "incident_refund_bps": 2_000,
        "max_refund_bps": 4_000,
        "review_period": 3 * DAY,
        "challenge_period": 2 * DAY,
        "arbitration_period": 5 * DAY,
        "delivery_deadline": now + 120 * DAY,
    }


def day_samples(accepted_at: int, day: int) -> list[dict[str, Any]]:
    """The monitoring's samples of day `day` (period `day`, 0-based): hourly uptime (percent of
    the hour up) and p95 latency (ms), and the outage minutes of each degraded hour."""
    start = accepted_at + day * DAY
    degraded = DEGRADED.get(day, {})
    samples: list[dict[str, Any]] = []
    for hour in range(24):
        at = start + hour * HOUR + 5 * 60
        up = degraded.get(hour, 100.0)
        samples.append({"kpi": "uptime_pct", "value": up, "observed_at": at})
        samples.append({"kpi": "p95_latency_ms", "value": 140 + (hour * 37) % 60,
                        "observed_at": at})
        if up < 100.0:
            samples.append({"kpi": "outage_minutes", "value": round((100.0 - up) * 0.6, 2),
                            "observed_at": at})
    return samples


# ---------------------------------------------------------------------- narration


@dataclass(frozen=True)
class Step:
    """One step of the story: its number, what happened (`title`), who acted, and the facts
    (transaction hashes, amounts in ETH, ids)."""

    number: int
    title: str
    actor: str
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.number, "title": self.title, "actor": self.actor,
                "facts": self.facts}


class Narrator(Protocol):
    """Who shows the story as it runs."""

    def begin(self, number: int, title: str) -> None:
        """Step `number` starts."""

    def waiting(self, what: str) -> None:
        """The step waits for something (the index, the relayer, the oracle)."""

    def done(self, step: Step) -> None:
        """Step `step.number` is done."""


class ConsoleNarrator:
    """A rich progress bar (steps done of all, the current step, time elapsed) with each
    finished step printed above it, its facts indented."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True,
        )
        self.task = self.progress.add_task("starting", total=total)
        self.title = ""

    def __enter__(self) -> ConsoleNarrator:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def begin(self, number: int, title: str) -> None:
        self.title = title
        self.progress.update(self.task, description=title)

    def waiting(self, what: str) -> None:
        self.progress.update(self.task, description=f"{self.title}: waiting for {what}")

    def done(self, step: Step) -> None:
        print_step(self.progress.console, step)
        self.progress.advance(self.task)


def print_step(console: Console, step: Step) -> None:
    console.print(f"[bold cyan]{step.number:>2}.[/bold cyan] {step.title} "
                  f"[dim]({step.actor})[/dim]", soft_wrap=True)
    for key, value in step.facts.items():
        console.print(f"     [dim]{key}:[/dim] {value}", soft_wrap=True)


class _Quiet:
    def begin(self, number: int, title: str) -> None:
        pass

    def waiting(self, what: str) -> None:
        pass

    def done(self, step: Step) -> None:
        pass


# ---------------------------------------------------------------------- the story


def eth(amount: int | str) -> str:
    """Base units as ETH, exact ("1.56 ETH")."""
    return format_amount(int(amount), 18, "ETH")


def _tx(sent: SentTx) -> dict[str, Any]:
    return {"tx": sent.tx_hash, "block": sent.block_number}


@dataclass
class _Story:
    stage: Stage
    issue_token: IssueToken
    narrator: Narrator
    escrow_id: int = 0
    accepted_at: int = 0
    token: str = ""
    incident_breach: int | None = None

    # -------------------------------------------------------------- helpers

    def wait(self, what: str, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        self.narrator.waiting(what)
        return self.stage.wait_for_escrow(self.escrow_id, until, what=what)

    def breaches(self, detail: Mapping[str, Any]) -> dict[tuple[int, int], dict[str, Any]]:
        return {(int(b["kind"]), int(b["period"])): b for b in detail["breaches"]}

    def wait_reports(self, wanted: set[tuple[int, int]], what: str) -> list[dict[str, Any]]:
        detail = self.wait(what, lambda d: wanted <= set(self.breaches(d)))
        found = self.breaches(detail)
        return [found[key] for key in sorted(wanted)]

    def post_days(self, days: range) -> dict[str, Any]:
        samples = [s for day in days for s in day_samples(self.accepted_at, day)]
        stored = self.stage.measure(self.escrow_id, self.token, samples)
        return {"samples": stored["accepted"]}

    def close_day(self, day: int) -> int:
        """Moves the chain's clock past day `day`'s close (its end plus the grace hour)."""
        self.narrator.waiting("the chain's clock")
        return self.stage.advance_to(self.accepted_at + (day + 1) * DAY + HOUR + 60)

    def kpi_period(self, day: int) -> dict[str, Any]:
        kpis = self.stage.api.get_json(f"/api/escrows/{self.escrow_id}/kpis")
        for period in kpis["periods"]:
            if period["period"] == day:
                return dict(period)
        raise ConfigurationError(f"GET /api/escrows/{self.escrow_id}/kpis has no period {day}")

    # -------------------------------------------------------------- chapters

    def service(self) -> dict[str, Any]:
        config = self.stage.config
        return {"service": self.stage.api.base_url, "chain": config["chain_id"],
                "contract": config["contract"], "oracle": config["oracle"],
                "relayer": config["relayer"], "client": self.stage.address("client"),
                "provider": self.stage.address("provider"),
                "arbiter": self.stage.address("arbiter")}

    def propose(self) -> dict[str, Any]:
        amounts = [MILESTONE_AMOUNT] * len(MONTHS)
        rules = demo_rules(self.stage.chain_time())
        self.escrow_id, sent = self.stage.create(TERMS, amounts, rules)
        return {"escrow": self.escrow_id, "locked": eth(sum(amounts)), **_tx(sent),
                "page": self.stage.url(self.escrow_id)}

    def accept(self) -> dict[str, Any]:
        sent = self.stage.act("provider", self.escrow_id, "accept")
        detail = self.wait("the index", lambda d: d["accepted_at"] is not None)
        self.accepted_at = int(detail["accepted_at"])
        return {**_tx(sent), "accepted_at (chain time)": self.accepted_at}

    def token_issued(self) -> dict[str, Any]:
        self.token = self.issue_token(self.escrow_id)
        return {"token": self.token[:6] + "... (shown once, only its sha256 is stored)"}

    def good_day(self) -> dict[str, Any]:
        self.close_day(0)
        facts = self.post_days(range(0, 1))
        period = self.kpi_period(0)
        values = {k["id"]: k["value"] for k in period["kpis"]}
        return {**facts, "verdict": period["verdict"],
                "uptime_pct (mean)": round(values["uptime_pct"], 3),
                "p95_latency_ms": values["p95_latency_ms"]}

    def deliver_month_1(self) -> dict[str, Any]:
        sent = self.stage.deliver(
            self.escrow_id, 0, "Month 1: the site is live on the managed cluster, nightly "
            "backups run and the monitoring dashboard is shared.")
        self.wait("the index", lambda d: d["milestones"][0]["state"] == "delivered")
        return _tx(sent)

    def review_month_1(self) -> dict[str, Any]:
        photo = self.stage.upload("rack-photo.png", demo_png(), "image/png")
        self.narrator.waiting("the relayer")
        reviewed = self.stage.review(
            self.escrow_id, 0, 5,
            comment="Month 1 exactly as agreed; photo of the rack from the site visit.",
            attachments=[photo["sha256"]],
            criteria=[{"index": i, "met": True} for i in range(len(CRITERIA))],
        )
        detail = self.wait("the index", lambda d: d["milestones"][0]["state"] == "settled")
        m = detail["milestones"][0]
        return {"photo": f"{photo['name']} ({photo['size']} bytes, sha256 "
                         f"{photo['sha256'][:12]}...)",
                "criteria met": f"{len(CRITERIA)} of {len(CRITERIA)}",
                "relayed tx": reviewed["request"]["tx_hash"],
                "to provider": eth(m["to_provider"]), "to client": eth(m["to_client"])}

    def kpi_miss(self) -> dict[str, Any]:
        self.close_day(1)
        facts = self.post_days(range(1, 2))
        [report] = self.wait_reports({(1, 1)}, "the oracle's report")
        return {**facts, "breach": report["id"], "kind": report["kind_name"],
                "reserved": eth(report["reserve"]), "evidence": report["evidence_hash"]}

    def streak(self) -> dict[str, Any]:
        self.close_day(3)
        facts = self.post_days(range(2, 4))
        reports = self.wait_reports({(1, 2), (1, 3), (2, 3)}, "the oracle's reports")
        return {**facts, **{
            f"breach {r['id']}": f"{r['kind_name']} (day {int(r['period']) + 1}), reserved "
            f"{eth(r['reserve'])}" for r in reports}}

    def incident(self) -> dict[str, Any]:
        day = 4
        start = self.accepted_at + day * DAY
        self.narrator.waiting("the chain's clock")
        self.stage.advance_to(start + 3 * HOUR)
        stored = self.stage.measure(self.escrow_id, self.token, [
            {"kpi": "outage_minutes", "value": minutes, "observed_at": start + offset}
            for minutes, offset in OUTAGES
        ])
        [report] = self.wait_reports({(3, day)}, "the oracle's report")
        self.incident_breach = int(report["id"])
        capped = int(report["reserve"]) < MILESTONE_AMOUNT * len(MONTHS) * 2_000 // 10_000
        return {"samples": stored["accepted"],
                "outage": f"{sum(m for m, _ in OUTAGES)} minutes > 60 (day 5 still open)",
                "breach": report["id"], "reserved": eth(report["reserve"])
                + (" (the 40 % refund cap leaves no more)" if capped else "")}

    def challenge(self) -> dict[str, Any]:
        assert self.incident_breach is not None
        sent = self.stage.act("provider", self.escrow_id, "challenge",
                              breachId=self.incident_breach)
        self.wait("the index", lambda d: any(
            b["id"] == self.incident_breach and b["state"] == "challenged"
            for b in d["breaches"]))
        return {"breach": self.incident_breach, **_tx(sent)}

    def arbitrate(self) -> dict[str, Any]:
        assert self.incident_breach is not None
        sent = self.stage.act("arbiter", self.escrow_id, "resolve-breach",
                              breachId=self.incident_breach, upheld=True)
        detail = self.wait("the index", lambda d: any(
            b["id"] == self.incident_breach and b["state"] == "upheld" for b in d["breaches"]))
        report = next(b for b in detail["breaches"] if b["id"] == self.incident_breach)
        return {"breach": self.incident_breach, "upheld": True,
                "to client": eth(report["to_client"]), **_tx(sent)}

    def finalized(self) -> dict[str, Any]:
        detail = self.stage.wait_for_escrow(self.escrow_id)
        latest = max(int(b["reported_at"]) for b in detail["breaches"])
        self.narrator.waiting("the chain's clock")
        self.stage.advance_to(latest + 2 * DAY + 60)
        done = self.wait("the oracle's finalizations", lambda d: all(
            b["state"] in ("finalized", "upheld") for b in d["breaches"]))
        finalized = [b for b in done["breaches"] if b["state"] == "finalized"]
        return {"finalized": ", ".join(f"breach {b['id']}" for b in finalized),
                "to client": eth(sum(int(b["to_client"]) for b in finalized))}

    def month_2(self) -> dict[str, Any]:
        self.stage.deliver(self.escrow_id, 1, "Month 2: cluster upgraded, backups verified.")
        self.wait("the index", lambda d: d["milestones"][1]["state"] == "delivered")
        sent = self.stage.act("client", self.escrow_id, "confirm", milestone=1, rating=4)
        detail = self.wait("the index", lambda d: d["milestones"][1]["state"] == "settled")
        m = detail["milestones"][1]
        return {"rating": 4, **_tx(sent), "to provider": eth(m["to_provider"]),
                "to client": eth(m["to_client"])}

    def month_3(self) -> dict[str, Any]:
        self.stage.deliver(self.escrow_id, 2, "Month 3: handover notes and final report.")
        self.wait("the index", lambda d: d["milestones"][2]["state"] == "delivered")
        self.narrator.waiting("the relayer")
        reviewed = self.stage.review(
            self.escrow_id, 2, 3,
            comment="Month 3 delivered, but the day-5 outage cost us a day of sales.")
        detail = self.wait("the index", lambda d: d["status"] == "closed")
        m = detail["milestones"][2]
        return {"rating": 3, "relayed tx": reviewed["request"]["tx_hash"],
                "to provider": eth(m["to_provider"]), "to client": eth(m["to_client"]),
                "escrow": detail["status"]}

    def withdraw(self, party: str) -> dict[str, Any]:
        address = self.stage.address(party)
        credits = self.stage.api.get_json(f"/api/accounts/{address}/credits")
        owed = sum(int(c["amount"]) for c in credits["credits"]
                   if c["token"] == ZERO_ADDRESS)
        tx = self.stage.api.post_json("/api/tx/withdraw", {"token": ZERO_ADDRESS})
        sent = self.stage.wallets[party].send(tx)
        report = self.stage.api.wait_for_tx(sent.tx_hash)
        paid = sum(int(e["args"]["amount"]) for e in report["events"]
                   if e["event"] == "Withdrawn")
        return {"credit": eth(owed), "withdrawn": eth(paid), "amount": str(paid), **_tx(sent)}

    def audit(self) -> dict[str, Any]:
        self.narrator.waiting("the audit")
        audit = self.stage.api.get_json(f"/api/escrows/{self.escrow_id}/audit")
        return {"consistent": audit["consistent"],
                "checks": ", ".join(f"{c['name']} {_check_word(c['ok'])}"
                                    for c in audit["checks"])}


def _check_word(ok: bool | None) -> str:
    return "passed" if ok else ("not checked" if ok is None else "FAILED")


#: (title, actor, chapter) of every step, in order
CHAPTERS: list[tuple[str, str, Callable[[_Story], dict[str, Any]]]] = [
    ("The service answers: chain 31337, its oracle and relayer", "operator", _Story.service),
    ("The client proposes a hosting SLA: three monthly milestones of 1 ETH", "client",
     _Story.propose),
    ("The provider accepts: periods of one day start now", "provider", _Story.accept),
    ("The operator issues a measurement token for the monitoring", "operator",
     _Story.token_issued),
    ("Day 1 closes: uptime and latency samples meet the KPIs", "monitoring", _Story.good_day),
    ("Month 1 delivered", "provider", _Story.deliver_month_1),
    ("The client rates month 1: 5 stars, every criterion met, a photo attached; signed "
     "(EIP-712) and relayed by the service", "client", _Story.review_month_1),
    ("Day 2: uptime 99.5 % < 99.9 %; the oracle reports a KPI miss", "oracle",
     _Story.kpi_miss),
    ("Days 3 and 4 miss too: three bad days in a row; the oracle reports each and the streak",
     "oracle", _Story.streak),
    ("Day 5: 95 minutes of outage; the oracle reports a major incident at once", "oracle",
     _Story.incident),
    ("The provider challenges the incident report", "provider", _Story.challenge),
    ("The arbiter rejects the challenge: the incident report stands", "arbiter",
     _Story.arbitrate),
    ("Two days pass unchallenged: the oracle finalizes the other reports", "oracle",
     _Story.finalized),
    ("Month 2 delivered; the client confirms it directly, 4 stars", "client", _Story.month_2),
    ("Month 3 delivered; the client rates it 3 stars through the relayer; the escrow closes",
     "client", _Story.month_3),
    ("The provider withdraws", "provider", lambda s: s.withdraw("provider")),
    ("The client withdraws", "client", lambda s: s.withdraw("client")),
    ("The audit replays the escrow from the chain", "auditor", _Story.audit),
]


def run_demo(
    stage: Stage, issue_token: IssueToken, narrator: Narrator | None = None
) -> dict[str, Any]:
    """Tells the story on `stage` (the running service, chain 31337) and returns

    `{escrow_id, url, chain_id, contract, token: {symbol, decimals}, steps: [{step, title,
    actor, facts}], payouts: [{party, address, amount, why}], totals: {provider, client,
    escrowed}, withdrawals: [{party, amount, tx}], audit: {consistent, checks: [{name, ok}]},
    seconds}` (amounts in wei as decimal strings). Raises the client's errors
    (`ServiceRefusedError`, `ServiceTimeoutError`, `ServiceUnreachableError`, a contract
    revert) and `ConfigurationError` when a step does not come out as told."""
    started = time.monotonic()
    story = _Story(stage, issue_token, narrator or _Quiet())
    steps: list[Step] = []
    for number, (title, actor, chapter) in enumerate(CHAPTERS, start=1):
        story.narrator.begin(number, title)
        step = Step(number, title, actor, chapter(story))
        steps.append(step)
        story.narrator.done(step)
    detail = stage.wait_for_escrow(story.escrow_id)
    audit = stage.api.get_json(f"/api/escrows/{story.escrow_id}/audit")
    payouts = payout_rows(detail, {"client": stage.address("client"),
                                   "provider": stage.address("provider")})
    withdrawals = [
        {"party": step.actor, "amount": step.facts["amount"], "tx": step.facts["tx"]}
        for step in steps if step.facts.get("withdrawn") is not None
    ]
    return {
        "escrow_id": story.escrow_id,
        "url": stage.url(story.escrow_id),
        "chain_id": stage.config["chain_id"],
        "contract": stage.config["contract"],
        "token": {"symbol": "ETH", "decimals": 18},
        "steps": [s.to_json() for s in steps],
        "payouts": payouts,
        "totals": {
            "provider": str(int(detail["balances"]["credited_provider"])),
            "client": str(int(detail["balances"]["credited_client"])),
            "escrowed": str(int(detail["balances"]["total"])),
        },
        "withdrawals": withdrawals,
        "audit": {"consistent": audit["consistent"],
                  "checks": [{"name": c["name"], "ok": c["ok"]} for c in audit["checks"]]},
        "seconds": round(time.monotonic() - started, 1),
    }


def payout_rows(detail: Mapping[str, Any], parties: Mapping[str, str]) -> list[dict[str, Any]]:
    """Who got what and why, from the escrow's detail (`GET /api/escrows/{id}`): each settled
    milestone's share to the provider (at its rating's payout) and the rest to the client, and
    each breach report's refund to the client (or release to the provider). Rows with nothing
    credited are left out; amounts in wei as decimal strings."""
    table = [int(b) for b in detail["params"]["terms"]["ratingPayoutBps"]]
    rows: list[dict[str, Any]] = []

    def row(party: str, amount: int, why: str) -> None:
        if amount > 0:
            rows.append({"party": party, "address": parties[party], "amount": str(amount),
                         "why": why})

    for m in detail["milestones"]:
        if m["state"] != "settled":
            continue
        name = MONTHS[m["index"]] if m["index"] < len(MONTHS) else f"milestone {m['index']}"
        share = int(m["to_provider"]) + int(m["to_client"])
        rating = m["rating"]
        if rating:
            percent = table[int(rating) - 1] / 100
            how = "relayed signature" if m["how"] == "signed" else "confirmed directly"
            row("provider", int(m["to_provider"]),
                f"{name}: rated {rating}/5 ({how}), {percent:g} % of its {eth(share)} share")
            row("client", int(m["to_client"]),
                f"{name}: the rest of its {eth(share)} share at rating {rating}")
        else:
            row("provider", int(m["to_provider"]), f"{name}: settled ({m['how']})")
            row("client", int(m["to_client"]), f"{name}: settled ({m['how']})")
    streak = int((detail.get("terms_document") or {}).get("consecutive_periods") or 1)
    for b in detail["breaches"]:
        kind = KIND_WORDS.get(int(b["kind"]), str(b["kind_name"]))
        outcome = OUTCOME_WORDS.get(str(b["state"]), str(b["state"]))
        day = int(b["period"]) + 1
        days = f"days {day - streak + 1} to {day}" if int(b["kind"]) == 2 else f"day {day}"
        why = f"breach {b['id']}: {kind} on {days}, {outcome}"
        row("client", int(b["to_client"]), why)
        row("provider", int(b["to_provider"]), why + " (released)")
    return rows


def render_closing(result: Mapping[str, Any], console: Console) -> None:
    """The closing table: who got what and why (ETH), the totals, the withdrawals and the
    audit's verdict."""
    table = Table(title=f"Escrow {result['escrow_id']}: who got what and why "
                  f"({eth(result['totals']['escrowed'])} escrowed)", title_justify="left")
    table.add_column("party", no_wrap=True)
    table.add_column("ETH", justify="right", no_wrap=True)
    table.add_column("why")
    for party in ("provider", "client"):
        for r in result["payouts"]:
            if r["party"] == party:
                table.add_row(party, eth(r["amount"]).removesuffix(" ETH"), r["why"])
        table.add_row(f"[bold]{party}[/bold]",
                      f"[bold]{eth(result['totals'][party]).removesuffix(' ETH')}[/bold]",
                      "[bold]total credited by this escrow[/bold]", end_section=True)
    for w in result["withdrawals"]:
        table.add_row(w["party"], eth(w["amount"]).removesuffix(" ETH"),
                      "withdrawn: the account's whole ETH credit (any earlier escrows too)")
    console.print(table)
    verdict = "consistent" if result["audit"]["consistent"] else "INCONSISTENT"
    console.print(f"audit: {verdict} ({', '.join(c['name'] for c in result['audit']['checks'])})"
                  f"; the escrow's page: {result['url']}", soft_wrap=True)
