"""Logging of every process (`escrow serve`, `escrow up`, the worker commands and the others):
one handler on the root logger, writing to stderr, configured once per process and again
without harm (`configure_logging` is idempotent).

Two formats (`ESCROW_LOG_FORMAT`):

* `text` (default), for people: `2026-12-01 07:05:25.123 INFO backend.outbox.sender relayer
  sent 0x... (nonce 4, ...)`, the time in the host's zone, then the level, the logger and the
  message (a traceback follows on the next lines);
* `json`, for log collectors: one JSON object per line, `{"ts": "2026-12-01T07:05:25.123Z",
  "level": "INFO", "logger": "...", "message": "...", ...}` with `ts` in ISO 8601 UTC, every
  structured field the record was given with `extra=` (`event`, `sender`, `tx_hash`, `nonce`,
  `escrow_id` ..., see docs/architecture.md "Logs") and `exception` (the traceback) if any.

`ESCROW_LOG_LEVEL` (default INFO) is the least severe level written. One-shot commands
(`escrow audit`, `ledger`, `status` ...) write WARNING and above unless it is set, so their
output stays what they print. httpx's own per-request INFO lines are never written (they would
name every webhook URL in full); `safe_url` (from `backend.inputs`) is what a log line may
say of a URL, `redact` what it may say of an error about a request to one.

Uvicorn's loggers (`uvicorn`, `uvicorn.error`, `uvicorn.access`) keep no handler of their own
and hand their records to the same root handler: `configure_logging` sets them so, and
`uvicorn_log_config()` is the `log_config` to give `uvicorn.run` (which otherwise installs its
own handlers), also in the processes uvicorn spawns for `--workers N`.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from typing import Any, Literal, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import ValidationError

from backend.config import Settings
from backend.inputs import safe_url

__all__ = [
    "UVICORN_LOGGERS", "EscrowLogHandler", "JsonFormatter", "TextFormatter", "configure_logging",
    "current_handler", "gwei", "redact", "root_handler", "safe_url", "scrub_urls",
    "uvicorn_log_config",
]

LogFormat = Literal["text", "json"]

#: uvicorn's loggers, routed to the root handler
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
#: libraries whose INFO lines are never written (httpx logs every request with its full URL;
#: alembic names each of its plugins at every start, the migrations it runs still show)
QUIET_LOGGERS = ("httpx", "httpcore", "alembic.runtime.plugins")

#: the attributes every `LogRecord` has; anything else on a record came with `extra=`
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message", "asctime", "taskName",
    "color_message",  # uvicorn's message with terminal colour codes
}


class TextFormatter(logging.Formatter):
    """`time level logger message`, the time local to the host, to the millisecond."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        when = datetime.datetime.fromtimestamp(record.created).astimezone()
        return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: `ts` (ISO 8601 UTC, milliseconds, `Z`),
    `level`, `logger`, `message`, the record's `extra=` fields (values JSON cannot hold are
    written as their `str`), and `exception` / `stack` when the record carries them."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        out: dict[str, Any] = {
            "ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def _formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


class EscrowLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler: writes to `sys.stderr` as it is when a record comes (a test runner or
    `CliRunner` may have replaced it since), or to the stream it was given."""

    def __init__(self, stream: TextIO | None = None) -> None:
        logging.Handler.__init__(self)
        self._fixed = stream

    @property
    def stream(self) -> TextIO:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO | None) -> None:
        self._fixed = value


def current_handler() -> EscrowLogHandler | None:
    """The handler `configure_logging` put on the root logger, if it did."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, EscrowLogHandler):
            return handler
    return None


