"""Reading KPI samples for evaluation: one streaming query ordered by (escrow, kpi,
observed_at), the order of the `uq_kpi_sample` index, grouped per escrow."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.db.models import KpiSample
from backend.oracle.evaluation import Sample

_BATCH = 10_000


def samples_by_escrow(
    session: Session, chain_id: int, escrow_ids: Iterable[int] | None = None
) -> Iterator[tuple[int, list[Sample]]]:
    """(escrow id, its samples) for every escrow with samples (or only `escrow_ids`)."""
    query = (
        select(KpiSample.escrow_id, KpiSample.kpi, KpiSample.value, KpiSample.observed_at)
        .where(KpiSample.chain_id == chain_id)
        .order_by(KpiSample.escrow_id, KpiSample.kpi, KpiSample.observed_at)
        .execution_options(stream_results=True, yield_per=_BATCH)
    )
    if escrow_ids is not None:
        query = query.where(KpiSample.escrow_id.in_(sorted(set(escrow_ids))))
    current: int | None = None
    group: list[Sample] = []
    for escrow_id, kpi, value, observed_at in session.execute(query):
        if escrow_id != current:
            if current is not None:
                yield current, group
            current, group = escrow_id, []
        group.append(Sample(kpi, value, observed_at))
    if current is not None:
        yield current, group


def escrow_samples(
    session: Session, chain_id: int, escrow_id: int, *, since: int | None = None,
    until: int | None = None, kpis: Iterable[str] | None = None,
) -> list[Sample]:
    """One escrow's samples observed in `[since, until)` (unix seconds; open ends when None),
    of `kpis` only when given, ordered by (kpi, observed_at): what a window of periods reads
    (the `uq_kpi_sample` index serves each KPI's range)."""
    query = (
        select(KpiSample.kpi, KpiSample.value, KpiSample.observed_at)
        .where(KpiSample.chain_id == chain_id, KpiSample.escrow_id == escrow_id)
        .order_by(KpiSample.kpi, KpiSample.observed_at)
    )
    if since is not None:
        query = query.where(KpiSample.observed_at >= since)
    if until is not None:
        query = query.where(KpiSample.observed_at < until)
    if kpis is not None:
        query = query.where(KpiSample.kpi.in_(sorted(set(kpis))))
    return [Sample(kpi, value, observed_at) for kpi, value, observed_at in session.execute(query)]


def sample_count(session: Session, chain_id: int, escrow_id: int) -> int:
    """How many samples the escrow has (one indexed count, no sample read)."""
    return int(session.scalar(
        select(func.count()).select_from(KpiSample)
        .where(KpiSample.chain_id == chain_id, KpiSample.escrow_id == escrow_id)
    ) or 0)
