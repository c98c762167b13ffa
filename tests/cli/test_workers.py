"""The workers as processes of their own (`escrow index|relay|oracle|webhooks`) on the in-process
chain and SQLite: `--once` passes with `--json`, the one-line refusal of a second instance
(`--no-standby`, and `--once`, which never waits), a standby that a signal stops without ever
being active, SIGTERM stopping a worker cleanly; and `escrow serve --workers N` refusing SQLite.
(The takeover of a killed worker on PostgreSQL: tests/outbox/test_takeover.py.)"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.chain.keys import relayer_account
from backend.config import Settings
from backend.outbox.owner import ownership, worker_lease
from backend.services import Services, build_services
from tests.cli.conftest import Invoke
from tests.support import EscrowEnv


@pytest.fixture
def cli_settings(env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The commands on the in-process chain's escrow and a SQLite file under tmp_path."""
    configured = Settings(
        data_dir=tmp_path / "cli", contract_address=env.escrow.address,
        database_url=f"sqlite:///{tmp_path / 'escrow.db'}", lease_poll_interval=0.05,
    )
    monkeypatch.setattr("backend.config.get_settings", lambda: configured)
    monkeypatch.setattr("backend.services.connect", lambda _url: env.w3)
    return configured


@pytest.fixture
def other(env: EscrowEnv, cli_settings: Settings) -> Iterator[Services]:
    """Another process's services on the same chain, database and data dir."""
    services = build_services(cli_settings, w3=env.w3)
    try:
        yield services
    finally:
        services.engine.dispose()


def sigterm_when_handled(delay: float = 0.3) -> threading.Thread:
    """Sends this process SIGTERM once a command has put its own handler in place."""
    before = signal.getsignal(signal.SIGTERM)

    def send() -> None:
        deadline = time.monotonic() + 30
        while signal.getsignal(signal.SIGTERM) is before:
            assert time.monotonic() < deadline, "the command never handled SIGTERM"
            time.sleep(0.01)
        time.sleep(delay)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_once_passes_print_what_they_did_as_json(invoke: Invoke) -> None:
    index = invoke("index", "--once", "--json")
    assert index.exit_code == 0, index.stderr
    assert set(json.loads(index.stdout)) == {"stored"}
    relay = invoke("relay", "--once", "--json")
    assert relay.exit_code == 0, relay.stderr
    assert json.loads(relay.stdout)["mined"] == 0
    oracle = invoke("oracle", "--once", "--json")
    assert oracle.exit_code == 0, oracle.stderr
    assert json.loads(oracle.stdout)["enqueued"] == 0
    webhooks = invoke("webhooks", "--once", "--json")
    assert webhooks.exit_code == 0, webhooks.stderr
    assert json.loads(webhooks.stdout) == {"tried": 0}


def test_a_second_relayer_without_standby_is_refused_in_one_line(
    refused: Callable[..., str], other: Services
) -> None:
    relayer = relayer_account(other.w3, other.settings).address
    with ownership(other, "relayer", relayer):
        line = refused("relay", "--no-standby")
        assert line == (
            f"error: another relayer already sends from {relayer} on chain {other.chain_id}; "
            "only one process may own its nonce"
        )
        assert refused("relay", "--once").startswith("error: another relayer already sends")


def test_a_one_shot_index_never_waits_for_an_active_indexer(
    refused: Callable[..., str], other: Services
) -> None:
    with worker_lease(other, "indexer"):
        line = refused("index", "--once")
    assert line.startswith(
        f"error: another indexer is already active for {other.escrow.address} on chain "
        f"{other.chain_id}"
    )


def test_sigterm_stops_a_running_worker_cleanly(invoke: Invoke) -> None:
    before = signal.getsignal(signal.SIGTERM)
    sender = sigterm_when_handled()
    result = invoke("webhooks")
    sender.join(5)
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert result.stdout.startswith("webhook dispatcher of ")
    assert result.stdout.rstrip().endswith("stopped")
    assert signal.getsignal(signal.SIGTERM) is before  # the command's handler is gone again


def test_a_standby_stopped_by_a_signal_leaves_without_ever_being_active(
    invoke: Invoke, other: Services, caplog: pytest.LogCaptureFixture
) -> None:
    with worker_lease(other, "indexer"):
        sender = sigterm_when_handled(delay=0.5)
        result = invoke("index")
        sender.join(5)
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert result.stdout.rstrip().endswith("stopped")
    said = [r.getMessage() for r in caplog.records if r.name == "backend.outbox.owner"]
    assert said == ["standby: another indexer is active; taking over when it stops"]


def test_serve_on_several_processes_refuses_sqlite_in_one_line(
    refused: Callable[..., str],
) -> None:
    assert refused("serve", "--no-workers", "--workers", "3") == (
        "error: --workers 3 needs PostgreSQL (ESCROW_DATABASE_URL): SQLite has one writer at a "
        "time, so serve it from one process"
    )
