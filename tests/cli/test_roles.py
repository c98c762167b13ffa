"""The role commands against the real service on the session's Hardhat node: `create` (ETH and
an ERC-20 with its approve), `accept`, `deliver` with a file, `confirm` signed and relayed with a
rating and a criterion, `dispute` + `resolve`, `challenge`, `finalize`, `reclaim`, `cancel`,
`withdraw`, `escrows` and `show`; and one line with exit 2 for every mistake."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from backend.client.api import ServiceClient
from backend.config import Settings
from backend.inputs import parse_duration, parse_token_amount
from tests.cli.conftest import Invoke
from tests.support import DAY, ETH, EscrowEnv
from tests.web.support import LiveService

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4bd0000000049454e44ae426082"
)
TERMS = {"version": 1, "title": "Managed hosting SLA", "period_seconds": 86400,
         "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
         "acceptance_criteria": ["Reachable at the agreed endpoint"]}


def _ok(invoke: Invoke, *args: Any) -> Any:
    """Runs a command with --json, asserts success, returns its JSON."""
    result = invoke(*args, "--json")
    assert result.exit_code == 0, (args, result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    terms = tmp_path / "terms.json"
    terms.write_text(json.dumps(TERMS))
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    return terms, photo


def _detail(live: LiveService, escrow_id: int) -> Any:
    return live.api("GET", f"/api/escrows/{escrow_id}")


def _credits(live: LiveService, account: str) -> dict[str, int]:
    body = live.api("GET", f"/api/accounts/{account}/credits")
    return {c["token"]: int(c["amount"]) for c in body["credits"]}


def _client_keystore(invoke: Invoke, env: EscrowEnv, tmp_path: Path) -> Path:
    """The Hardhat client's key imported as keystore `buyer`; returns the password file."""
    key_file = tmp_path / "client.key"
    key_file.write_text("0x" + bytes(env.parties.client.key).hex())
    password = tmp_path / "password.txt"
    password.write_text("pw\n")
    _ok(invoke, "keys", "import", "buyer", "--private-key-file", key_file,
        "--password-file", password)
    return password


