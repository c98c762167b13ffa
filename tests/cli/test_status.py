"""`escrow status` reads the configured database and node directly: the health of
`/api/health`, the index lag, each outbox's rows by status and its oldest waiting item with its
age; exit 0 ok, 1 degraded, 2 refused (a database that does not answer). On the in-process
chain and a SQLite file."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from backend import cli
from backend.chain.connect import connect as real_connect
from backend.config import Settings
from backend.db.models import (
    BreachSubmission,
    ConfirmationRequest,
    WebhookDelivery,
    WebhookSubscription,
)
from backend.index.indexer import Indexer
from backend.services import Services
from tests.confirmations.support import relay_services
from tests.support import EscrowEnv

runner = CliRunner()
HOUR = 3_600


@pytest.fixture
def services(env: EscrowEnv, tmp_path: Path) -> Iterator[Services]:
    """The service's database (migrated, its deployment claimed) on the in-process chain."""
    built = relay_services(env, f"sqlite:///{tmp_path / 'escrow.db'}", tmp_path / "data")
    try:
        yield built
    finally:
        built.engine.dispose()


@pytest.fixture
def configured(
    env: EscrowEnv, services: Services, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """What `escrow status` reads: the same database, and the in-process chain as its node."""
    settings = Settings(
        rpc_url="http://127.0.0.1:1", data_dir=services.settings.data_dir,
        database_url=services.settings.database_url,
    )
    monkeypatch.setattr("backend.config.get_settings", lambda: settings)
    monkeypatch.setattr("backend.chain.connect.connect", lambda _url, **_kw: env.w3)
    return settings


def status(*args: str) -> Result:
    return runner.invoke(cli.app, ["status", *args])


def status_json() -> tuple[int, dict[str, Any]]:
    result = status("--json")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    body: dict[str, Any] = json.loads(result.stdout)
    return result.exit_code, body


def fill_outboxes(services: Services, escrow_id: int, now: int) -> None:
    """Rows in every outbox, queued at known times before `now`."""
    chain = services.chain_id
    with services.sessions() as session, session.begin():
        for milestone, (status_, age) in enumerate(
            [("mined", 5 * HOUR), ("pending", 2 * HOUR), ("sent", HOUR), ("failed", 3 * HOUR)]
        ):
            session.add(ConfirmationRequest(
                chain_id=chain, escrow_id=escrow_id, milestone=milestone, rating=5,
                comment_hash="0x" + "00" * 32, deadline=now + HOUR, signature="0x" + "11" * 65,
                signer="0x" + "22" * 20, status=status_, error=None,
                created_at=now - age, updated_at=now - age,
            ))
        for period, (status_, follow_up, age) in enumerate(
            [("mined", "finalize_sent", 4 * HOUR), ("mined", "none", 6 * HOUR),
             ("not_sent", "none", 7 * HOUR)], start=1,
        ):
            session.add(BreachSubmission(
                chain_id=chain, escrow_id=escrow_id, kind=1, period=period,
                evidence_hash="0x" + "33" * 32, oracle="0x" + "44" * 20, status=status_,
                follow_up=follow_up, breach_id=period, error=None,
                created_at=now - age, updated_at=now - age,
            ))
        sub = WebhookSubscription(address="0x" + "55" * 20, url="https://hooks.example/x",
                                  secret="s" * 32, events=["milestone_settled"], active=True,
                                  created_at=now - 9 * HOUR)
        session.add(sub)
        session.flush()
        for n, (status_, age) in enumerate([("delivered", 8 * HOUR), ("pending", 90),
                                            ("pending", 30), ("failed", HOUR)]):
            session.add(WebhookDelivery(
                id=f"00000000-0000-0000-0000-00000000000{n}", subscription_id=sub.id,
                event_type="milestone_settled", event_key=f"milestone_settled:{chain}:1:{n}",
                payload={}, status=status_, attempts=n, next_attempt_at=now,
                last_error=None, delivered_at=None, created_at=now - age,
            ))
        # a delivery about another chain is not this chain's
        session.add(WebhookDelivery(
            id="00000000-0000-0000-0000-0000000000ff", subscription_id=sub.id,
            event_type="milestone_settled", event_key="milestone_settled:1:1:0", payload={},
            status="pending", attempts=0, next_attempt_at=now, last_error=None,
            delivered_at=None, created_at=now - 10 * HOUR,
        ))


def test_status_counts_every_outbox_and_names_its_oldest_waiting_item(
    env: EscrowEnv, services: Services, configured: Settings
) -> None:
    escrow_id = env.create_active()
    Indexer(services).sync()
    now = int(time.time())
    fill_outboxes(services, escrow_id, now)

    code, body = status_json()

    assert code == 0, body
    assert (body["status"], body["reason"]) == ("ok", None)
    assert (body["chain_id"], body["contract"]) == (services.chain_id, services.escrow.address)
    assert body["lag_blocks"] == 0 and body["indexed_block"] == body["head_block"]
    out = body["outboxes"]
    assert out["relayer"]["counts"] == {
        "pending": 1, "signed": 0, "sent": 1, "mined": 1, "settled": 0, "failed": 1,
    }
    assert out["oracle"]["counts"] == {
        "pending": 0, "signed": 0, "sent": 0, "mined": 2, "failed": 0, "not_sent": 1,
        "off_chain": 0,
    }
    assert out["webhooks"]["counts"] == {
        "pending": 2, "delivered": 1, "failed": 1, "cancelled": 0,
    }
    assert [out[n]["waiting"] for n in ("relayer", "oracle", "webhooks")] == [2, 1, 2]

    relayer = out["relayer"]["oldest"]
    assert (relayer["status"], relayer["since"]) == ("pending", now - 2 * HOUR)
    assert relayer["about"] == f"escrow {escrow_id} milestone 1"
    assert 2 * HOUR <= relayer["age_seconds"] < 2 * HOUR + 60
    oracle = out["oracle"]["oldest"]  # a finalization under way waits; a mere mined one not
    assert (oracle["status"], oracle["since"]) == ("mined, finalize_sent", now - 4 * HOUR)
    assert oracle["about"] == f"escrow {escrow_id} kind 1 period 1 breach 1"
    hooks = out["webhooks"]["oldest"]
    assert (hooks["id"], hooks["status"], hooks["since"]) == (
        "00000000-0000-0000-0000-000000000001", "pending", now - 90,
    )
    assert hooks["about"] == f"milestone_settled:{services.chain_id}:1:1, 1 attempts"


def test_the_table_for_people_shows_the_outboxes_with_local_times_and_ages(
    env: EscrowEnv, services: Services, configured: Settings
) -> None:
    escrow_id = env.create_active()
    Indexer(services).sync()
    now = int(time.time())
    fill_outboxes(services, escrow_id, now)

    result = status()

    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "status: ok" in result.stdout
    rows = {
        cells[0]: cells for line in result.stdout.splitlines()
        if (cells := [c.strip() for c in line.strip("│ ").split("│")])[0] in (
            "relayer", "oracle", "webhooks")
    }
    relayer = rows["relayer"]
    assert relayer[1:4] == ["confirmation requests", "failed 1, mined 1, pending 1, sent 1", "2"]
    assert relayer[4] == f"#2 pending: escrow {escrow_id} milestone 1"
    assert relayer[5] == cli.common.local_time(now - 2 * HOUR)
    assert relayer[6].endswith(" s ago") and int(relayer[6].split()[0]) >= 2 * HOUR
    assert rows["oracle"][1:4] == ["breach reports", "mined 2, not_sent 1", "1"]
    assert rows["webhooks"][2:4] == ["pending 2, delivered 1, failed 1", "2"]


def test_an_empty_outbox_has_no_oldest_item(
    env: EscrowEnv, services: Services, configured: Settings
) -> None:
    Indexer(services).sync()
    code, body = status_json()
    assert code == 0
    for name in ("relayer", "oracle", "webhooks"):
        assert (body["outboxes"][name]["waiting"], body["outboxes"][name]["oldest"]) == (0, None)


def test_an_index_lagging_more_than_allowed_is_degraded_with_exit_1(
    env: EscrowEnv, services: Services, configured: Settings
) -> None:
    Indexer(services).sync()
    configured.index_max_lag = 1
    env.create_active()  # blocks the index has not seen
    env.create_active()

    code, body = status_json()

    assert code == 1
    assert body["status"] == "degraded"
    assert body["lag_blocks"] > 1
    assert f"index lags the chain by {body['lag_blocks']} blocks" in body["reason"]
    people = status()
    assert people.exit_code == 1 and "status: degraded" in people.stdout


def test_an_indexer_that_never_ran_is_degraded(
    env: EscrowEnv, services: Services, configured: Settings
) -> None:
    code, body = status_json()
    assert (code, body["status"], body["reason"]) == (1, "degraded", "indexer has not run yet")


def test_a_database_that_does_not_answer_is_refused_without_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path,
                        database_url="postgresql+psycopg://escrow:s3cret@127.0.0.1:1/escrow")
    monkeypatch.setattr("backend.config.get_settings", lambda: settings)

    result = status("--json")

    assert result.exit_code == cli.EXIT_REFUSED, (result.stdout, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith("error: database unavailable: postgresql+psycopg://escrow:***@")
    assert "s3cret" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_a_node_that_does_not_answer_is_degraded_when_the_database_knows_the_chain(
    env: EscrowEnv, services: Services, configured: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    Indexer(services).sync()
    monkeypatch.setattr("backend.chain.connect.connect",
                        lambda _url, **kw: real_connect("http://127.0.0.1:1", **kw))

    code, body = status_json()

    assert code == 1
    assert body["chain_id"] == services.chain_id
    assert body["reason"].startswith("node unreachable: ")
    assert body["head_block"] is None and body["indexed_block"] is not None


def test_without_a_node_nor_a_deployment_in_the_database_status_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.db.session import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    settings = Settings(rpc_url="http://127.0.0.1:1", data_dir=tmp_path, database_url=url)
    monkeypatch.setattr("backend.config.get_settings", lambda: settings)

    result = status()

    assert result.exit_code == cli.EXIT_REFUSED, (result.stdout, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith("error: node unavailable: the node at http://127.0.0.1:1 does not ")
    assert line.endswith("and the database serves no deployments to report on without it")
