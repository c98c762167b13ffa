"""What the command-line tests share.

- ``invoke(*args, input=None)``: runs `escrow ARGS` in process (typer's CliRunner) and returns
  the result (``exit_code``, ``stdout``, ``stderr``); ``refused(*args)`` asserts the one-line
  refusal (exit 2, ``error: ...`` on stderr, no traceback) and returns that line.
- ``cli_settings``: the `Settings` every command reads (``backend.config.get_settings`` is
  patched): a data folder under the test's tmp_path, no keystore password, and new keystores
  made with a small scrypt work factor so tests stay fast.
- logging is put back as it was after each test (``_logging_kept``: every command configures
  it).
- ``live_service``: the real service (app and workers) on a free loopback port against the
  session's Hardhat node (``tests.web.support.live_service_on``), reverted after the test;
  ``cli_settings`` then points ``ESCROW_API_URL`` at it (``live_cli``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from backend import cli
from backend.config import Settings
from tests.support import EscrowEnv
from tests.web.support import LiveService, quick_live_service

Invoke = Callable[..., Result]


@pytest.fixture(autouse=True)
def _logging_kept() -> Iterator[None]:
    """Every command configures logging (`backend/logs.py`, from the CLI's callback): the root
    logger, uvicorn's and httpx's are put back as they were after each test."""
    import logging

    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore")
    kept = [(lg, list(lg.handlers), lg.level, lg.propagate)
            for lg in (logging.getLogger(n) for n in names)]
    try:
        yield
    finally:
        for lg, handlers, level, propagate in kept:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate


@pytest.fixture
def cli_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The configuration the commands read, under tmp_path (no service URL yet)."""
    configured = Settings(data_dir=tmp_path / "cli", keystore_password=None,
                          api_url="http://127.0.0.1:1")
    monkeypatch.setattr("backend.config.get_settings", lambda: configured)
    monkeypatch.setattr("backend.cli.keys.KEYSTORE_ITERATIONS", 16)
    return configured


@pytest.fixture
def invoke(cli_settings: Settings) -> Invoke:
    runner = CliRunner()

    def run(*args: Any, input: str | None = None) -> Result:
        return runner.invoke(cli.app, [str(a) for a in args], input=input)

    return run


@pytest.fixture
def refused(invoke: Invoke) -> Callable[..., str]:
    def run(*args: Any, input: str | None = None) -> str:
        result = invoke(*args, input=input)
        assert result.exit_code == cli.EXIT_REFUSED, (result.stdout, result.stderr,
                                                       result.exception)
        assert "Traceback" not in result.stderr + result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) >= 1 and lines[-1].startswith("error: "), result.stderr
        return lines[-1]

    return run


@pytest.fixture
def live_service(
    hardhat_env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LiveService]:
    """The app and its workers on a free port, on the Hardhat chain and a fresh SQLite file."""
    with quick_live_service(hardhat_env, tmp_path, monkeypatch, "cli") as live:
        yield live


@pytest.fixture
def live_cli(live_service: LiveService, cli_settings: Settings) -> LiveService:
    """The live service, with the commands' `ESCROW_API_URL` pointing at it."""
    cli_settings.api_url = live_service.url
    return live_service
