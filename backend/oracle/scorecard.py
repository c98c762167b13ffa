"""Analytics: the quality picture clients and providers use to judge each other. Plain functions
over the index (`escrow` projection + folded ledgers), the stored terms documents and the KPI
samples; no FastAPI, no RPC except token metadata (cached).

Definitions (what the numbers mean):

- `average_rating`: mean of the client ratings of milestones settled by the client
  (`how` = confirmed or signed) that carry a rating, rounded to 6 digits; `null` when none.
- `deliveries.delivered`: milestones with a delivery; `confirmed_within_review`: settled by
  confirm/signature at or before `delivered_at + reviewPeriod`; `confirmed_after_review`: settled
  by the client later than that; `released_by_timeout`: `how` = timeout; `disputed`: milestones
  on which a dispute was opened (however it ended).
- Breaches are counted by kind (1, 2, 3) and by state (`reported` = still in its challenge
  window, `challenged`, `finalized`, `upheld`, `rejected`, `stale_split`).
- Refunds per token: `refunded` = breach refunds credited to clients, `value` = sum of escrow
  totals, `share` = refunded / value as a decimal string with 6 digits (rounded half-even).
- KPI series: for every accepted escrow with a stored terms document and samples, one entry per
  (period, KPI) from `backend.oracle.evaluation.evaluate` at `now`, of its latest
  `SERIES_PERIODS` periods only (the whole series of one escrow is `GET /api/escrows/{id}/kpis`,
  page by page), for the `SERIES_MAX_ESCROWS` accepted escrows with the highest ids; the others
  are counted in `series_skipped` (`not_accepted`, `no_terms`, `unreadable_terms`,
  `no_samples`, `evaluation_failed`: samples that cannot be evaluated, which do not fail the
  scorecard, `period_too_short`: terms below `ESCROW_MIN_PERIOD_SECONDS`, not evaluated, and
  `beyond_limit`: past the `SERIES_MAX_ESCROWS`). The answer's size and cost are bounded by
  these limits and the samples of those periods, not by the escrows' age.
- One escrow's KPIs (`escrow_kpis`): a KPI with fewer samples in a period than its
  `min_samples` has no value and is `missing`; an evaluation that fails (samples that cannot
  be aggregated), or terms whose period is below `ESCROW_MIN_PERIOD_SECONDS` (stored before
  the minimum), answer 200 with `evaluation_error` saying why, and no periods or findings. The
  answer is one page of periods (`from_period`, at most `MAX_KPI_PAGE`; by default the latest
  `DEFAULT_KPI_PAGE`), with the findings and incident periods of that page; it reads only the
  samples of the page's periods (and, with a streak rule, of the failing run before it, at
  most `MAX_STREAK_LOOKBACK` periods), so memory and time follow the page, not the escrow's
  age.
- An unknown provider (no escrow indexed) gets **200 with zeros**, not 404: an address is always
  a valid provider, it has simply no history yet.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.chain.tokens import TokenMetadata
from backend.chain.types import BreachState, SettledHow, Status
from backend.db.models import EscrowRow, TermsDocument
from backend.errors import NotFoundError, OutOfRangeError
from backend.index.indexer import escrow_ledger
from backend.index.ledger import EscrowLedger
from backend.inputs import parse_address, parse_escrow_id
from backend.oracle.evaluation import (
    KIND_INCIDENT,
    KIND_KPI,
    KIND_STREAK,
    Evaluation,
    Sample,
    Verdict,
    closed_periods,
    current_period,
    evaluate,
    incident_result,
    streak_start,
)
from backend.oracle.measurements import TermsNotStoredError
from backend.oracle.samples import escrow_samples, sample_count
from backend.oracle.terms import (
    DEFAULT_MIN_PERIOD_SECONDS,
    TermsModel,
    parse_terms,
    too_short_reason,
)

CLIENT_SETTLED = (SettledHow.CONFIRMED, SettledHow.SIGNED)
BREACH_KINDS = (KIND_KPI, KIND_STREAK, KIND_INCIDENT)
BREACH_STATES = tuple(s.name.lower() for s in BreachState if s != BreachState.NONE)
ESCROW_STATUSES = tuple(s.name.lower() for s in Status if s != Status.NONE)
SHARE_DIGITS = Decimal("0.000001")
#: periods of one `GET /api/escrows/{id}/kpis` page: by default, and at most
DEFAULT_KPI_PAGE, MAX_KPI_PAGE = 100, 500
#: periods a page looks back for the start of a failing run (streaks, kind 2), in pages of
#: `MAX_KPI_PAGE`; a longer run is counted from there (`streak_from_period` says where)
MAX_STREAK_LOOKBACK = 10 * MAX_KPI_PAGE
#: the scorecard's series: the latest periods of each escrow, and how many escrows
SERIES_PERIODS, SERIES_MAX_ESCROWS = 30, 50

logger = logging.getLogger(__name__)


def share(part: int, whole: int) -> str:
    """`part / whole` as a decimal string with 6 digits ("0.050000"); "0.000000" if whole is 0."""
    if whole <= 0:
        return "0.000000"
    return str((Decimal(part) / Decimal(whole)).quantize(SHARE_DIGITS, ROUND_HALF_EVEN))


def _load_terms(session: Session, hashes: Iterable[str]) -> dict[str, str]:
    wanted = sorted({h.lower() for h in hashes})
    if not wanted:
        return {}
    rows = session.execute(
        select(TermsDocument.terms_hash, TermsDocument.canonical)
        .where(TermsDocument.terms_hash.in_(wanted))
    )
    return {h: text for h, text in rows}


def _stored_terms(text: str) -> TermsModel | None:
    """The terms of a stored document, or None when the terms model refuses it (a document
    stored before the model was the one parser)."""
    try:
        return parse_terms(json.loads(text))
    except (ValueError, OutOfRangeError):  # not JSON, or refused by the model
        return None


# --- provider scorecard ----------------------------------------------------------------


class _Tally:
    def __init__(self) -> None:
        self.by_status: Counter[str] = Counter()
        self.ratings: Counter[int] = Counter()
        self.deliveries: Counter[str] = Counter()
        self.kinds: Counter[int] = Counter()
        self.states: Counter[str] = Counter()
        self.refunded: defaultdict[str, int] = defaultdict(int)
        self.value: defaultdict[str, int] = defaultdict(int)

    def add(self, row: EscrowRow, led: EscrowLedger | None) -> None:
        self.by_status[row.status] += 1
        self.value[row.token] += int(row.total)
        self.refunded[row.token] += 0 if led is None else led.refunded
        if led is None:
            return
        review = led.params.terms.review_period
        for m in led.milestones:
            if m.delivered_at is not None:
                self.deliveries["delivered"] += 1
            if m.disputed_at is not None:
                self.deliveries["disputed"] += 1
            if m.how in CLIENT_SETTLED:
                if m.rating is not None:
                    self.ratings[m.rating] += 1
                if m.delivered_at is not None and m.settled_at is not None:
                    inside = m.settled_at <= m.delivered_at + review
                    self.deliveries["confirmed_within_review" if inside
                                    else "confirmed_after_review"] += 1
            elif m.how == SettledHow.TIMEOUT:
                self.deliveries["released_by_timeout"] += 1
        for b in led.breaches:
            self.kinds[b.kind] += 1
            self.states[b.state.name.lower()] += 1

    def average_rating(self) -> float | None:
        count = sum(self.ratings.values())
        if count == 0:
            return None
        return round(sum(r * n for r, n in self.ratings.items()) / count, 6)


def provider_scorecard(
    session: Session, chain_id: int, address: str, tokens: TokenMetadata, now: int, *,
    min_period_seconds: int = DEFAULT_MIN_PERIOD_SECONDS,
) -> dict[str, Any]:
    """The scorecard of `address` as a provider; 400 for a malformed address. Escrows whose
    terms' period is below `min_period_seconds` have no series (`period_too_short`)."""
    provider = parse_address("address", address)
    rows = list(session.scalars(
        select(EscrowRow)
        .where(EscrowRow.chain_id == chain_id, EscrowRow.provider == provider)
        .order_by(EscrowRow.escrow_id)
    ))
    tally = _Tally()
    for row in rows:
        tally.add(row, escrow_ledger(session, chain_id, row.escrow_id))
    series, skipped = _series(session, chain_id, rows, now, min_period_seconds)
    return {
        "provider": provider,
        "now": now,
        "escrows": {
            "total": len(rows),
            "by_status": {s: tally.by_status[s] for s in ESCROW_STATUSES},
            "ids": [r.escrow_id for r in rows],
        },
        "average_rating": tally.average_rating(),
        "ratings": {
            "count": sum(tally.ratings.values()),
            "histogram": {str(r): tally.ratings[r] for r in range(1, 6)},
        },
        "deliveries": {
            k: tally.deliveries[k]
            for k in ("delivered", "confirmed_within_review", "confirmed_after_review",
                      "released_by_timeout", "disputed")
        },
        "breaches": {
            "total": sum(tally.kinds.values()),
            "by_kind": {str(k): tally.kinds[k] for k in BREACH_KINDS},
            "by_state": {s: tally.states[s] for s in BREACH_STATES},
        },
        "refunds": [_refund_entry(tokens, token, tally.refunded[token], value)
                    for token, value in sorted(tally.value.items())],
        "series": series,
        "series_skipped": skipped,
    }


