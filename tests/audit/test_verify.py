"""The verifier: an untouched history passes every check; each tampering fails exactly the check
that guards it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update

from backend.audit.model import AuditReport
from backend.audit.verify import audit_all
from backend.canonical import canonical_json, terms_hash
from backend.chain.deploy import deploy_contract
from backend.confirmations.reviews import review_document, store_review
from backend.db.models import EventLog, EvidenceBundle, Review, TermsDocument
from backend.index.indexer import index_once
from backend.services import Services
from tests.index.support import services_for
from tests.support import EscrowEnv

TERMS_DOC = {"title": "Monthly cleaning", "kpis": []}
EVIDENCE_DOC = {"format": "quality-escrow/evidence", "kind": 1, "period": 1}


def _history(env: EscrowEnv, services: Services) -> None:
    """Escrows settled every way: confirm with a review, signature, dispute, cancel, breach."""
    th = terms_hash(TERMS_DOC)
    review = review_document("well done", [])
    with services.sessions() as session, session.begin():
        session.add(TermsDocument(terms_hash="0x" + th.hex(),
                                  canonical=canonical_json(TERMS_DOC).decode(), created_at=0))
        session.add(EvidenceBundle(evidence_hash="0x" + terms_hash(EVIDENCE_DOC).hex(),
                                   chain_id=services.chain_id, escrow_id=0, kind=1, period=1,
                                   canonical=canonical_json(EVIDENCE_DOC).decode(),
                                   created_at=0))
        store_review(session, review, now=0)
    a = env.create_active(env.params(terms_hash=th))
    env.deliver(a, 0)
    env.escrow.confirm(a, 0, 4, review.comment_hash, env.client)
    env.deliver(a, 1)
    conf = env.confirmation(a, 1, rating=5)
    env.escrow.confirm_with_sig(conf, env.sign(conf), env.parties.relayer.address)
    b = env.create_active(env.params(terms_hash=th))
    env.escrow.report_breach(b, 1, 1, terms_hash(EVIDENCE_DOC), env.oracle)
    env.deliver(b, 0)
    env.escrow.open_dispute(b, 0, b"\x01" * 32, env.client)
    env.escrow.resolve_dispute(b, 0, 3_000, env.arbiter)
    env.escrow.challenge_breach(b, 0, env.provider)
    env.escrow.resolve_breach(b, 0, True, env.arbiter)
    c = env.create(env.params(terms_hash=th))
    env.escrow.cancel(c, env.client)
    index_once(services)


def _audit(env: EscrowEnv, services: Services, address: str | None = None) -> AuditReport:
    with services.sessions() as session:
        return audit_all(env.w3, address or env.escrow.address, from_block=env.deployment_block,
                         session=session, data_dir=services.settings.data_dir)


def _failing(report: AuditReport) -> set[str]:
    names = {c.name for c in report.contract_checks if c.ok is False}
    return names | {c.name for e in report.escrows for c in e.checks if c.ok is False}


def test_an_untouched_history_passes_every_check(
    env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    with services_for(env, database_url, tmp_path) as services:
        _history(env, services)
        report = _audit(env, services)
    assert _failing(report) == set()
    assert [e.escrow_id for e in report.escrows] == [1, 2, 3]
    checks = {c.name: c.ok for e in report.escrows for c in e.checks}
    assert checks == {"bytecode": True, "replay": True, "signatures": True, "payouts": True,
                      "documents": True, "index": True}
    assert report.escrows[0].checks[2].detail == "1 of 1 signatures verified"
    assert [c.name for c in report.contract_checks] == ["bytecode", "solvency"]
    assert report.contract_checks[1].ok is True


def test_each_tampering_fails_exactly_its_check(
    env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    with services_for(env, database_url, tmp_path) as services:
        _history(env, services)
        tamperings = [
            (Review, Review.canonical, '{"attachments":[],"comment":"terrible"}'),
            (TermsDocument, TermsDocument.canonical, '{"title":"other"}'),
            (EvidenceBundle, EvidenceBundle.canonical, '{"kind":2}'),
        ]
        for model, column, value in tamperings:
            with services.sessions() as session, session.begin():
                old = session.scalars(select(column)).first()
                session.execute(update(model).values({column: value}))
            assert _failing(_audit(env, services)) == {"documents"}
            with services.sessions() as session, session.begin():
                session.execute(update(model).values({column: old}))
        assert _failing(_audit(env, services)) == set()
        with services.sessions() as session, session.begin():
            row = session.scalars(select(EventLog).where(EventLog.event == "EscrowCancelled")).one()
            row.args = {**row.args, "refund": "1"}
        report = _audit(env, services)
    assert _failing(report) == {"index"}
    bad = next(c for c in report.escrows[2].checks if c.name == "index")
    assert bad.evidence[0]["field"] == "args"


def test_a_contract_of_other_code_fails_the_bytecode_check(
    env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    other, _ = deploy_contract(env.w3, "TestAccount", env.parties.deployer.address)
    with services_for(env, database_url, tmp_path) as services:
        report = _audit(env, services, other)
    assert _failing(report) == {"bytecode"}
    assert report.escrows == []
    assert report.contract_checks[1].ok is None
