"""Real wallets sign the API's typed data unchanged: MetaMask's `@metamask/eth-sig-util`
(`signTypedData` V4, what `eth_signTypedData_v4` runs) and ethers v6 `Wallet.signTypedData`, both
pinned in hardhat_local/, sign the very bytes the API returned with the client's Hardhat dev key;
each signature is posted, relayed and seen settling the milestone on the Hardhat node."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from backend.chain.types import BPS, SettledHow
from backend.paths import HARDHAT_DIR
from backend.services import Services
from tests.confirmations.support import (
    PNG,
    TestClient,
    confirmation_body,
    outbox_row,
    post_confirmation,
    relayer,
    settled_events,
    sign,
)
from tests.support import ETH, PAYOUTS, EscrowEnv

SCRIPT = Path(__file__).resolve().parents[1] / "js" / "sign_typed_data.js"


def js_sign(
    api_response_text: str, private_key: str, typed_data_text: str | None = None
) -> dict[str, str]:
    """Runs tests/js/sign_typed_data.js on the API's response body, byte for byte (or on
    `typed_data_text` when given: the typed data as a dapp rewrote it)."""
    if shutil.which("node") is None or not (HARDHAT_DIR / "node_modules" / "ethers").is_dir():
        pytest.skip("needs node and `npm ci` in hardhat_local/")
    text = typed_data_text if typed_data_text is not None else _typed_data_text(api_response_text)
    stdin = '{"private_key": "' + private_key + '", "typed_data": ' + text + "}"
    done = subprocess.run(
        ["node", str(SCRIPT)], input=stdin.encode(), capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, str] = json.loads(done.stdout)
    return result


def _typed_data_text(response_text: str) -> str:
    """The `typed_data` member of the response exactly as the API serialized it."""
    decoded = json.JSONDecoder()
    start = response_text.index('"typed_data":') + len('"typed_data":')
    while response_text[start] == " ":
        start += 1
    _, end = decoded.raw_decode(response_text, start)
    return response_text[start:end]


@pytest.mark.parametrize("wallet", ["metamask", "ethers"])
def test_a_real_wallet_signs_the_typed_data_unchanged_and_the_milestone_settles(
    hardhat_env: EscrowEnv, client: TestClient, services: Services, wallet: str
) -> None:
    env = hardhat_env
    escrow_id = env.create_active(env.params((ETH, 3 * ETH)))
    env.deliver(escrow_id, 1)
    photo = client.post("/api/attachments", files={"file": ("result.png", PNG, "image/png")})
    request: dict[str, Any] = {
        "rating": 4,
        "comment": "Très bien, 完成 👍 \"quoted\" <b>not html</b>\n",
        "attachments": [photo.json()["sha256"]],
    }
    response = client.post(f"/api/escrows/{escrow_id}/milestones/1/typed-data", json=request)
    assert response.status_code == 200
    prepared = response.json()

    signatures = js_sign(response.text, "0x" + env.parties.client.key.hex())
    assert signatures["ethers_address"] == env.client
    # both implementations, and eth-account, produce the one deterministic signature
    assert signatures["metamask"] == signatures["ethers"] == sign(env.parties.client, prepared)

    body = confirmation_body(prepared, signatures[wallet])
    accepted = post_confirmation(client, escrow_id, 1, body)
    assert accepted.status_code == 202, accepted.text
    relayer(services).run_until_idle()

    [event] = settled_events(services, escrow_id, 1)
    assert event["how"] == SettledHow.SIGNED
    assert event["rating"] == 4
    assert "0x" + bytes(event["commentHash"]).hex() == prepared["comment_hash"]
    assert event["toProvider"] == 3 * ETH * PAYOUTS[3] // BPS
    row = outbox_row(services, accepted.json()["id"])
    assert (row.status, row.tx_hash, row.signer) == ("mined", event["tx_hash"], env.client)
    assert env.escrow.credits(env.provider) == 3 * ETH * PAYOUTS[3] // BPS


@pytest.mark.parametrize("form", ["number", "decimal string", "hex string"])
def test_wallets_sign_the_same_confirmation_whether_chainId_is_a_number_a_decimal_or_a_hex_string(
    hardhat_env: EscrowEnv, client: TestClient, services: Services, form: str
) -> None:
    """Dapps hand `chainId` to `eth_signTypedData_v4` as a number, "31337" or "0x7a69"; MetaMask
    and ethers encode each as the same uint256, so the API accepts the signature alike."""
    env = hardhat_env
    escrow_id = env.create_active()
    response = client.post(f"/api/escrows/{escrow_id}/milestones/0/typed-data",
                           json={"rating": 5})
    assert response.status_code == 200
    prepared = response.json()
    typed = json.loads(_typed_data_text(response.text))
    chain_id = int(typed["domain"]["chainId"])
    typed["domain"]["chainId"] = {
        "number": chain_id, "decimal string": str(chain_id), "hex string": hex(chain_id)
    }[form]

    signatures = js_sign(response.text, "0x" + env.parties.client.key.hex(), json.dumps(typed))

    assert signatures["metamask"] == signatures["ethers"] == sign(env.parties.client, prepared)
    accepted = post_confirmation(
        client, escrow_id, 0, confirmation_body(prepared, signatures["metamask"])
    )
    assert accepted.status_code == 202, accepted.text
    relayer(services).run_until_idle()
    [event] = settled_events(services, escrow_id, 0)
    assert event["rating"] == 5