def _refund_entry(tokens: TokenMetadata, token: str, refunded: int, value: int) -> dict[str, Any]:
    info = tokens.get(token)
    return {"token": info.address, "symbol": info.symbol, "decimals": info.decimals,
            "refunded": str(refunded), "value": str(value), "share": share(refunded, value)}


def _series(
    session: Session, chain_id: int, rows: list[EscrowRow], now: int, min_period_seconds: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    skipped: Counter[str] = Counter()
    accepted = [r for r in rows if r.accepted_at is not None]
    skipped["not_accepted"] = len(rows) - len(accepted)
    # the latest escrows (highest ids) get a series; the others are counted
    accepted.sort(key=lambda r: r.escrow_id, reverse=True)
    skipped["beyond_limit"] = max(0, len(accepted) - SERIES_MAX_ESCROWS)
    accepted = sorted(accepted[:SERIES_MAX_ESCROWS], key=lambda r: r.escrow_id)
    texts = _load_terms(session, (r.terms_hash for r in accepted))
    out: list[dict[str, Any]] = []
    for row in accepted:
        text = texts.get(row.terms_hash.lower())
        terms = None if text is None else _stored_terms(text)
        if text is None:
            skipped["no_terms"] += 1
            continue
        if terms is None:
            skipped["unreadable_terms"] += 1
            continue
        if too_short_reason(terms, min_period_seconds) is not None:
            skipped["period_too_short"] += 1
            continue
        assert row.accepted_at is not None
        last = current_period(terms, row.accepted_at, now)
        first = max(0, last - SERIES_PERIODS + 1)
        start = row.accepted_at + first * terms.period_seconds
        samples = escrow_samples(session, chain_id, row.escrow_id, since=start, until=now + 1,
                                 kpis=terms.kpi_ids)
        if not samples and sample_count(session, chain_id, row.escrow_id) == 0:
            skipped["no_samples"] += 1
            continue
        try:
            result = evaluate(terms, row.accepted_at, now, samples, first_period=first)
        except Exception:  # one escrow's samples do not fail the provider's scorecard
            logger.exception("escrow %s: KPI series cannot be evaluated", row.escrow_id)
            skipped["evaluation_failed"] += 1
            continue
        for p in result.periods:
            for k in p.kpis:
                out.append({
                    "escrow_id": row.escrow_id, "kpi": k.id, "period": p.period,
                    "period_start": p.start, "period_end": p.end, "closed": p.closed,
                    "value": k.value, "aggregate": k.aggregate, "op": k.op,
                    "threshold": k.threshold, "verdict": k.verdict,
                })
    keys = ("not_accepted", "no_terms", "unreadable_terms", "no_samples", "evaluation_failed",
            "period_too_short", "beyond_limit")
    return out, {k: skipped[k] for k in keys}


# --- one escrow's KPIs -----------------------------------------------------------------


def kpi_page(
    total: int, from_period: int | None, limit: int
) -> tuple[int, int]:
    """(first, last) period of a page of at most `limit` periods out of periods 0..total-1:
    from `from_period`, or the latest `limit` when it is None (`last < first`: an empty page)."""
    first = max(0, total - limit) if from_period is None else from_period
    return first, min(total, first + limit) - 1


def _window_verdicts(
    session: Session, chain_id: int, row: EscrowRow, terms: TermsModel, now: int,
    first: int, last: int,
) -> list[Verdict]:
    """The verdicts of periods first..last, from their samples only (no streak involved)."""
    assert row.accepted_at is not None
    size = terms.period_seconds
    samples = escrow_samples(
        session, chain_id, row.escrow_id, since=row.accepted_at + first * size,
        until=row.accepted_at + (last + 1) * size, kpis=terms.kpi_ids,
    )
    result = evaluate(terms, row.accepted_at, now, samples, first_period=first,
                      last_period=last)
    return [p.verdict for p in result.periods]


def _streak_origin(
    session: Session, chain_id: int, row: EscrowRow, terms: TermsModel, now: int, first: int,
) -> int:
    """Where a page starting at `first` must count its streaks from (`streak_start`): the start
    of the failing run of closed periods that ends at `first - 1`, found by evaluating earlier
    periods page by page (at most `MAX_STREAK_LOOKBACK`: a longer run is counted from there),
    advanced past the streaks that run completed."""
    assert row.accepted_at is not None
    closed = closed_periods(terms, row.accepted_at, now)
    if terms.consecutive_periods is None or first == 0 or first > closed:
        return first
    verdicts: list[Verdict] = []  # of periods low..first-1
    low = first
    while low > 0 and first - low < MAX_STREAK_LOOKBACK:
        begin = max(0, low - MAX_KPI_PAGE, first - MAX_STREAK_LOOKBACK)
        chunk = _window_verdicts(session, chain_id, row, terms, now, begin, low - 1)
        verdicts = chunk + verdicts
        low = begin
        if any(v != "fail" for v in chunk):
            break
    # a run longer than the lookback is counted from `low`, as if the period before it passed
    return low + streak_start(terms, verdicts, first - low)


def escrow_kpis(
    session: Session, chain_id: int, escrow_id: int, now: int, *,
    from_period: int | None = None, limit: int = DEFAULT_KPI_PAGE,
    min_period_seconds: int = DEFAULT_MIN_PERIOD_SECONDS,
) -> dict[str, Any]:
    """One page of the per-period values, thresholds and verdicts of one escrow's KPIs at
    `now` (periods `from_period` to `from_period + limit - 1`, by default the latest `limit`;
    `limit` 1 to `MAX_KPI_PAGE`, 422 otherwise), the incident rule's state in those periods
    and their findings; 404 for an escrow not indexed, 409 when its terms document is not
    stored. When the samples cannot be evaluated (any exception), or the terms' period is
    below `min_period_seconds`, 200 with `evaluation_error` naming the cause, no periods, no
    incident periods and no findings."""
    if not 1 <= limit <= MAX_KPI_PAGE:
        raise OutOfRangeError("limit", limit, f"1 to {MAX_KPI_PAGE} periods")
    if from_period is not None and from_period < 0:
        raise OutOfRangeError("from_period", from_period, "a period number, 0 or more")
    row = session.get(EscrowRow, (chain_id, parse_escrow_id(escrow_id)))
    if row is None:
        raise NotFoundError("escrow", escrow_id)
    text = _load_terms(session, [row.terms_hash]).get(row.terms_hash.lower())
    if text is None:
        raise TermsNotStoredError(escrow_id, row.terms_hash)
    terms = _stored_terms(text)
    if terms is None:
        raise OutOfRangeError(
            "terms document", row.terms_hash, "a document the terms model accepts"
        )
    accepted = row.accepted_at
    total = 0 if accepted is None else current_period(terms, accepted, now) + 1
    first, last = kpi_page(total, from_period, limit)
    error = too_short_reason(terms, min_period_seconds)
    result, samples, origin = Evaluation(), list[Sample](), first
    if accepted is not None and error is None and first <= last:
        try:
            origin = _streak_origin(session, chain_id, row, terms, now, first)
            size = terms.period_seconds
            samples = escrow_samples(session, chain_id, escrow_id,
                                     since=accepted + origin * size,
                                     until=accepted + (last + 1) * size, kpis=terms.kpi_ids)
            result = evaluate(terms, accepted, now, samples, first_period=origin,
                              last_period=last)
        except Exception as exc:  # shown, not a 500: the view says why the oracle cannot judge
            logger.exception("escrow %s: KPIs cannot be evaluated", escrow_id)
            error = f"{type(exc).__name__}: {exc}"
            result, samples = Evaluation(), []
    page = [s for s in samples
            if accepted is not None and s.observed_at >= accepted + first * terms.period_seconds]
    incident = _incident_state(terms, None if error else accepted, now, page)
    led = escrow_ledger(session, chain_id, escrow_id)
    reported = set() if led is None else {(b.kind, b.period) for b in led.breaches}
    return {
        "escrow_id": escrow_id,
        "status": row.status,
        "terms_hash": row.terms_hash,
        "accepted_at": row.accepted_at,
        "now": now,
        "period_seconds": terms.period_seconds,
        "grace_seconds": terms.grace_seconds,
        "missing_data": terms.missing_data,
        "consecutive_periods": terms.consecutive_periods,
        "sample_count": sample_count(session, chain_id, escrow_id) if accepted is not None else 0,
        "evaluation_error": error,
        "total_periods": total,
        "from_period": first,
        "limit": limit,
        "next_from_period": last + 1 if last + 1 < total else None,
        "previous_from_period": max(0, first - limit) if 0 < first <= total else None,
        "streak_from_period": (origin if terms.consecutive_periods is not None and not error
                               and first <= last else None),
        "periods": [
            {"period": p.period, "start": p.start, "end": p.end, "closed": p.closed,
             "verdict": p.verdict,
             "kpis": [{"id": k.id, "aggregate": k.aggregate, "op": k.op,
                       "threshold": k.threshold, "value": k.value, "verdict": k.verdict,
                       "samples": len(k.samples), "min_samples": k.min_samples}
                      for k in p.kpis]}
            for p in result.periods if p.period >= first
        ],
        "incident": incident,
        "findings": [
            {"kind": f.kind, "period": f.period, "period_start": f.period_start,
             "period_end": f.period_end, "rule": f.rule,
             "reported_on_chain": (f.kind, f.period) in reported}
            for f in result.findings if f.period >= first
        ],
    }


def _incident_state(
    terms: TermsModel, accepted_at: int | None, now: int, samples: list[Sample]
) -> dict[str, Any] | None:
    """The incident rule with its `min_samples` and, per period with samples of its KPI, the
    value so far (null with fewer than `min_samples`), the sample count and whether the rule is
    met (the same grouping and judgement as the evaluation)."""
    rule = terms.incident
    if rule is None:
        return None
    grouped: defaultdict[int, list[Sample]] = defaultdict(list)
    if accepted_at is not None:
        for s in samples:
            if s.kpi == rule.kpi and accepted_at <= s.observed_at <= now:
                grouped[(s.observed_at - accepted_at) // terms.period_seconds].append(s)
    periods = []
    for period in sorted(grouped):
        judged = incident_result(rule, period, grouped[period])
        periods.append({"period": period, "value": judged.value,
                        "samples": len(judged.samples), "met": judged.verdict == "fail"})
    return {"rule": rule.as_dict(), "min_samples": rule.required_samples,
            "met": any(p["met"] for p in periods), "periods": periods}
