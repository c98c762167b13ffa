"""`backend/db/deployments.py` on both databases: the deployment a database serves per chain, the
archive of one the chain no longer has (every chain-scoped table, all or nothing, other chains
untouched), the refusal to mix two live contracts, and data from before deployments were
recorded."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.sqltypes import JSON, Boolean, Float, Integer, String

from backend.db.deployments import (
    ACTIVE,
    ARCHIVED,
    CHAIN_SCOPED,
    DeploymentConflictError,
    DeploymentKey,
    archive_active,
    archived_rows,
    claim_deployment,
    list_deployments,
)
from backend.db.models import (
    ChainCursor,
    DeploymentRecord,
    IndexedBlock,
    WebhookDelivery,
    WebhookSubscription,
)
from backend.db.session import session_factory

A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
HASH_1 = "0x" + "11" * 32
HASH_2 = "0x" + "22" * 32


def _gone(reason: str | None) -> Any:
    return lambda _record: reason


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def _value(column: Any, chain_id: int, n: int) -> Any:
    if column.name == "chain_id":
        return chain_id
    kind = column.type
    if isinstance(kind, JSON):
        return {"n": n, "nested": [str(n)]}
    if isinstance(kind, Boolean):
        return True
    if isinstance(kind, Float):
        return n + 0.5
    if isinstance(kind, Integer):
        return n
    if isinstance(kind, String):
        return f"{column.name[:8]}-{chain_id}-{n}"[: kind.length or 64]
    return f"{chain_id}-{n}"


def _seed(
    session: Session, chain_id: int, rows_each: int = 2, *, index: bool = True
) -> dict[str, list[dict[str, Any]]]:
    """`rows_each` rows in every chain-scoped table of `chain_id` (ids unique across chains;
    without cursor and indexed blocks unless `index`), and webhook deliveries about it;
    returns them by table."""
    seeded: dict[str, list[dict[str, Any]]] = {}
    for model in reversed(CHAIN_SCOPED):  # parents first
        if not index and model in (ChainCursor, IndexedBlock):
            continue
        table: Table = model.__table__
        rows = []
        for i in range(rows_each):
            n = chain_id * 100 + i
            rows.append({c.name: _value(c, chain_id, n) for c in table.columns
                         if not c.foreign_keys})
        session.execute(insert(table), rows)
        seeded[table.name] = rows
    subscription = session.scalar(select(WebhookSubscription.id))
    if subscription is None:
        sub = WebhookSubscription(address=A, url="http://127.0.0.1:9/", secret="s", events=[],
                                  active=True, created_at=1)
        session.add(sub)
        session.flush()
        subscription = sub.id
    deliveries = [
        {"id": f"{chain_id}-{i}", "subscription_id": subscription, "event_type": "x",
         "event_key": f"milestone_settled:{chain_id}:{i}:0", "payload": {"i": i},
         "status": "pending", "attempts": 0, "next_attempt_at": 1, "last_error": None,
         "delivered_at": None, "created_at": 1}
        for i in range(rows_each)
    ]
    session.execute(insert(WebhookDelivery.__table__), deliveries)
    seeded["webhook_delivery"] = deliveries
    return seeded


def _live(session: Session, chain_id: int) -> dict[str, int]:
    counts = {}
    for model in CHAIN_SCOPED:
        table: Table = model.__table__
        counts[table.name] = len(session.execute(
            select(table).where(table.c.chain_id == chain_id)
        ).all())
    keys = session.scalars(select(WebhookDelivery.event_key)).all()
    counts["webhook_delivery"] = sum(1 for k in keys if k.split(":")[1] == str(chain_id))
    return counts


def test_the_first_claim_makes_the_key_active_and_the_same_key_again_changes_nothing(
    sessions: sessionmaker[Session],
) -> None:
    key = DeploymentKey(7, A, 1, HASH_1)
    first = claim_deployment(sessions, key, is_gone=_gone("never asked"), now=10)
    again = claim_deployment(sessions, key, is_gone=_gone("never asked"), now=20)
    assert first.archived == again.archived == ()
    assert first.active.id == again.active.id
    with sessions() as session:
        [only] = list_deployments(session)
    assert (only.chain_id, only.contract, only.block_number, only.block_hash, only.status) == (
        7, A, 1, HASH_1, ACTIVE
    )


def test_a_deployment_the_chain_lost_is_archived_whole_and_other_chains_keep_theirs(
    sessions: sessionmaker[Session],
) -> None:
    claim_deployment(sessions, DeploymentKey(7, A, 1, HASH_1), is_gone=_gone(None), now=10)
    claim_deployment(sessions, DeploymentKey(8, A, 1, HASH_1), is_gone=_gone(None), now=10)
    with sessions() as session, session.begin():
        seeded = _seed(session, 7)
        _seed(session, 8)

    claim = claim_deployment(
        sessions, DeploymentKey(7, A, 1, HASH_2), is_gone=_gone("chain reset: test"), now=30
    )

    [old] = claim.archived
    assert (old.status, old.archived_at, old.archived_reason) == (ARCHIVED, 30, "chain reset: test")
    assert old.archived_rows == {name: 2 for name in seeded}
    assert claim.active.block_hash == HASH_2 and claim.active.status == ACTIVE
    with sessions() as session:
        assert set(_live(session, 7).values()) == {0}
        assert set(_live(session, 8).values()) == {2}
        kept: dict[str, list[dict[str, Any]]] = {}
        for table, row in archived_rows(session, old.id):
            kept.setdefault(table, []).append(row)
    for table, rows in seeded.items():  # every value comes back as it was stored
        assert [{k: r[k] for k in rows[0]} for r in kept[table]] == rows, table


def test_another_contract_the_chain_still_has_is_refused_and_nothing_moves(
    sessions: sessionmaker[Session],
) -> None:
    claim_deployment(sessions, DeploymentKey(7, A, 1, HASH_1), is_gone=_gone(None), now=10)
    with sessions() as session, session.begin():
        _seed(session, 7)
    with pytest.raises(DeploymentConflictError) as refused:
        claim_deployment(sessions, DeploymentKey(7, B, 5, HASH_2), is_gone=_gone(None), now=20)
    assert str(refused.value).startswith(
        f"this database serves contract {A} on chain 7, which the chain still has; refusing "
        f"to mix its escrows with those of {B}"
    )
    with sessions() as session:
        assert set(_live(session, 7).values()) == {2}
        assert [d.status for d in list_deployments(session)] == [ACTIVE]


def test_the_same_contract_read_from_another_start_block_is_the_same_deployment(
    sessions: sessionmaker[Session],
) -> None:
    first = claim_deployment(sessions, DeploymentKey(7, A, 5, HASH_1), is_gone=_gone(None), now=1)
    again = claim_deployment(sessions, DeploymentKey(7, A, 0, HASH_2), is_gone=_gone(None), now=2)
    assert again.archived == () and again.active.id == first.active.id


def test_rows_from_before_deployments_were_recorded_are_adopted_when_the_index_matches(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session, session.begin():
        _seed(session, 7, index=False)
        session.add(ChainCursor(chain_id=7, contract=A, deployment_block=3, block_number=9,
                                block_hash=HASH_1, reset_detected=None, updated_at=1))
        session.add(IndexedBlock(chain_id=7, number=3, hash=HASH_1))
    claim = claim_deployment(sessions, DeploymentKey(7, A, 3, HASH_1), is_gone=_gone(None), now=5)
    assert claim.archived == ()
    with sessions() as session:
        live = _live(session, 7)
    assert live == {**{name: 2 for name in live}, "chain_cursor": 1, "indexed_block": 1}


def test_rows_from_before_deployments_of_a_lost_chain_are_archived_as_that_deployment(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session, session.begin():
        _seed(session, 7, index=False)
        session.add(ChainCursor(chain_id=7, contract=A, deployment_block=3, block_number=9,
                                block_hash=HASH_1, reset_detected=None, updated_at=1))
        session.add(IndexedBlock(chain_id=7, number=3, hash=HASH_1))
    seen: list[tuple[str, int, str | None]] = []

    def gone(record: DeploymentRecord) -> str | None:
        seen.append((record.contract, record.block_number, record.block_hash))
        return "chain reset: block 3 changed"

    claim = claim_deployment(sessions, DeploymentKey(7, A, 3, HASH_2), is_gone=gone, now=5)
    assert seen == [(A, 3, HASH_1)]
    [old] = claim.archived
    assert old.archived_rows is not None and old.archived_rows["kpi_sample"] == 2
    assert (old.archived_rows["chain_cursor"], old.archived_rows["indexed_block"]) == (1, 1)
    with sessions() as session:
        assert set(_live(session, 7).values()) == {0}


def test_the_operator_can_set_a_live_deployment_aside_for_another_contract(
    sessions: sessionmaker[Session],
) -> None:
    claim_deployment(sessions, DeploymentKey(7, A, 1, HASH_1), is_gone=_gone(None), now=1)
    with sessions() as session, session.begin():
        _seed(session, 7)
    archived = archive_active(sessions, 7, "operator's request", now=2)
    assert archived is not None and archived.archived_reason == "operator's request"
    assert archive_active(sessions, 7, "again", now=3) is None
    claim = claim_deployment(sessions, DeploymentKey(7, B, 5, HASH_2), is_gone=_gone(None), now=4)
    assert claim.active.contract == B and claim.archived == ()


def test_one_chain_has_at_most_one_active_deployment_even_between_processes(
    sessions: sessionmaker[Session],
) -> None:
    claim_deployment(sessions, DeploymentKey(7, A, 1, HASH_1), is_gone=_gone(None), now=1)
    with pytest.raises(IntegrityError), sessions() as session, session.begin():
        session.add(DeploymentRecord(
            chain_id=7, contract=B, block_number=1, block_hash=HASH_2, status=ACTIVE,
            created_at=2, archived_at=None, archived_reason=None, archived_rows=None,
        ))
