"""The escrow page, the arbiter's desk and the auditor (`docs/interface.md` section 7).

- `GET /escrows/{id}`: parties, balances, milestones on a timeline (delivery document, dispute
  reason, review, settlement), the terms in words, breach reports, KPI charts per period against
  each threshold (`backend.web.charts`, from the series of `GET /api/escrows/{id}/kpis`), links
  to the statement, the acts and the auditor, and the actions open at chain time now
  (`backend.escrows.next_steps`): the page script shows the connected party its own.
- `GET /arbiter?account=0x..`: open disputes and challenged breach reports of the escrows this
  account arbitrates, with both parties' documents (the client's dispute reason, the provider's
  delivery, a review) and the arbitration deadline.
- `GET /audit[?escrow=ID|all]`: the auditor's checks (`backend.audit.verify`, as
  `GET /api/escrows/{id}/audit`), the money timeline chart and the downloads: the escrow's
  statement and the client's and the provider's ledgers over all their escrows
  (`GET /api/accounts/{address}/ledger.csv`).

Routes gather from the same domain functions the API routes call and render; every refusal is
the error page with the API's status (`pages.refused`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from babel import Locale
from babel.numbers import format_decimal
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.api.app_state import TokensDep
from backend.api.deps import ServicesDep, SessionDep
from backend.audit.model import AuditReport, EscrowAudit
from backend.audit.timeline_chart import timeline_svg
from backend.audit.verify import audit_all, audit_escrow
from backend.chain.errors import from_node
from backend.chain.tokens import TokenMetadata
from backend.chain.types import ZERO_ADDRESS, BreachState, MilestoneState, Status
from backend.db.models import EscrowRow
from backend.errors import QualityEscrowError
from backend.escrows.detail import escrow_detail, load_ledger
from backend.escrows.next_steps import Step, next_steps, window_ends
from backend.inputs import parse_address, parse_escrow_id
from backend.oracle.scorecard import escrow_kpis
from backend.oracle.terms import TermsModel, parse_terms
from backend.services import Services
from backend.web.charts import ChartText, KpiSeries, kpi_chart_svg, kpi_series, number
from backend.web.pages import refused
from backend.web.render import language, page

router = APIRouter(tags=["pages"], include_in_schema=False)

#: escrows the arbiter's desk reads per account (newest first)
ARBITER_LIMIT = 100
#: unit suffixes of KPI ids (`p95_latency_ms`) and how a reader writes them
UNITS = {
    "ms": "ms", "s": "s", "sec": "s", "secs": "s", "seconds": "s", "pct": "%",
    "percent": "%", "min": "min", "mins": "min", "minutes": "min", "h": "h", "hours": "h",
    "kb": "KB", "mb": "MB", "gb": "GB", "rps": "req/s",
}


# ------------------------------------------------------------------ helpers


def kpi_label(kpi_id: str, aggregate: str | None = None,
              extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """`{name, unit}` of a KPI for a sentence: `p95_latency_ms` (p95) -> `latency`, `ms`;
    `uptime_pct` -> `uptime`, `%`. A terms document may name them itself (`name`, `unit`:
    unknown keys are kept)."""
    extra = extra or {}
    words = [w for w in re.split(r"[_.:\-\s]+", kpi_id) if w]
    unit = ""
    if len(words) > 1 and words[-1].lower() in UNITS:
        unit = UNITS[words.pop().lower()]
    if aggregate and len(words) > 1 and words[0].lower() == aggregate.lower():
        words.pop(0)
    name = extra.get("name") if isinstance(extra.get("name"), str) else " ".join(words)
    if isinstance(extra.get("unit"), str):
        unit = str(extra["unit"])
    return {"name": str(name or kpi_id), "unit": unit}


def _number_in(locale: str) -> Callable[[float | int | None], str]:
    def fmt(value: float | int | None) -> str:
        if value is None:
            return "-"
        try:
            return str(format_decimal(value, locale=Locale.parse(locale),
                                      decimal_quantization=False))
        except (ValueError, ArithmeticError):
            return number(float(value))
    return fmt


def _stored_terms(document: Mapping[str, Any] | None) -> TermsModel | None:
    if document is None:
        return None
    try:
        return parse_terms(dict(document))
    except (ValueError, QualityEscrowError):  # a document stored before the one terms model
        return None


def _plain(value: Any) -> str:
    """A template string as plain text (the chart escapes what it writes; a `Markup` from `_()`
    holds its values escaped already)."""
    return value.unescape() if isinstance(value, Markup) else str(value)


def chart_markup(series: KpiSeries, chart_id: str, **words: Any) -> Markup:
    """The template's call of `charts.kpi_chart_svg`: words come in translated (the template
    owns every visible string)."""
    verdicts = words.pop("verdicts", {})
    text = ChartText(**{k: _plain(v) for k, v in words.items()},
                     verdicts={k: _plain(v) for k, v in verdicts.items()})
    return Markup(kpi_chart_svg(series, text, chart_id=chart_id))  # escaped inside


def _steps_by(steps: list[Step]) -> dict[str, Any]:
    """Steps keyed for the template: per milestone, per breach, and the escrow's own."""
    milestones: dict[int, dict[str, Step]] = {}
    breaches: dict[int, dict[str, Step]] = {}
    escrow: dict[str, Step] = {}
    for s in steps:
        if s.milestone is not None and s.action != "reclaim":
            milestones.setdefault(s.milestone, {})[s.action] = s
        elif s.breach_id is not None:
            breaches.setdefault(s.breach_id, {})[s.action] = s
        else:
            escrow.setdefault(s.action, s)
    return {"milestones": milestones, "breaches": breaches, "escrow": escrow}