def configure_logging(
    settings: Settings | None = None, *, quiet: bool = False, stream: TextIO | None = None,
) -> EscrowLogHandler:
    """Puts the one handler on the root logger (or updates it: called again, nothing is added),
    with the format and level of `settings` (`ESCROW_LOG_FORMAT`, `ESCROW_LOG_LEVEL`; defaults
    without). `quiet` (a one-shot command): WARNING unless `ESCROW_LOG_LEVEL` was set.
    `stream`: write there instead of stderr. Routes uvicorn's loggers to it and silences
    httpx's request lines. Returns the handler."""
    log_format: LogFormat = "text" if settings is None else settings.log_format
    level = "INFO" if settings is None else settings.log_level
    if quiet and (settings is None or "log_level" not in settings.model_fields_set):
        level = "WARNING"
    root = logging.getLogger()
    handler = current_handler()
    if handler is None:
        handler = EscrowLogHandler(stream)
        root.addHandler(handler)
    else:
        handler.stream = stream
    handler.setFormatter(_formatter(log_format))
    handler.setLevel(logging.NOTSET)
    root.setLevel(level)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        for own in list(logger.handlers):
            logger.removeHandler(own)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


def root_handler() -> logging.Handler:
    """The root handler for `logging.config.dictConfig` (`uvicorn_log_config`): the one
    `configure_logging` installed in this process, else (a process uvicorn spawned) a new one
    in the format the environment sets (`ESCROW_LOG_FORMAT`; text when it cannot be read)."""
    existing = current_handler()
    if existing is not None:
        return existing
    try:
        log_format: LogFormat = Settings().log_format
    except ValidationError:
        log_format = "text"
    handler = EscrowLogHandler()
    handler.setFormatter(_formatter(log_format))
    return handler


def uvicorn_log_config(settings: Settings | None = None) -> dict[str, Any]:
    """The `log_config` of `uvicorn.run`: the root handler of this module (`root_handler`, so
    that a worker process uvicorn spawns has it too) at `ESCROW_LOG_LEVEL`, uvicorn's loggers
    without handlers of their own, propagating to it."""
    level = "INFO" if settings is None else settings.log_level
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"escrow": {"()": f"{__name__}.root_handler"}},
        "root": {"handlers": ["escrow"], "level": level},
        "loggers": {
            name: {"handlers": [], "propagate": True, "level": "NOTSET"}
            for name in UVICORN_LOGGERS
        },
    }


#: a URL inside a text (an error message): scheme, then anything up to a space or a quote
_URL_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>]+""")


#: punctuation that ends a sentence or a bracket rather than a URL
_TRAILING = ".,;:!?)}"


def scrub_urls(text: str) -> str:
    """`text` (an error message about a request) with every URL in it cut to its `safe_url`."""

    def cut(match: re.Match[str]) -> str:
        url = match.group(0)
        kept = url.rstrip(_TRAILING)
        return safe_url(kept) + url[len(kept):]

    return _URL_IN_TEXT.sub(cut, text)


#: pieces of a URL shorter than this are left in a text by `redact`: replacing every "a" or
#: "42" would garble the message, and so short a piece guards nothing
MIN_REDACTED = 3


def redact(text: str, url: str) -> str:
    """`text` (an error about a request to `url`: an exception's message, a note stored with a
    delivery) safe to log or store: every URL in it cut to its `safe_url` (`scrub_urls`), and
    every secret piece of `url` (user name, password, query string, each query value, fragment;
    as written and percent-decoded) that still occurs in it without a scheme in front replaced
    by `<redacted>` (pieces under `MIN_REDACTED` characters excepted)."""
    out = scrub_urls(text)
    try:
        parts = urlsplit(url)
        pieces = [parts.username, parts.password, parts.query, parts.fragment]
        pieces += [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
    except ValueError:
        return out
    found = {p for piece in pieces if piece for p in (piece, unquote(piece))}
    for piece in sorted(found, key=len, reverse=True):
        if len(piece) >= MIN_REDACTED:
            out = out.replace(piece, "<redacted>")
    return out


def gwei(wei: int | str | None) -> float | None:
    """A fee in wei as gwei (for log lines), None kept."""
    return None if wei is None else int(wei) / 10**9
