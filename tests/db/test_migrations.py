"""Migrations build the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from eth_account import Account
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import Session

from backend.db.models import (
    Base,
    BreachSubmission,
    ConfirmationRequest,
    MilestoneDocument,
    OutboxTransaction,
)
from backend.db.session import migrate


def test_migrate_creates_every_table_of_the_models(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    assert "alembic_version" in tables


def test_migrate_is_idempotent(engine: Engine) -> None:
    migrate(engine)
    migrate(engine)
    assert "event_log" in inspect(engine).get_table_names()


def test_migrations_match_the_models(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def _upgrade(engine: Engine, revision: str, *, down: bool = False) -> None:
    from alembic import command

    from backend.db.session import alembic_config

    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(cfg, revision)


def _signed(nonce: int) -> tuple[str, str]:
    """Raw bytes and hash (0x hex) of a signed EIP-1559 transaction of dev key `KEY`."""
    signed = Account.from_key(KEY).sign_transaction({
        "to": "0x" + "33" * 20, "value": 1, "gas": 21_000, "nonce": nonce, "chainId": 31337,
        "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
    })
    return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()


KEY = "0x" + "42" * 32


def test_the_outbox_migration_carries_the_signed_transactions_over_and_back(
    engine: Engine,
) -> None:
    sender = Account.from_key(KEY).address
    (raw_c, hash_c), (raw_r, hash_r), (raw_f, hash_f) = _signed(7), _signed(8), _signed(9)
    _upgrade(engine, "0004", down=True)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO confirmation_request (id, chain_id, escrow_id, milestone, rating, "
                "comment_hash, deadline, signature, signer, status, nonce, raw_tx, tx_hash, "
                "error, created_at, updated_at) VALUES (1, 31337, 4, 0, 5, :h, 99, '0x11', "
                ":a, 'sent', 7, :raw, :hash, NULL, 10, 11)"
            ), {"h": "0x" + "00" * 32, "a": sender, "raw": raw_c, "hash": hash_c})
            conn.execute(text(
                "INSERT INTO breach_submission (id, chain_id, escrow_id, kind, period, "
                "evidence_hash, oracle, status, nonce, raw_tx, tx_hash, breach_id, follow_up, "
                "finalize_raw_tx, finalize_tx_hash, error, created_at, updated_at) VALUES "
                "(1, 31337, 4, 1, 7, :h, :a, 'mined', 8, :raw, :hash, 0, 'finalize_signed', "
                ":fraw, :fhash, NULL, 20, 21)"
            ), {"h": "0x" + "ab" * 32, "a": sender, "raw": raw_r, "hash": hash_r,
                "fraw": raw_f, "fhash": hash_f})
        _upgrade(engine, "head")
        with Session(engine) as session:
            request = session.get(ConfirmationRequest, 1)
            breach = session.get(BreachSubmission, 1)
            assert request is not None and request.transaction is not None
            assert breach is not None and breach.report_tx is not None
            assert breach.finalize_tx is not None
            got = [
                (t.sender, t.purpose, t.account, t.nonce, t.raw_tx, t.tx_hash, t.status)
                for t in (request.transaction, breach.report_tx, breach.finalize_tx)
            ]
        assert got == [
            ("relayer", "confirm", sender, 7, raw_c, hash_c, "sent"),
            ("oracle", "report", sender, 8, raw_r, hash_r, "mined"),
            ("oracle", "finalize", sender, 9, raw_f, hash_f, "signed"),
        ]

        _upgrade(engine, "0004", down=True)
        with engine.connect() as conn:
            back = conn.execute(text(
                "SELECT nonce, raw_tx, tx_hash, finalize_raw_tx, finalize_tx_hash "
                "FROM breach_submission"
            )).one()
            request_back = conn.execute(
                text("SELECT nonce, raw_tx, tx_hash FROM confirmation_request")
            ).one()
        assert tuple(back) == (8, raw_r, hash_r, raw_f, hash_f)
        assert tuple(request_back) == (7, raw_c, hash_c)
    finally:
        _upgrade(engine, "head")


def test_the_fee_migration_reads_the_fees_of_stored_transactions_and_maps_new_states_back(
    engine: Engine,
) -> None:
    sender = Account.from_key(KEY).address
    (raw_a, hash_a), (raw_b, hash_b) = _signed(3), _signed(4)
    _upgrade(engine, "0005", down=True)
    try:
        with engine.begin() as conn:
            for tx_id, nonce, raw, tx_hash, status in (
                (1, 3, raw_a, hash_a, "sent"), (2, 4, raw_b, hash_b, "mined")
            ):
                conn.execute(text(
                    "INSERT INTO outbox_transaction (id, chain_id, account, sender, purpose, "
                    "nonce, raw_tx, tx_hash, status, error, created_at, updated_at) VALUES "
                    "(:id, 31337, :a, 'relayer', 'confirm', :n, :raw, :hash, :s, NULL, 1, 2)"
                ), {"id": tx_id, "a": sender, "n": nonce, "raw": raw, "hash": tx_hash,
                    "s": status})
        _upgrade(engine, "head")
        with Session(engine) as session:
            txs = [session.get(OutboxTransaction, i) for i in (1, 2)]
            got = [
                (t.max_fee_per_gas, t.max_priority_fee_per_gas, t.replaces_id, t.first_id,
                 t.sent_block, t.block_number, t.block_hash, t.status)
                for t in txs if t is not None
            ]
            assert got == [
                (str(10**10), str(10**9), None, None, None, None, None, "sent"),
                (str(10**10), str(10**9), None, None, None, None, None, "mined"),
            ]
            first, second = txs
            assert first is not None and second is not None
            first.status, second.status = "replaced", "reorged"
            second.replaces_id = second.first_id = first.id
            session.commit()

        _upgrade(engine, "0005", down=True)
        with engine.connect() as conn:
            back = conn.execute(text("SELECT id, status FROM outbox_transaction ORDER BY id")).all()
            columns = {c["name"] for c in inspect(conn).get_columns("outbox_transaction")}
        assert [tuple(r) for r in back] == [(1, "superseded"), (2, "mined")]
        assert not columns & {"max_fee_per_gas", "replaces_id", "first_id", "block_hash"}
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM outbox_transaction"))
        _upgrade(engine, "head")


def test_the_delivery_migration_adds_its_table_and_the_role_indexes_and_takes_them_back(
    engine: Engine,
) -> None:
    def escrow_indexes() -> set[str]:
        return {str(i["name"]) for i in inspect(engine).get_indexes("escrow")}

    assert {"ix_escrow_arbiter", "ix_escrow_oracle"} <= escrow_indexes()
    _upgrade(engine, "0008", down=True)
    try:
        assert "delivery_document" in inspect(engine).get_table_names()
        _upgrade(engine, "0007", down=True)
        assert "delivery_document" not in inspect(engine).get_table_names()
        assert not {"ix_escrow_arbiter", "ix_escrow_oracle"} & escrow_indexes()
        assert {"ix_escrow_client", "ix_escrow_provider"} <= escrow_indexes()
    finally:
        _upgrade(engine, "head")
    assert {"ix_escrow_arbiter", "ix_escrow_oracle"} <= escrow_indexes()


def test_the_milestone_document_migration_carries_delivery_documents_over_and_back(
    engine: Engine,
) -> None:
    delivery, dispute = "0x" + "ab" * 32, "0x" + "cd" * 32
    _upgrade(engine, "0008", down=True)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO delivery_document (delivery_hash, canonical, created_at) "
                "VALUES (:h, :c, 7)"
            ), {"h": delivery, "c": '{"attachments":[],"note":"done"}'})
        _upgrade(engine, "head")
        tables = inspect(engine).get_table_names()
        assert "milestone_document" in tables and "delivery_document" not in tables
        with Session(engine) as session, session.begin():
            row = session.get(MilestoneDocument, delivery)
            assert row is not None
            assert (row.kind, row.canonical, row.created_at) == (
                "delivery", '{"attachments":[],"note":"done"}', 7)
            session.add(MilestoneDocument(document_hash=dispute, kind="dispute",
                                          canonical='{"attachments":[],"reason":"late"}',
                                          created_at=8))

        _upgrade(engine, "0008", down=True)  # dispute reasons had no table: they are dropped
        with engine.connect() as conn:
            back = conn.execute(text(
                "SELECT delivery_hash, canonical, created_at FROM delivery_document"
            )).all()
        assert "milestone_document" not in inspect(engine).get_table_names()
        assert [tuple(r) for r in back] == [(delivery, '{"attachments":[],"note":"done"}', 7)]
    finally:
        _upgrade(engine, "head")
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM milestone_document"))