# ------------------------------------------------------------------ the escrow page


@router.get("/escrows/{escrow_id}", response_class=HTMLResponse)
def escrow_page(
    request: Request,
    escrow_id: str,
    services: ServicesDep,
    session: SessionDep,
    tokens: TokensDep,
) -> HTMLResponse:
    """One escrow for its parties and anyone else: everything the index knows about it and the
    actions open now (shown by the script to the connected party)."""
    try:
        body = escrow_page_data(session, services, tokens, parse_escrow_id(escrow_id))
    except QualityEscrowError as exc:
        return refused(request, services, exc)
    lang = language(request)
    return page(request, services, "escrow.html",
                {**body, "num": _number_in(lang), "kpi_chart": chart_markup})


def escrow_page_data(
    session: Session, services: Services, tokens: TokenMetadata, escrow_id: int
) -> dict[str, Any]:
    """What the escrow page shows: the API's detail, the folded ledger's terms and deadlines,
    the open steps by milestone and breach, the terms document read by the terms model and the
    KPI series (or why there are none)."""
    detail = escrow_detail(session, services.chain_id, services.escrow.address, escrow_id, tokens)
    led = load_ledger(session, services.chain_id, escrow_id)
    now = services.clock.now_or_service_time()
    steps = next_steps(led, now)
    terms = led.params.terms
    document = detail["terms_document"]
    model = _stored_terms(document)
    series: list[KpiSeries] = []
    kpi_error: str | None = None
    kpi_body: dict[str, Any] | None = None
    if document is not None and led.accepted_at is not None:
        try:
            kpi_body = escrow_kpis(  # the latest page of periods (DEFAULT_KPI_PAGE)
                session, services.chain_id, escrow_id, now,
                min_period_seconds=services.settings.min_period_seconds,
            )
            series = kpi_series(kpi_body)
            kpi_error = kpi_body.get("evaluation_error")
        except QualityEscrowError as exc:
            kpi_error = exc.message
    p = led.params
    return {
        "escrow": detail,
        "token": detail["token"],
        "now": now,
        "steps": steps,
        "by": _steps_by(steps),
        "has_arbiter": p.arbiter != ZERO_ADDRESS,
        "parties": {"client": p.client, "provider": p.provider, "oracle": p.oracle,
                    "arbiter": p.arbiter},
        "terms": terms,
        "document": document,
        "model": model,
        "kpi_rules": _kpi_rules(model, document),
        "series": series,
        "kpi_body": kpi_body,
        "kpi_error": kpi_error,
        "deadlines": window_ends(led),
        "kpi_label": kpi_label,
    }


def _kpi_rules(model: TermsModel | None, document: Mapping[str, Any] | None) -> list[Any]:
    """Each KPI rule with its `min_samples` as applied and its name and unit for a sentence."""
    if model is None:
        return []
    raw = (document or {}).get("kpis") or []
    rules = []
    for n, k in enumerate(model.kpis):
        extra = raw[n] if n < len(raw) and isinstance(raw[n], Mapping) else {}
        rules.append({"rule": k, "min_samples": k.required_samples,
                      **kpi_label(k.id, k.aggregate, extra)})
    return rules


# ------------------------------------------------------------------ the arbiter's desk


