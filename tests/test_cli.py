"""The `escrow` command reports the project's errors as one line on stderr, `error: <message>`,
with exit status 2, never a traceback; an unexpected error keeps its traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_utils import to_checksum_address
from typer.testing import CliRunner

from backend import cli
from backend.chain.connect import RECURSION_LIMIT
from backend.cli import stack
from backend.config import Settings
from backend.index.indexer import index_once
from backend.services import build_services
from tests.support import EscrowEnv

runner = CliRunner()


def _refused(args: list[str]) -> str:
    """Runs the command, asserts the one-line refusal, returns the line."""
    result = runner.invoke(cli.app, args)
    assert result.exit_code == cli.EXIT_REFUSED, (result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def settings(env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The command line on the in-process chain's escrow, with no database."""
    configured = Settings(
        data_dir=tmp_path, contract_address=env.escrow.address,
        database_url=f"sqlite:///{tmp_path / 'escrow.db'}",
    )
    monkeypatch.setattr("backend.config.get_settings", lambda: configured)
    monkeypatch.setattr("backend.audit.cli.connect", lambda _url: env.w3)
    return configured


@pytest.mark.parametrize("account", ["xyz", "0x1234", "0x" + "g" * 40])
def test_ledger_of_an_account_that_is_no_address_is_one_line(account: str) -> None:
    line = _refused(["ledger", account])
    assert line.startswith(f"error: malformed account: {account[:12]!r}"[:-1])
    assert line.endswith("is not a 20-byte 0x address")


def test_audit_of_an_unknown_escrow_is_one_line_not_inconsistent(
    env: EscrowEnv, settings: Settings
) -> None:
    env.create_active()
    line = _refused(["audit", "999", "--no-database"])
    assert line == "error: unknown escrow 999"


