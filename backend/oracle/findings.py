"""From stored samples to the oracle's findings: evaluate the escrows whose samples or periods
changed, store each new finding's evidence bundle, hand over (escrow, kind, period, evidence
hash). The outbox then records and sends them (one report per (escrow, kind, period)), or
records without sending those the contract would refuse (escrow not active).

Each escrow is evaluated on its own, inside a savepoint: one whose evaluation fails, with any
exception (samples that cannot be aggregated, a bug, a terms document the model refuses), is
rolled back, logged and recorded (`evaluation_failure`, shown by the breaches view), and
retried on the next pass; the other escrows' findings go out in the same pass.

The evaluation is incremental (`EvaluationState`, kept in the oracle's evaluator): an escrow
evaluated in a committed pass is evaluated again only when its samples change (their count or
largest row id: samples are never rewritten), its indexed row changes (acceptance, terms hash)
or the chain's time reaches the next moment its findings can change without new samples: the
next period closing (`end + grace_seconds`) or a sample observed ahead of the last pass's time
coming due. Such an escrow is evaluated only from the first period that can have changed
(`_first_period`: the first period not closed at its last pass, or the period of the earliest
new sample, moved back to the start of a streak in progress), reading only the samples from
there: a pass costs what is new, not the escrow's age (`EvaluationState.periods_evaluated`
counts the periods computed). The state is kept in memory only, so a restarted oracle starts
with a full pass; it is updated when the pass's transaction commits, so findings lost to a
rollback are found again.

Terms whose `period_seconds` is below the operator's minimum (`ESCROW_MIN_PERIOD_SECONDS`;
documents stored or committed on chain before it was enforced) are not evaluated at all: the
reason is recorded as the escrow's evaluation failure (shown by the breaches and KPI views) and
no finding is made, so such terms cannot make the oracle report once per second.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from backend.chain.types import BreachKind
from backend.db.models import BreachSubmission, EscrowRow, KpiSample
from backend.errors import QualityEscrowError
from backend.oracle.evaluation import Evaluation, Sample, Verdict, evaluate, streak_start
from backend.oracle.evidence import evidence_bundle, store_bundle
from backend.oracle.measurements import escrow_terms
from backend.oracle.samples import escrow_samples, samples_by_escrow
from backend.oracle.terms import DEFAULT_MIN_PERIOD_SECONDS, TermsModel, too_short_reason
from backend.services import Services

logger = logging.getLogger(__name__)

#: escrow ids per sample query of an incremental pass
_ID_CHUNK = 500


@dataclass(frozen=True)
class ReportFinding:
    escrow_id: int
    kind: int
    period: int
    evidence_hash: str


# ------------------------------------------------------------------ failures


@dataclass(frozen=True)
class EvaluationFailure:
    """The oracle could not evaluate an escrow: why, since when, how many passes in a row."""

    escrow_id: int
    error: str
    first_failed_at: int
    last_failed_at: int
    attempts: int

    def as_json(self) -> dict[str, Any]:
        return {"error": self.error, "first_failed_at": self.first_failed_at,
                "last_failed_at": self.last_failed_at, "attempts": self.attempts}


#: failures by database (the engine the oracle and the API share in `escrow serve`), then by
#: (chain id, escrow id); in memory, like the rest of the oracle's evaluation state
_failures: weakref.WeakKeyDictionary[Engine, dict[tuple[int, int], EvaluationFailure]] = (
    weakref.WeakKeyDictionary()
)
_failures_lock = threading.Lock()


def _engine(session: Session) -> Engine:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


def evaluation_failure(session: Session, chain_id: int, escrow_id: int) -> EvaluationFailure | None:
    """The oracle's last failure to evaluate the escrow, if its latest attempt failed (as
    recorded by an oracle running in this process on the same database)."""
    with _failures_lock:
        return _failures.get(_engine(session), {}).get((chain_id, escrow_id))


def _record_failure(
    session: Session, chain_id: int, escrow_id: int, error: str, now: int
) -> EvaluationFailure:
    with _failures_lock:
        known = _failures.setdefault(_engine(session), {})
        before = known.get((chain_id, escrow_id))
        failure = (EvaluationFailure(escrow_id, error, now, now, 1) if before is None
                   else replace(before, error=error, last_failed_at=now,
                                attempts=before.attempts + 1))
        known[(chain_id, escrow_id)] = failure
        return failure


def _clear_failure(session: Session, chain_id: int, escrow_id: int) -> None:
    with _failures_lock:
        _failures.get(_engine(session), {}).pop((chain_id, escrow_id), None)


# ------------------------------------------------------------------ incremental state


#: what an escrow's findings depend on besides the chain's time: (sample count, largest sample
#: row id, accepted_at, terms hash)
Signature = tuple[int, int, int | None, str]

#: the `due` of an escrow that is not evaluated (its terms are refused): only a new signature
#: makes the oracle look at it again
_NEVER = 2**63


@dataclass(frozen=True)
class _Evaluated:
    signature: Signature
    #: the chain time it was evaluated at
    at: int
    #: the earliest chain time at which its findings can change without new samples
    due: int
    #: the verdicts of its closed periods 0..n-1 at `at`: where the next pass's window starts
    #: (`backend.oracle.evaluation.streak_start`)
    verdicts: tuple[Verdict, ...] = ()
    #: False: its terms were refused (e.g. a period below the minimum), nothing was evaluated
    evaluated: bool = True


@dataclass
class EvaluationState:
    """What the oracle's evaluator remembers between passes (in memory)."""

    evaluated: dict[tuple[int, int], _Evaluated] = field(default_factory=dict)
    #: periods the evaluation computed, over every pass (the work done; a pass re-evaluates
    #: only the periods new samples or the passing time can change)
    periods_evaluated: int = 0

    def is_current(self, key: tuple[int, int], signature: Signature, now: int) -> bool:
        seen = self.evaluated.get(key)
        return seen is not None and seen.signature == signature and seen.at <= now < seen.due

    def stage(self, session: Session, done: Mapping[tuple[int, int], _Evaluated]) -> None:
        """Remembers `done` once the session's transaction commits; a rollback forgets it."""
        if not done:
            return
        staged = dict(done)
        # `after_commit` fires for savepoints too, each followed by the end of its transaction;
        # only a commit followed by the end of the outermost transaction counts
        state = {"armed": True, "committed": False}

        def committed(_session: Session) -> None:
            state["committed"] = True

        def rolled_back(_session: Session) -> None:
            state["committed"] = False

        def ended(_session: Session, transaction: Any) -> None:
            if transaction.parent is not None:
                state["committed"] = False
                return
            if state["armed"] and state["committed"]:
                self.evaluated.update(staged)
            state["armed"] = False

        event.listen(session, "after_commit", committed)
        event.listen(session, "after_rollback", rolled_back)
        event.listen(session, "after_transaction_end", ended)