def test_an_eth_escrow_from_creation_to_withdrawal_through_the_service(
    live_cli: LiveService, invoke: Invoke, tmp_path: Path
) -> None:
    env = live_cli.env
    terms, photo = _files(tmp_path)
    password = _client_keystore(invoke, env, tmp_path)
    client = ("--from", "buyer", "--password-file", password)

    created = _ok(invoke, "create", "--terms", terms, "--provider", env.provider,
                  "--amount", "1.5", "--amount", "0.5", "--arbiter", env.arbiter, *client)
    escrow_id = created["escrow_id"]
    assert created["total"] == str(2 * ETH) and created["approve"] is None
    detail = _detail(live_cli, escrow_id)
    assert detail["params"]["client"] == env.client
    assert detail["params"]["milestoneAmounts"] == [str(3 * ETH // 2), str(ETH // 2)]
    assert detail["params"]["oracle"] == env.oracle  # the service's oracle by default

    accepted = _ok(invoke, "accept", escrow_id)  # the provider, by default on chain 31337
    assert accepted["from"] == env.provider and accepted["gas_used"] > 0
    delivered = _ok(invoke, "deliver", escrow_id, 0, "--note", "deployed", "--attach", photo)
    assert delivered["attachments"][0]["media_type"] == "image/png"

    confirmed = _ok(invoke, "confirm", escrow_id, 0, "--rating", 4, "--comment", "solid",
                    "--criterion", "0=met", *client)
    assert confirmed["payout"]["to_provider"] == str(3 * ETH // 2 * 7_500 // 10_000)
    milestone = _detail(live_cli, escrow_id)["milestones"][0]
    assert milestone["state"] == "settled" and milestone["rating"] == 4
    assert milestone["settled_tx"] == confirmed["tx_hash"]
    assert milestone["review"]["criteria"] == [{"index": 0, "met": True}]
    assert milestone["delivery"]["note"] == "deployed"

    _ok(invoke, "deliver", escrow_id, 1, "--note", "second")
    _ok(invoke, "dispute", escrow_id, 1, "--reason", "half done", "--attach", photo, *client)
    resolved = _ok(invoke, "resolve", escrow_id, "--milestone", 1, "--provider-bps", 5_000)
    assert resolved["from"] == env.arbiter
    detail = _detail(live_cli, escrow_id)
    assert detail["status"] == "closed"
    assert detail["milestones"][1]["dispute_reason"]["reason"] == "half done"

    provider_credit = 3 * ETH // 2 * 7_500 // 10_000 + ETH // 4
    assert _credits(live_cli, env.provider)["0x" + "00" * 20] == provider_credit
    before = env.balance(env.provider)
    withdrawn = _ok(invoke, "withdraw")
    (item,) = withdrawn["withdrawals"]
    assert int(item["amount"]) == provider_credit and item["symbol"] == "ETH"
    receipt = env.w3.eth.get_transaction_receipt(item["tx_hash"])
    assert env.balance(env.provider) - before == (
        provider_credit - receipt["gasUsed"] * receipt["effectiveGasPrice"])
    assert _credits(live_cli, env.provider)["0x" + "00" * 20] == 0

    shown = invoke("show", escrow_id)
    assert shown.exit_code == 0, shown.stderr
    assert "closed - Managed hosting SLA" in shown.stdout
    assert "1.5 ETH" in shown.stdout and "0.5 ETH" in shown.stdout
    assert "next steps: none" in shown.stdout
    listed = invoke("escrows", "--from", "provider")
    assert listed.exit_code == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(str(escrow_id)))
    assert "closed" in row and "provider" in row and env.client in row and "2 ETH" in row


def test_an_erc20_escrow_is_approved_then_created_and_reclaimed_after_its_deadline(
    live_cli: LiveService, invoke: Invoke, tmp_path: Path
) -> None:
    env = live_cli.env
    terms, _ = _files(tmp_path)
    token = env.contract("TestToken", env.token)
    token.functions.mint(env.client, 10**10).transact({"from": env.parties.deployer.address})

    created = _ok(invoke, "create", "--terms", terms, "--provider", env.provider,
                  "--token", env.token, "--amount", "2_500.25", "--delivery-deadline", "1d",
                  "--review-period", "12h")
    escrow_id = created["escrow_id"]
    assert created["total"] == "2500250000" and created["approve"]["gas_used"] > 0
    assert created["token"]["symbol"] == "TUSD"
    assert _detail(live_cli, escrow_id)["params"]["terms"]["reviewPeriod"] == 12 * 3600
    _ok(invoke, "accept", escrow_id)

    env.advance(2 * DAY)
    _ok(invoke, "reclaim", escrow_id)
    assert _credits(live_cli, env.client)[env.token] == 2_500_250_000
    shown = invoke("escrows", "--role", "client", "--from", "client", "--status", "closed")
    assert "2,500.25 TUSD" in shown.stdout

    withdrawn = _ok(invoke, "withdraw", "--from", "client", "--token", env.token)
    assert [w["amount"] for w in withdrawn["withdrawals"]] == ["2500250000"]
    assert token.functions.balanceOf(env.client).call() == 10**10


def test_a_breach_is_challenged_and_rejected_another_finalized(
    live_cli: LiveService, invoke: Invoke, tmp_path: Path
) -> None:
    env = live_cli.env
    escrow_id = env.create_active(env.params((ETH,)))
    env.escrow.report_breach(escrow_id, 1, 0, b"\x44" * 32, env.oracle)
    env.escrow.report_breach(escrow_id, 3, 1, b"\x45" * 32, env.oracle)
    ServiceClient(live_cli.url).wait_for_escrow(escrow_id, lambda d: len(d["breaches"]) == 2)

    shown = invoke("show", escrow_id)
    assert "provider (" + env.provider + "): challenge breach 0, until" in shown.stdout

    _ok(invoke, "challenge", escrow_id, 0)
    resolved = _ok(invoke, "resolve", escrow_id, "--breach", 0, "--rejected")
    assert resolved["upheld"] is False
    env.advance(3 * DAY)
    finalized = _ok(invoke, "finalize", escrow_id, 1)
    assert finalized["from"] == env.oracle
    states = [b["state"] for b in _detail(live_cli, escrow_id)["breaches"]]
    assert states == ["rejected", "finalized"]


def test_cancel_of_a_proposed_escrow_credits_the_client(
    live_cli: LiveService, invoke: Invoke
) -> None:
    env = live_cli.env
    escrow_id = env.create(env.params((ETH,)))
    ServiceClient(live_cli.url).wait_for_escrow(escrow_id)
    _ok(invoke, "cancel", escrow_id)
    assert _detail(live_cli, escrow_id)["status"] == "closed"
    assert _credits(live_cli, env.client)["0x" + "00" * 20] == ETH


def test_confirm_direct_sends_confirm_from_the_clients_own_key(
    live_cli: LiveService, invoke: Invoke
) -> None:
    env = live_cli.env
    escrow_id = env.create_active(env.params((ETH,)))
    env.deliver(escrow_id, 0)
    ServiceClient(live_cli.url).wait_for_escrow(
        escrow_id, lambda d: d["milestones"][0]["state"] == "delivered")

    confirmed = _ok(invoke, "confirm", escrow_id, 0, "--rating", 2, "--direct")

    assert confirmed["from"] == env.client and confirmed["direct"] is True
    milestone = _detail(live_cli, escrow_id)["milestones"][0]
    assert (milestone["how"], milestone["rating"]) == ("confirmed", 2)
    paid = str(ETH * 4_000 // 10_000)  # PAYOUTS[1]
    assert milestone["to_provider"] == confirmed["payout"]["to_provider"] == paid


# ---------------------------------------------------------------------- refusals


def test_a_revert_is_one_line_naming_the_custom_error_and_its_values(
    live_cli: LiveService, refused: Callable[..., str]
) -> None:
    env = live_cli.env
    escrow_id = env.create(env.params((ETH,)))
    ServiceClient(live_cli.url).wait_for_escrow(escrow_id)
    line = refused("accept", escrow_id, "--from", "client")
    assert line == (f"error: accept refused by the contract: EscrowUnauthorizedCaller("
                    f"caller={env.client}, required={env.provider})")


def test_an_unknown_escrow_a_bad_amount_and_a_wrong_password_are_one_line_each(
    live_cli: LiveService, invoke: Invoke, refused: Callable[..., str], tmp_path: Path
) -> None:
    env = live_cli.env
    terms, _ = _files(tmp_path)
    assert refused("show", 999) == "error: unknown escrow 999 (not_found, HTTP 404)"
    assert refused("accept", 0).startswith("error: unknown escrow 0")
    line = refused("create", "--terms", terms, "--provider", env.provider, "--amount", "1.2.3")
    assert line == ("error: malformed --amount[0]: '1.2.3' is not an amount in the token's "
                    "units such as 1.5 or 2_000")
    line = refused("create", "--terms", terms, "--provider", env.provider, "--amount",
                   "0.0000001", "--token", env.token)
    assert line.startswith("error: --amount[0]='0.0000001' is out of range: expected at most 6")
    line = refused("create", "--terms", terms, "--provider", env.provider, "--amount", "5",
                   "--token", env.token)  # the client holds none of the token
    assert line == ("error: createEscrow refused by the contract: ERC20InsufficientBalance("
                    f"sender={env.client}, balance=0, needed=5000000)")
    password = _client_keystore(invoke, env, tmp_path)
    password.write_text("wrong\n")
    line = refused("accept", 1, "--from", "buyer", "--password-file", password)
    assert line.endswith("buyer.json: wrong password or corrupt file")
    assert refused("accept", 1, "--from", "nobody").startswith("error: no keystore 'nobody'")


def test_a_service_that_does_not_answer_is_one_line(refused: Callable[..., str]) -> None:
    line = refused("escrows", "--api", "http://127.0.0.1:1")
    assert line == ("error: the service at http://127.0.0.1:1 does not answer (start it with "
                    "`escrow up`)")


def _service_on_chain(chain_id: int) -> Callable[[str], ServiceClient]:
    config = {"chain_id": chain_id, "rpc_url": "http://127.0.0.1:1", "oracle": None,
              "arbiter": None}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=config))
    return lambda url: ServiceClient(url, transport=transport)


def test_dev_role_names_and_default_roles_are_refused_off_chain_31337(
    refused: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("backend.cli.roles.service_client", _service_on_chain(1))
    assert refused("accept", 1).startswith(
        "error: --from is required on chain 1: name a keystore (`escrow keys list`)")
    assert refused("accept", 1, "--from", "provider").startswith(
        "error: --from provider: development accounts by role name are accepted only on chain "
        "id 31337, this is chain 1")
    assert refused("escrows", "--from", "client").startswith("error: --from client:")


def test_a_node_that_does_not_answer_is_one_line(
    refused: Callable[..., str], monkeypatch: pytest.MonkeyPatch, cli_settings: Settings
) -> None:
    monkeypatch.setattr("backend.cli.roles.service_client", _service_on_chain(31337))
    cli_settings.rpc_max_attempts = 1
    line = refused("accept", 1, "--rpc", "http://127.0.0.1:9")
    assert line == ("error: the node at http://127.0.0.1:9 does not answer (check --rpc or "
                    "the service's rpc_url)")


def test_resolve_needs_either_a_split_or_a_verdict(refused: Callable[..., str]) -> None:
    assert refused("resolve", 1, "--milestone", 0).startswith("error: resolve takes")
    assert refused("resolve", 1, "--milestone", 0, "--provider-bps", 1, "--breach", 0,
                   "--upheld").startswith("error: resolve takes")


# ---------------------------------------------------------------------- what people type


@pytest.mark.parametrize(("text", "decimals", "base"), [
    ("1.5", 18, 3 * ETH // 2), ("2_000", 6, 2_000_000_000), (".25", 2, 25), ("7", 0, 7),
    ("1.000", 0, 1), ("0.000001", 6, 1),
])
def test_token_amounts_are_exact_base_units(text: str, decimals: int, base: int) -> None:
    assert parse_token_amount("--amount", text, decimals) == base


@pytest.mark.parametrize("text", ["", ".", "-1", "1e18", "1,5", "1__0", "1_", "0x10", " "])
def test_token_amounts_that_are_no_amount_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not an amount in the token's units"):
        parse_token_amount("--amount", text, 18)


@pytest.mark.parametrize(("text", "seconds"), [
    ("3d", 3 * DAY), ("12h", 43_200), ("90m", 5_400), ("45s", 45), ("1d12h", 129_600),
    ("2w", 14 * DAY), ("3600", 3_600), (60, 60),
])
def test_durations_read_as_seconds(text: str | int, seconds: int) -> None:
    assert parse_duration("--review-period", text) == seconds


@pytest.mark.parametrize("text", ["3 days", "d3", "1.5h", "", "-5m"])
def test_durations_that_are_none_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="review-period"):
        parse_duration("--review-period", text)


def test_a_fresh_account_keystore_signs_on_any_chain(
    invoke: Invoke, cli_settings: Settings, tmp_path: Path
) -> None:
    """`--from NAME` resolves a keystore's address without its password (`escrows`)."""
    from backend.cli.roles import account_address

    password = tmp_path / "pw"
    password.write_text("pw")
    made = _ok(invoke, "keys", "new", "ops", "--password-file", password)
    assert account_address(cli_settings, 1, "ops") == made["address"]
    assert Account.decrypt(json.loads(Path(made["path"]).read_text()), "pw")