def test_audit_of_a_known_escrow_still_reports_its_checks(
    env: EscrowEnv, settings: Settings
) -> None:
    escrow_id = env.create_active()
    result = runner.invoke(cli.app, ["audit", str(escrow_id), "--no-database", "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert '"consistent": true' in result.stdout or '"consistent":true' in result.stdout


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"kpi,value\nuptime,99\n", "the header lacks observed_at"),
        (b"\xff\xfe\x00k\x00p\x00i", "not UTF-8 text"),
    ],
    ids=["missing-column", "not-utf8"],
)
def test_importing_a_malformed_csv_is_one_line(
    settings: Settings, tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "samples.csv"
    path.write_bytes(content)
    line = _refused(["measurements", "import", str(path), "--escrow", "1"])
    assert line.startswith(f"error: malformed CSV file {path}: ")
    assert reason in line


def test_importing_a_missing_csv_is_one_line(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "missing.csv"
    line = _refused(["measurements", "import", str(path), "--escrow", "1"])
    assert line.startswith(f"error: malformed CSV file {path}: ")


def test_an_unexpected_error_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("backend.config.get_settings", broken)
    result = runner.invoke(cli.app, ["ledger", "0x" + "11" * 20])
    assert isinstance(result.exception, RuntimeError)
    assert result.exit_code == 1
    assert "error: a bug" not in result.stderr


@pytest.fixture
def fresh_chain_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A fresh in-process chain and an empty database: no escrow is known."""
    configured = Settings(
        rpc_url="tester://", data_dir=tmp_path, contract_address="0x" + "11" * 20,
        database_url=f"sqlite:///{tmp_path / 'escrow.db'}",
    )
    monkeypatch.setattr("backend.config.get_settings", lambda: configured)
    return configured


def test_issuing_a_token_for_an_unknown_escrow_is_one_line(
    fresh_chain_settings: Settings,
) -> None:
    assert _refused(["tokens", "issue", "999"]) == "error: unknown escrow 999"


def test_importing_samples_for_an_unknown_escrow_is_one_line(
    fresh_chain_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "samples.csv"
    path.write_text("kpi,value,observed_at\nuptime,99.9,1700000000\n", encoding="utf-8")
    line = _refused(["measurements", "import", str(path), "--escrow", "999"])
    assert line == "error: unknown escrow 999"


def test_ledger_of_an_account_no_indexed_escrow_names_is_unknown_account(
    fresh_chain_settings: Settings,
) -> None:
    account = "0x" + "22" * 20
    line = _refused(["ledger", account])
    assert line.startswith(f"error: unknown account {to_checksum_address(account)}: ")


def test_ledger_of_an_indexed_account_is_its_csv(
    env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configured = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'escrow.db'}")
    monkeypatch.setattr("backend.config.get_settings", lambda: configured)
    monkeypatch.setattr(
        "backend.services.build_services",
        lambda settings: build_services(
            settings, w3=env.w3, contract_address=env.escrow.address,
            deployment_block=env.deployment_block,
        ),
    )
    escrow_id = env.create_active()
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    services = build_services(configured, w3=env.w3, contract_address=env.escrow.address,
                              deployment_block=env.deployment_block)
    try:
        index_once(services)
    finally:
        services.engine.dispose()
    result = runner.invoke(cli.app, ["ledger", env.provider.lower()])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert len(result.stdout.strip().splitlines()) >= 2  # the header and a movement
    # an account of the chain without escrows is still unknown
    _refused(["ledger", env.parties.stranger.address])


def test_build_services_puts_back_the_recursion_limit_the_chain_libraries_raised(
    env: EscrowEnv, settings: Settings
) -> None:
    """Every worker process builds its services, not the app: it runs under the bound too."""
    import sys

    import py_ecc  # noqa: F401  (raises it to 100,000 on import)

    sys.setrecursionlimit(100_000)
    services = build_services(settings, w3=env.w3, contract_address=env.escrow.address,
                              deployment_block=env.deployment_block)
    services.engine.dispose()
    assert sys.getrecursionlimit() == RECURSION_LIMIT


def test_deployments_lists_the_served_and_archived_ones_and_archive_needs_yes(
    env: EscrowEnv, settings: Settings
) -> None:
    services = build_services(settings, w3=env.w3, contract_address=env.escrow.address,
                              deployment_block=env.deployment_block)
    services.engine.dispose()
    listed = runner.invoke(cli.app, ["deployments", "--json"])
    assert listed.exit_code == 0, (listed.stdout, listed.stderr)
    [served] = json.loads(listed.stdout)
    assert (served["chain_id"], served["contract"], served["status"]) == (
        services.chain_id, env.escrow.address, "active"
    )

    line = _refused(["deployments", "archive", "--chain-id", str(services.chain_id)])
    assert line == (
        f"error: archiving sets every row of chain {services.chain_id} aside; add --yes to "
        "confirm"
    )
    done = runner.invoke(
        cli.app, ["deployments", "archive", "--yes", "--chain-id", str(services.chain_id),
                  "--json"],
    )
    assert done.exit_code == 0, (done.stdout, done.stderr)
    assert json.loads(done.stdout) == {"id": served["id"], "archived_rows": {}}
    table = runner.invoke(cli.app, ["deployments"])
    assert table.exit_code == 0 and "archived" in table.stdout
    assert _refused(["deployments", "archive", "--yes", "--chain-id", "5"]) == (
        "error: unknown active deployment on chain 5"
    )

    # what `escrow up` and `escrow serve` print when they start
    restarted = build_services(settings, w3=env.w3, contract_address=env.escrow.address,
                               deployment_block=env.deployment_block)
    try:
        with cli.console.capture() as captured:
            stack.print_archived(restarted)
    finally:
        restarted.engine.dispose()
    first, second = captured.get().splitlines()
    assert first.startswith("archived ")
    assert first.endswith(
        f": deployment {served['id']}, contract {env.escrow.address} (block "
        f"{env.deployment_block}), 0 rows kept aside; archived on the operator's request"
    )
    assert second == "list them with `escrow deployments`"


def test_tokens_issue_json_prints_the_token_once_and_it_authenticates(
    env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.oracle.measurements import authenticate

    configured = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'escrow.db'}")
    monkeypatch.setattr("backend.config.get_settings", lambda: configured)
    services = build_services(configured, w3=env.w3, contract_address=env.escrow.address,
                              deployment_block=env.deployment_block)
    monkeypatch.setattr("backend.oracle.cli.build_services", lambda _settings: services)
    escrow_id = env.create_active()
    try:
        index_once(services)
        result = runner.invoke(
            cli.app, ["tokens", "issue", str(escrow_id), "--label", "probe", "--json"])
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        issued = json.loads(result.stdout)
        assert (issued["escrow_id"], issued["label"]) == (escrow_id, "probe")
        with services.sessions() as session:
            row = authenticate(session, services.chain_id, escrow_id, issued["token"])
        assert row.label == "probe"
    finally:
        services.engine.dispose()