@router.get("/arbiter", response_class=HTMLResponse)
def arbiter_page(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    tokens: TokensDep,
    account: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """Open disputes and challenged breach reports of the escrows `account` arbitrates
    (without it, the page asks to connect a wallet)."""
    if account is None:
        return page(request, services, "arbiter.html", {"account": None})
    try:
        address = parse_address("account", account)
        cases = arbiter_cases(session, services, tokens, address)
    except QualityEscrowError as exc:
        return refused(request, services, exc)
    return page(request, services, "arbiter.html",
                {"account": address, "cases": cases, "num": _number_in(language(request))})


def arbiter_cases(
    session: Session, services: Services, tokens: TokenMetadata, account: str
) -> list[dict[str, Any]]:
    """Per active escrow arbitrated by `account` with a dispute or a challenge: the detail (for
    the documents), the disputed milestones and challenged breaches, each with the end of its
    arbitration window and whether the arbiter may still decide (`open`)."""
    now = services.clock.now_or_service_time()
    rows = session.scalars(
        select(EscrowRow)
        .where(EscrowRow.chain_id == services.chain_id, EscrowRow.arbiter == account,
               EscrowRow.status == Status.ACTIVE.name.lower())
        .order_by(EscrowRow.escrow_id.desc())
        .limit(ARBITER_LIMIT)
    ).all()
    cases = []
    for row in rows:
        led = load_ledger(session, services.chain_id, row.escrow_id)
        disputed = [m.index for m in led.milestones if m.state == MilestoneState.DISPUTED]
        challenged = [b.breach_id for b in led.breaches if b.state == BreachState.CHALLENGED]
        if not disputed and not challenged:
            continue
        detail = escrow_detail(session, services.chain_id, services.escrow.address,
                               row.escrow_id, tokens)
        steps = _steps_by(next_steps(led, now))
        ends = window_ends(led)
        cases.append({
            "escrow": detail,
            "token": detail["token"],
            "terms_title": (detail["terms_document"] or {}).get("title"),
            "disputes": [
                {"milestone": detail["milestones"][i], "deadline": ends["dispute"].get(i),
                 "open": "resolve-dispute" in steps["milestones"].get(i, {})}
                for i in disputed
            ],
            "challenges": [
                {"breach": detail["breaches"][b], "deadline": ends["arbitration"].get(b),
                 "open": "resolve-breach" in steps["breaches"].get(b, {})}
                for b in challenged
            ],
        })
    return cases


# ------------------------------------------------------------------ the auditor


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    escrow: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    """The auditor: pick an escrow (or `all`), run the checks of `escrow audit` on the chain and
    this service's database, and show the verdict, every check and the money timeline."""
    context: dict[str, Any] = {"escrow_id": None, "single": None, "report": None,
                               "parties": None, "choice": escrow or ""}
    if escrow:
        try:
            if escrow.strip().lower() == "all":
                context["report"] = run_audit_all(services, session)
            else:
                escrow_id = parse_escrow_id(escrow.strip(), "escrow")
                context["escrow_id"] = escrow_id
                context["single"] = run_audit(services, session, escrow_id)
                context["parties"] = indexed_parties(session, services.chain_id, escrow_id)
        except QualityEscrowError as exc:
            return refused(request, services, exc)
    single = context["single"]
    if single is not None:  # the audit module's chart escapes what it draws
        context["chart"] = Markup(timeline_svg(single)) if single.timeline else None
    return page(request, services, "audit.html", context)


def indexed_parties(session: Session, chain_id: int, escrow_id: int) -> dict[str, str] | None:
    """`{client, provider}` of the escrow as indexed (whose ledgers the auditor links); None
    when this service has not indexed it (the audit reads the chain, the ledgers the index)."""
    row = session.get(EscrowRow, (chain_id, escrow_id))
    return None if row is None else {"client": row.client, "provider": row.provider}


def run_audit(services: Services, session: Session, escrow_id: int) -> EscrowAudit:
    """The checks of one escrow, as `GET /api/escrows/{id}/audit` runs them."""
    return from_node("audit", lambda: audit_escrow(
        services.w3, services.escrow.address, escrow_id, from_block=services.deployment_block,
        session=session, data_dir=services.settings.data_dir,
    ))


def run_audit_all(services: Services, session: Session) -> AuditReport:
    """Every escrow with an event on the contract, and the contract-wide solvency check (as
    `escrow audit --all`)."""
    return from_node("audit", lambda: audit_all(
        services.w3, services.escrow.address, from_block=services.deployment_block,
        session=session, data_dir=services.settings.data_dir,
    ))