def next_change(terms: TermsModel, accepted_at: int, now: int, samples: list[Sample]) -> int:
    """The earliest chain time after `now` at which the evaluation of these samples can give
    other findings: the next period to close (at `end + grace_seconds`), or a sample observed
    after `now` coming due."""
    size, grace = terms.period_seconds, terms.grace_seconds
    closing = accepted_at + max(1, (now - accepted_at - grace) // size + 1) * size + grace
    ahead = [s.observed_at for s in samples if s.observed_at > now]
    return min([closing, *ahead])


def _sample_signatures(session: Session, chain_id: int) -> dict[int, tuple[int, int]]:
    """(count, largest row id) of every escrow's samples, in one grouped query."""
    rows = session.execute(
        select(KpiSample.escrow_id, func.count(), func.max(KpiSample.id))
        .where(KpiSample.chain_id == chain_id)
        .group_by(KpiSample.escrow_id)
    )
    return {escrow_id: (int(count), int(largest)) for escrow_id, count, largest in rows}


def _samples_of(
    session: Session, chain_id: int, wanted: Mapping[int, object], *, everyone: Mapping[int, object]
) -> Iterator[tuple[int, list[Sample]]]:
    """The samples of the `wanted` escrows: one streaming query when that is every escrow with
    samples, else queries of at most `_ID_CHUNK` escrow ids (bound parameters are limited)."""
    if len(wanted) == len(everyone):
        yield from samples_by_escrow(session, chain_id)
        return
    ids = sorted(wanted)
    for start in range(0, len(ids), _ID_CHUNK):
        yield from samples_by_escrow(session, chain_id, ids[start:start + _ID_CHUNK])


def _first_period(
    session: Session, chain_id: int, row: EscrowRow, terms: TermsModel, signature: Signature,
    before: _Evaluated | None,
) -> int:
    """The first period this pass must evaluate for the escrow: 0 without a usable earlier pass
    (none, a refused one, another acceptance or terms hash, samples gone); else the earliest of
    the first period not closed at that pass and the period of the earliest sample stored since
    (row ids above that pass's largest; 0 when they do not account for every new sample, one
    committed late under a lower id), moved back to where a streak in progress there started
    (`streak_start`), so the window's findings are those of the whole history."""
    if before is None or not before.evaluated or before.signature[2:] != signature[2:]:
        return 0
    count, largest = signature[:2]
    old_count, old_largest = before.signature[:2]
    if count < old_count or largest < old_largest or (largest == old_largest
                                                       and count != old_count):
        return 0
    assert row.accepted_at is not None
    start = len(before.verdicts)
    if largest > old_largest:
        earliest, added = session.execute(
            select(func.min(KpiSample.observed_at), func.count()).where(
                KpiSample.chain_id == chain_id, KpiSample.escrow_id == row.escrow_id,
                KpiSample.id > old_largest,
            )
        ).one()
        if earliest is None or int(added) != count - old_count:
            return 0  # a sample committed with a lower id than one seen before: start over
        start = min(start, max(0, (int(earliest) - row.accepted_at) // terms.period_seconds))
    return streak_start(terms, before.verdicts, start)


# ------------------------------------------------------------------ one escrow


def _queued(
    session: Session, chain_id: int, escrow_id: int, first: int = 0
) -> set[tuple[int, int]]:
    """(kind, period) of the escrow's findings already in the outbox (their evidence too), of
    periods `first` and later."""
    rows = session.execute(
        select(BreachSubmission.kind, BreachSubmission.period).where(
            BreachSubmission.chain_id == chain_id, BreachSubmission.escrow_id == escrow_id,
            BreachSubmission.period >= first,
        )
    )
    return {(int(kind), int(period)) for kind, period in rows}


def _escrow_findings(
    session: Session, row: EscrowRow, terms: TermsModel, samples: list[Sample], *,
    chain_id: int, contract: str, oracle: str, now: int, first: int = 0,
) -> tuple[list[ReportFinding], Evaluation]:
    assert row.accepted_at is not None
    queued = _queued(session, chain_id, row.escrow_id, first)
    out: list[ReportFinding] = []
    result = evaluate(terms, row.accepted_at, now, samples, first_period=first)
    for finding in result.findings:
        if (finding.kind, finding.period) in queued:
            continue  # reported (or recorded) with the evidence of its first finding
        bundle = evidence_bundle(
            finding,
            chain_id=chain_id,
            contract=contract,
            escrow_id=row.escrow_id,
            terms_hash_hex=row.terms_hash,
            oracle=oracle,
        )
        evidence_hash = store_bundle(
            session, bundle, chain_id=chain_id, escrow_id=row.escrow_id,
            kind=finding.kind, period=finding.period, now=now,
        )
        out.append(ReportFinding(row.escrow_id, finding.kind, finding.period, evidence_hash))
    return out, result


# ------------------------------------------------------------------ a pass


@dataclass(frozen=True)
class _Plan:
    row: EscrowRow
    signature: Signature
    terms: TermsModel
    #: the first period to evaluate, and the verdicts of the periods before it
    first: int
    verdicts: tuple[Verdict, ...]


def find_breaches(
    session: Session, *, chain_id: int, contract: str, oracle: str, now: int,
    state: EvaluationState | None = None,
    min_period_seconds: int = DEFAULT_MIN_PERIOD_SECONDS,
) -> list[ReportFinding]:
    """Every new breach the samples show at `now` (chain time), with its evidence stored: of
    every escrow with samples and every active escrow of this oracle without any whose terms
    count missing data as a breach (its monitoring never posted) (without `state`), or of those
    whose samples, row or periods changed since the passes `state` remembers, each from the
    first period that can have changed (`_first_period`). One escrow's failure is recorded and
    skipped; an escrow whose terms have a period below `min_period_seconds` (stored before the
    minimum was enforced) is not evaluated: the reason is recorded as its failure
    (`evaluation_failure`), no finding."""
    escrows = {
        row.escrow_id: row
        for row in session.scalars(select(EscrowRow).where(EscrowRow.chain_id == chain_id))
    }
    wanted: dict[int, tuple[EscrowRow, Signature]] = {}
    signatures = _sample_signatures(session, chain_id)
    for escrow_id, (count, largest) in signatures.items():
        row = escrows.get(escrow_id)
        if row is None or row.accepted_at is None or row.oracle != oracle:
            continue
        signature: Signature = (count, largest, row.accepted_at, row.terms_hash)
        if state is not None and state.is_current((chain_id, escrow_id), signature, now):
            continue
        wanted[escrow_id] = (row, signature)
    # an active escrow of ours with no sample at all: its monitoring never posted, which terms
    # with `missing_data: breach` count as failed periods (evaluated on no samples, below)
    silent: set[int] = set()
    for escrow_id, row in escrows.items():
        if escrow_id in signatures or row.status != "active" or row.accepted_at is None:
            continue
        if row.oracle != oracle:
            continue
        signature = (0, 0, row.accepted_at, row.terms_hash)
        if state is not None and state.is_current((chain_id, escrow_id), signature, now):
            continue
        wanted[escrow_id] = (row, signature)
        silent.add(escrow_id)
    if not wanted:
        return []
    out: list[ReportFinding] = []
    done: dict[tuple[int, int], _Evaluated] = {}
    full: dict[int, _Plan] = {}
    partial: list[_Plan] = []
    for escrow_id, (row, signature) in wanted.items():
        try:
            terms = escrow_terms(session, row)  # 409 not stored, or the model's refusal
        except QualityEscrowError as exc:
            if escrow_id in silent:  # nothing posted for it yet: nothing to say about it;
                # looked at again a period later (its terms may be stored by then)
                done[(chain_id, escrow_id)] = _Evaluated(
                    signature, now, now + min_period_seconds, evaluated=False
                )
                continue
            _record_failure(session, chain_id, escrow_id, exc.message, now)
            logger.warning("escrow %s: terms cannot be evaluated: %s", escrow_id, exc.message)
            continue
        refused = too_short_reason(terms, min_period_seconds)
        if refused is not None:
            before = evaluation_failure(session, chain_id, escrow_id)
            _record_failure(session, chain_id, escrow_id, refused, now)
            if before is None or before.error != refused:
                logger.warning("escrow %s: %s", escrow_id, refused)
            done[(chain_id, escrow_id)] = _Evaluated(signature, now, _NEVER, evaluated=False)
            continue
        if escrow_id in silent and terms.missing_data != "breach":
            # no samples and missing data raises nothing: no finding until samples come
            done[(chain_id, escrow_id)] = _Evaluated(signature, now, _NEVER, evaluated=False)
            continue
        known = None if state is None else state.evaluated.get((chain_id, escrow_id))
        first = _first_period(session, chain_id, row, terms, signature, known)
        verdicts = () if known is None or first == 0 else known.verdicts[:first]
        plan = _Plan(row, signature, terms, first, verdicts)
        if escrow_id in silent:
            _evaluate_plan(session, plan, [], chain_id=chain_id, contract=contract,
                           oracle=oracle, now=now, state=state, out=out, done=done)
        elif first == 0:
            full[escrow_id] = plan
        else:
            partial.append(plan)
    if full:
        for escrow_id, samples in _samples_of(session, chain_id, full, everyone=signatures):
            if escrow_id in full:
                _evaluate_plan(session, full[escrow_id], samples, chain_id=chain_id,
                               contract=contract, oracle=oracle, now=now, state=state,
                               out=out, done=done)
    for plan in partial:
        assert plan.row.accepted_at is not None
        since = plan.row.accepted_at + plan.first * plan.terms.period_seconds
        samples = escrow_samples(session, chain_id, plan.row.escrow_id, since=since)
        _evaluate_plan(session, plan, samples, chain_id=chain_id, contract=contract,
                       oracle=oracle, now=now, state=state, out=out, done=done)
    if state is not None:
        state.stage(session, done)
    return out


def _evaluate_plan(
    session: Session, plan: _Plan, samples: list[Sample], *, chain_id: int, contract: str,
    oracle: str, now: int, state: EvaluationState | None, out: list[ReportFinding],
    done: dict[tuple[int, int], _Evaluated],
) -> None:
    """Evaluates one escrow from `plan.first` inside a savepoint: its new findings go to `out`,
    what the next pass starts from to `done`; a failure is recorded and logged."""
    row, escrow_id = plan.row, plan.row.escrow_id
    assert row.accepted_at is not None
    try:
        with session.begin_nested():
            found, result = _escrow_findings(
                session, row, plan.terms, samples, chain_id=chain_id, contract=contract,
                oracle=oracle, now=now, first=plan.first,
            )
    except Exception as exc:  # any failure is isolated: the other escrows go on
        error = f"{type(exc).__name__}: {exc}"
        before = evaluation_failure(session, chain_id, escrow_id)
        failure = _record_failure(session, chain_id, escrow_id, error, now)
        if before is None or before.error != error:
            logger.exception("escrow %s: evaluation failed, retried on the next pass",
                             escrow_id)
        else:
            logger.warning("escrow %s: evaluation failed again (%d passes): %s",
                           escrow_id, failure.attempts, error)
        return
    _clear_failure(session, chain_id, escrow_id)
    if state is not None:
        state.periods_evaluated += len(result.periods)
    for finding in found:
        _log_found(finding, chain_id=chain_id, oracle=oracle, now=now)
    out.extend(found)
    verdicts = plan.verdicts + tuple(p.verdict for p in result.periods if p.closed)
    done[(chain_id, escrow_id)] = _Evaluated(
        plan.signature, now, next_change(plan.terms, row.accepted_at, now, samples), verdicts
    )


def kind_name(kind: int) -> str:
    """`KPI_BELOW_STANDARD` ... (`BreachKind`), or the number of a kind this code does not
    know (for log lines)."""
    try:
        return BreachKind(kind).name
    except ValueError:
        return str(kind)


def _log_found(finding: ReportFinding, *, chain_id: int, oracle: str, now: int) -> None:
    """The `breach_found` line: a new breach, its evidence stored, handed to the outbox."""
    name = kind_name(finding.kind)
    logger.info(
        "breach found: escrow %s, %s, period %s (evidence %s)", finding.escrow_id, name,
        finding.period, finding.evidence_hash,
        extra={"event": "breach_found", "chain_id": chain_id, "oracle": oracle,
               "escrow_id": finding.escrow_id, "kind": finding.kind, "kind_name": name,
               "period": finding.period, "evidence_hash": finding.evidence_hash,
               "chain_time": now},
    )


def evaluator(
    services: Services, oracle: str, state: EvaluationState | None = None
) -> Callable[[Session, int], list[ReportFinding]]:
    """The `evaluate` hook of the oracle worker: new findings at the chain's current time,
    incremental across passes (`state`, a new one by default)."""
    memory = EvaluationState() if state is None else state

    def run(session: Session, chain_id: int) -> list[ReportFinding]:
        now = services.clock.chain_time()
        return find_breaches(
            session, chain_id=chain_id, contract=services.escrow.address, oracle=oracle,
            now=now, state=memory, min_period_seconds=services.settings.min_period_seconds,
        )

    return run
