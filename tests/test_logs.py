"""Logging of every process (backend/logs.py): human lines `time level logger message` by
default, one JSON object per line with the record's structured fields for log collectors, set up
once however often a process asks (the CLI does on every invocation), uvicorn's loggers through
the same handler, and URLs in log lines cut to scheme://host[:port]/path."""

from __future__ import annotations

import datetime
import io
import json
import logging
import logging.config
import re
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from backend import cli
from backend.config import Settings
from backend.logs import (
    UVICORN_LOGGERS,
    EscrowLogHandler,
    configure_logging,
    safe_url,
    scrub_urls,
    uvicorn_log_config,
)

WATCHED = ("", *UVICORN_LOGGERS, "httpx", "httpcore")


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Every logger this module's tests configure is put back as it was."""
    kept = {
        name: (list(lg.handlers), lg.level, lg.propagate)
        for name in WATCHED
        for lg in [logging.getLogger(name)]
    }
    try:
        yield
    finally:
        for name, (handlers, level, propagate) in kept.items():
            lg = logging.getLogger(name)
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate


def ours() -> list[EscrowLogHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, EscrowLogHandler)]


def test_text_lines_read_time_level_logger_message() -> None:
    out = io.StringIO()
    configure_logging(Settings(), stream=out)
    logging.getLogger("backend.example").info("relayer sent %s", "0xabc", extra={"nonce": 4})
    logging.getLogger("backend.example").debug("not at INFO")

    [line] = out.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO backend\.example relayer sent 0xabc", line
    ), line


def test_json_lines_carry_utc_time_level_logger_message_and_the_extra_fields() -> None:
    out = io.StringIO()
    configure_logging(Settings(log_format="json"), stream=out)
    before = datetime.datetime.now(datetime.UTC)
    logging.getLogger("backend.outbox.sender").info(
        "relayer sent %s", "0xabc",
        extra={"event": "tx_sent", "sender": "relayer", "row_id": 3, "tx_hash": "0xabc",
               "nonce": 4, "max_fee_gwei": 1.5, "tip_gwei": None},
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("backend.workers").exception("pass failed")

    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first.pop("ts").endswith("Z")
    assert first == {
        "level": "INFO", "logger": "backend.outbox.sender", "message": "relayer sent 0xabc",
        "event": "tx_sent", "sender": "relayer", "row_id": 3, "tx_hash": "0xabc", "nonce": 4,
        "max_fee_gwei": 1.5, "tip_gwei": None,
    }
    when = datetime.datetime.fromisoformat(second["ts"].replace("Z", "+00:00"))
    assert when.tzinfo == datetime.UTC
    assert abs((when - before).total_seconds()) < 60
    assert (second["level"], second["message"]) == ("ERROR", "pass failed")
    assert "RuntimeError: boom" in second["exception"]


def test_the_format_and_level_come_from_the_environment_in_any_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ESCROW_LOG_FORMAT", "JSON")
    monkeypatch.setenv("ESCROW_LOG_LEVEL", "debug")
    settings = Settings()
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")
    monkeypatch.setenv("ESCROW_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError):
        Settings()


def test_configuring_again_keeps_one_handler_and_takes_the_new_format() -> None:
    out = io.StringIO()
    configure_logging(Settings(), stream=out)
    configure_logging(Settings(log_format="json"), stream=out)
    configure_logging(Settings(log_format="json"), stream=out)
    assert len(ours()) == 1
    logging.getLogger("backend.example").warning("once")
    [line] = out.getvalue().splitlines()
    assert json.loads(line)["message"] == "once"


def test_every_cli_invocation_configures_logging_and_still_leaves_one_handler() -> None:
    runner = CliRunner()
    for _ in range(3):
        result = runner.invoke(cli.app, ["ledger", "not-an-address"])
        assert result.exit_code == cli.EXIT_REFUSED
    assert len(ours()) == 1
    # a one-shot command writes warnings and worse only: its output stays what it prints
    assert logging.getLogger().level == logging.WARNING


def test_one_shot_commands_log_warnings_unless_the_level_is_set() -> None:
    configure_logging(Settings(), quiet=True)
    assert logging.getLogger().level == logging.WARNING
    configure_logging(Settings(log_level="DEBUG"), quiet=True)
    assert logging.getLogger().level == logging.DEBUG
    configure_logging(Settings())
    assert logging.getLogger().level == logging.INFO


def test_the_handler_writes_to_stderr_as_it_is_when_a_record_comes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(Settings())
    logging.getLogger("backend.example").warning("to the current stderr")
    assert "WARNING backend.example to the current stderr" in capsys.readouterr().err


def test_uvicorns_loggers_go_through_the_same_handler() -> None:
    out = io.StringIO()
    configure_logging(Settings(log_format="json"), stream=out)
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addHandler(logging.StreamHandler(io.StringIO()))  # as uvicorn's default has
    configure_logging(Settings(log_format="json"), stream=out)
    uvicorn_error.info("Uvicorn running on http://127.0.0.1:8000",
                       extra={"color_message": "Uvicorn running on \x1b[1mhttp\x1b[0m"})

    # uvicorn.run(log_config=uvicorn_log_config()) keeps it so
    logging.config.dictConfig(uvicorn_log_config(Settings()))
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /api/health HTTP/1.1" 200')

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["logger"], x["level"]) for x in lines] == [
        ("uvicorn.error", "INFO"), ("uvicorn.access", "INFO"),
    ]
    assert "color_message" not in lines[0]  # uvicorn's terminal colours stay out of the JSON
    assert all(not logging.getLogger(name).handlers for name in UVICORN_LOGGERS)
    assert len(ours()) == 1


def test_httpx_request_lines_are_not_written() -> None:
    out = io.StringIO()
    configure_logging(Settings(log_level="DEBUG"), stream=out)
    logging.getLogger("httpx").info("HTTP Request: POST https://u:p@hooks.example/x?token=t")
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:secret@hooks.example.com:8443/in/escrow?token=abc#x",
         "https://hooks.example.com:8443/in/escrow"),
        ("http://127.0.0.1:9000/hook", "http://127.0.0.1:9000/hook"),
        ("http://[::1]:80/x?y=1", "http://[::1]:80/x"),
        ("http://host:notaport/x", "<malformed url>"),
    ],
)
def test_a_url_in_a_log_line_is_scheme_host_port_path_only(url: str, shown: str) -> None:
    assert safe_url(url) == shown


def test_urls_quoted_in_an_error_are_cut_too() -> None:
    error = "ConnectError: cannot reach 'https://u:pw@h.example/p?token=abc' (http://x/y?k=v)"
    assert scrub_urls(error) == "ConnectError: cannot reach 'https://h.example/p' (http://x/y)"
