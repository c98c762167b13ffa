"""`GET /api/accounts/{address}/ledger.csv?from=&to=`: the account's money movements over all its
escrows as the CSV attachment `escrow ledger` prints, byte for byte (one rule in
`backend.escrows.ledger_export`, two front ends); 404 `unknown account` where the command exits
2, 400 a malformed address, 422 a malformed day or `from` after `to`. Every test runs on SQLite
and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from eth_typing import HexStr
from typer.testing import CliRunner

from backend import cli
from backend.escrows.statements import COLUMNS
from tests.api.support import Api
from tests.support import DAY, ETH

HEADER = ",".join(COLUMNS) + "\r\n"


@dataclass
class History:
    day1: date
    day3: date


def _day(api: Api, tx: str) -> date:
    block = api.env.w3.eth.get_transaction(HexStr(tx))["blockNumber"]
    return datetime.fromtimestamp(api.env.w3.eth.get_block(block)["timestamp"], UTC).date()


def _history(api: Api) -> History:
    """The provider paid in one escrow on day 1 and in another two days later, then withdraws."""
    env = api.env
    first = env.create_active(env.params((ETH,)))
    env.deliver(first, 0)
    settled = env.escrow.confirm(first, 0, 4, None, env.client).tx_hash
    env.advance(2 * DAY)
    second = env.create_active(env.params((2 * ETH,)))
    env.deliver(second, 0)
    later = env.escrow.confirm(second, 0, 5, None, env.client).tx_hash
    env.escrow.withdraw(None, env.provider)
    api.index()
    return History(_day(api, settled), _day(api, later))


def _cli(api: Api, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """`escrow ledger ...` on the API's own services: exit code, stdout (its bytes: Click's
    `stdout` turns CRLF into LF), stderr."""
    monkeypatch.setattr("backend.config.get_settings", lambda: api.services.settings)
    monkeypatch.setattr("backend.services.build_services", lambda _settings: api.services)
    result = CliRunner().invoke(cli.app, ["ledger", *args])
    return result.exit_code, result.stdout_bytes.decode(), result.stderr


def test_the_download_is_what_escrow_ledger_prints_as_an_attachment(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = api.env
    h = _history(api)
    chain_id = api.services.chain_id

    response = api.http.get(f"/api/accounts/{env.provider.lower()}/ledger.csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="escrow-{chain_id}-ledger-{env.provider}.csv"')
    body = response.content.decode()
    kinds = [line.split(",")[8] for line in body.split("\r\n")[1:-1]]
    assert kinds == ["release", "refund", "release", "withdrawal"]
    assert body.startswith(HEADER)
    assert _cli(api, monkeypatch, env.provider.lower()) == (0, body, "")

    # the days: inclusive, UTC, the same rows as --from / --to
    day3 = h.day3.isoformat()
    dated = api.http.get(f"/api/accounts/{env.provider}/ledger.csv",
                         params={"from": day3, "to": day3})
    assert dated.status_code == 200
    assert dated.headers["content-disposition"] == (
        f'attachment; filename="escrow-{chain_id}-ledger-{env.provider}-from-{day3}-to-{day3}'
        '.csv"')
    assert [line.split(",")[8] for line in dated.text.split("\r\n")[1:-1]] == [
        "release", "withdrawal"]
    assert _cli(api, monkeypatch, env.provider, "--from", day3, "--to", day3) == (
        0, dated.text, "")
    until = api.http.get(f"/api/accounts/{env.provider}/ledger.csv",
                         params={"to": h.day1.isoformat()}).text
    assert [line.split(",")[8] for line in until.split("\r\n")[1:-1]] == ["release", "refund"]

    # the first and the last day there are: every row, no overflow (observed: 500 on 9999-12-31)
    whole = api.http.get(f"/api/accounts/{env.provider}/ledger.csv",
                         params={"from": "0001-01-01", "to": "9999-12-31"})
    assert (whole.status_code, whole.text) == (200, body)
    assert _cli(api, monkeypatch, env.provider, "--to", "9999-12-31") == (0, body, "")

    # a known account with nothing on those days: the header only
    later = (h.day3 + timedelta(days=1)).isoformat()
    empty = api.http.get(f"/api/accounts/{env.client}/ledger.csv", params={"from": later})
    assert (empty.status_code, empty.text) == (200, HEADER)


def test_escrow_ledger_json_gives_the_csv_rows_as_objects_keyed_by_its_header(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = api.env
    _history(api)
    body = api.http.get(f"/api/accounts/{env.provider}/ledger.csv").content.decode()
    header = body.split("\r\n")[0].split(",")
    code, out, err = _cli(api, monkeypatch, env.provider, "--json")
    assert (code, err) == (0, "")
    rows = json.loads(out)
    assert [list(row) for row in rows] == [header] * 4
    assert [row["movement"] for row in rows] == ["release", "refund", "release", "withdrawal"]
    assert rows == list(csv.DictReader(io.StringIO(body)))


def test_an_account_no_indexed_escrow_names_is_unknown_as_on_the_command_line(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = api.env
    _history(api)
    # the arbiter is named by the escrows, but neither as client nor as provider
    for account in (env.arbiter, "0x" + "22" * 20):
        refused = api.error("GET", f"/api/accounts/{account}/ledger.csv", 404)
        assert refused["error"] == "not_found"
        assert refused["detail"].startswith(f"unknown account {account}: no indexed escrow")
        code, out, err = _cli(api, monkeypatch, account)
        assert (code, out) == (cli.EXIT_REFUSED, "")
        assert err.startswith(f"error: {refused['detail']} (if the index is behind")


@pytest.mark.parametrize(
    ("address", "query", "status", "detail"),
    [
        ("0x1234", {}, 400, "malformed address"),
        ("0x" + "g" * 40, {}, 400, "malformed address"),
        (None, {"from": "2025-3-01"}, 422, "from='2025-3-01' is out of range"),
        (None, {"to": "20250301"}, 422, "to='20250301' is out of range"),
        (None, {"to": "2025-02-30"}, 422, "expected a day YYYY-MM-DD (UTC)"),
        (None, {"from": "2025-03-02", "to": "2025-03-01"}, 422,
         "expected a day no later than to=2025-03-01"),
    ],
    ids=["short-address", "not-hex", "from-short-month", "to-no-dashes", "february-30",
         "from-after-to"],
)
def test_a_malformed_address_or_day_is_refused(
    api: Api, monkeypatch: pytest.MonkeyPatch, address: str | None, query: dict[str, str],
    status: int, detail: str,
) -> None:
    account = address or api.env.provider
    refused = api.error("GET", f"/api/accounts/{account}/ledger.csv", status, params=query)
    assert detail in refused["detail"], refused
    if status == 422:  # the command refuses the same days, naming its own options
        args = [part for k, v in query.items() for part in (f"--{k}", v)]
        code, _, err = _cli(api, monkeypatch, account, *args)
        assert code == cli.EXIT_REFUSED
        assert err.startswith("error: --") and "is out of range" in err
