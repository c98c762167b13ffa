"""The account-wide accounting export (`escrow ledger ACCOUNT --from DATE --to DATE`): every
money movement touching the account across its escrows and its withdrawals, with token decimals,
in chain order, filtered by inclusive UTC days. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from eth_typing import HexStr

from backend.chain.tokens import TokenMetadata
from backend.errors import NotFoundError, OutOfRangeError
from backend.escrows.ledger_export import (
    account_ledger,
    ledger_csv,
    ledger_rows,
    parse_days,
    write_csv,
)
from backend.escrows.statements import COLUMNS
from tests.api.support import Api
from tests.support import DAY, ETH

TUSD = 1_500_000  # 1.5 of a 6-decimal token


@dataclass
class History:
    eth_escrow: int
    token_escrow: int
    eth_settle: str
    token_settle: str
    provider_withdrawal: str
    day1: date
    day3: date

    def ts(self, api: Api, tx: str) -> int:
        block = api.env.w3.eth.get_transaction(HexStr(tx))["blockNumber"]
        return int(api.env.w3.eth.get_block(block)["timestamp"])


def _day(api: Api, tx: str) -> date:
    block = api.env.w3.eth.get_transaction(HexStr(tx))["blockNumber"]
    return datetime.fromtimestamp(api.env.w3.eth.get_block(block)["timestamp"], UTC).date()


def _history(api: Api) -> History:
    """The provider in an ETH escrow (settled on day 1 at rating 4) and a token escrow (settled
    two days later at rating 5), then both parties withdraw their ETH."""
    env = api.env
    a = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(a, 0)
    eth_settle = env.escrow.confirm(a, 0, 4, None, env.client).tx_hash
    env.advance(2 * DAY)
    b = env.create_active(env.params((TUSD,), token=env.token))
    env.deliver(b, 0)
    token_settle = env.escrow.confirm(b, 0, 5, None, env.client).tx_hash
    withdrawal = env.escrow.withdraw(None, env.provider).tx_hash
    env.escrow.withdraw(None, env.client)  # not the provider's: never in its rows
    api.index()
    return History(a, b, eth_settle, token_settle, withdrawal,
                   _day(api, eth_settle), _day(api, token_settle))


def _cells(api: Api, account: str, **days: date) -> list[list[str]]:
    with api.services.sessions() as session:
        rows = ledger_rows(session, api.services.chain_id, TokenMetadata(api.env.w3), account,
                           days.get("date_from"), days.get("date_to"))
    return [r.cells() for r in rows]


def test_the_ledger_lists_every_movement_of_the_account_in_two_escrows_and_its_withdrawal(
    api: Api,
) -> None:
    env = api.env
    h = _history(api)
    provider, client = env.provider, env.client
    t1, t3 = h.ts(api, h.eth_settle), h.ts(api, h.token_settle)
    tw = h.ts(api, h.provider_withdrawal)
    chain = env.w3.eth

    def where(tx: str) -> tuple[str, str]:
        return str(chain.get_transaction(HexStr(tx))["blockNumber"]), tx

    def iso(t: int) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    (b1, x1), (b3, x3), (bw, xw) = where(h.eth_settle), where(h.token_settle), where(
        h.provider_withdrawal)
    rows = _cells(api, provider.lower())

    log = [r[COLUMNS.index("log_index")] for r in rows]
    assert log[0] == log[1]  # release and refund come from the same MilestoneSettled log
    assert rows == [
        [str(t1), iso(t1), b1, x1, log[0], str(h.eth_escrow), "0", "", "release", provider,
         client, "ETH", "0x0000000000000000000000000000000000000000",
         "0.800000000000000000", str(8 * ETH // 10)],
        [str(t1), iso(t1), b1, x1, log[1], str(h.eth_escrow), "0", "", "refund", client,
         provider, "ETH", "0x0000000000000000000000000000000000000000",
         "0.200000000000000000", str(2 * ETH // 10)],
        [str(t3), iso(t3), b3, x3, log[2], str(h.token_escrow), "0", "", "release", provider,
         client, "TUSD", env.token, "1.500000", str(TUSD)],
        [str(tw), iso(tw), bw, xw, log[3], "", "", "", "withdrawal", provider, "escrow",
         "ETH", "0x0000000000000000000000000000000000000000",
         "0.800000000000000000", str(8 * ETH // 10)],
    ]
    assert int(b1) < int(b3) < int(bw)


def test_the_ledger_of_the_client_starts_with_its_deposits(api: Api) -> None:
    env = api.env
    h = _history(api)
    rows = _cells(api, env.client)
    assert [(r[5], r[8], r[13]) for r in rows] == [
        (str(h.eth_escrow), "deposit", "3.000000000000000000"),
        (str(h.eth_escrow), "release", "0.800000000000000000"),
        (str(h.eth_escrow), "refund", "0.200000000000000000"),
        (str(h.token_escrow), "deposit", "1.500000"),
        (str(h.token_escrow), "release", "1.500000"),
        ("", "withdrawal", "0.200000000000000000"),
    ]


def test_the_ledger_keeps_only_the_inclusive_utc_days_asked_for(api: Api) -> None:
    env = api.env
    h = _history(api)
    assert h.day3 == h.day1 + timedelta(days=2)

    def kinds(**days: date) -> list[tuple[str, str]]:
        return [(r[5], r[8]) for r in _cells(api, env.provider, **days)]

    late = [(str(h.token_escrow), "release"), ("", "withdrawal")]
    early = [(str(h.eth_escrow), "release"), (str(h.eth_escrow), "refund")]
    assert kinds(date_to=h.day1) == early
    assert kinds(date_from=h.day1, date_to=h.day1) == early
    assert kinds(date_from=h.day1 + timedelta(days=1)) == late
    assert kinds(date_from=h.day3, date_to=h.day3) == late
    assert kinds(date_from=h.day1 + timedelta(days=1), date_to=h.day1 + timedelta(days=1)) == []
    assert kinds(date_from=h.day1, date_to=h.day3) == early + late


def test_the_account_ledger_is_the_statement_csv_and_refuses_an_unknown_account(
    api: Api,
) -> None:
    env = api.env
    h = _history(api)
    tokens = TokenMetadata(env.w3)
    chain_id = api.services.chain_id
    with api.services.sessions() as session:
        rows = account_ledger(session, chain_id, tokens, env.provider, h.day3, h.day3)
        # the arbiter is named by the escrows, but neither as client nor as provider
        with pytest.raises(NotFoundError, match=f"unknown account {env.arbiter}: no indexed"):
            account_ledger(session, chain_id, tokens, env.arbiter)
        # a known account with nothing on those days: the header only
        after = h.day3 + timedelta(days=1)
        assert account_ledger(session, chain_id, tokens, env.provider, after, after) == []
    out = io.StringIO()
    write_csv(rows, out)
    assert ledger_csv(rows) == out.getvalue()

    lines = out.getvalue().split("\r\n")
    assert lines[0] == ",".join(COLUMNS)
    assert len(lines) == 4 and lines[3] == ""
    assert lines[1].endswith(f",release,{env.provider},{env.client},TUSD,{env.token},1.500000,"
                             f"{TUSD}")
    assert ",withdrawal," in lines[2]
    assert ledger_csv([]) == ",".join(COLUMNS) + "\r\n"


@pytest.mark.parametrize(
    ("date_from", "date_to", "field", "expected"),
    [
        ("2025-3-01", None, "from", "a day YYYY-MM-DD (UTC)"),
        ("20250301", None, "from", "a day YYYY-MM-DD (UTC)"),
        (None, "2025-02-30", "to", "a day YYYY-MM-DD (UTC)"),
        (None, "2025-03-01T00:00", "to", "a day YYYY-MM-DD (UTC)"),
        ("2025-03-02", "2025-03-01", "from", "a day no later than to=2025-03-01"),
    ],
    ids=["short-month", "no-dashes", "february-30", "a-time", "from-after-to"],
)
def test_ledger_days_are_utc_dates_in_order(
    date_from: str | None, date_to: str | None, field: str, expected: str
) -> None:
    with pytest.raises(OutOfRangeError) as refused:
        parse_days(date_from, date_to)
    assert refused.value.field == field and refused.value.expected == expected
    assert parse_days("2025-03-01", "2025-03-01") == (date(2025, 3, 1), date(2025, 3, 1))
    assert parse_days(None, None) == (None, None)
