"""Shared scaffolding of the confirmation-relay tests: the service on a test chain and database,
its API client, and short-hands for the typed-data / confirmation round trip."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import func, select

from backend.api.app import create_app
from backend.chain.deploy import deploy_contract
from backend.chain.keys import relayer_account
from backend.chain.transactions import send
from backend.config import Settings
from backend.confirmations.relayer import Hook, Relayer
from backend.db.models import ConfirmationRequest, Review
from backend.services import Services, build_services
from tests.support import EscrowEnv

with warnings.catch_warnings():  # starlette's TestClient warns about httpx on import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient as TestClient  # re-exported for the tests

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def relay_services(
    env: EscrowEnv, database_url: str, data_dir: Path, **settings: Any
) -> Services:
    """The service on the test chain `env` and the test database, attachments under `data_dir`."""
    config = Settings(
        rpc_url="http://127.0.0.1:1",  # never dialled: the chain's Web3 is handed in
        data_dir=data_dir,
        database_url=database_url,
        **settings,
    )
    return build_services(
        config,
        w3=env.w3,
        contract_address=env.escrow.address,
        deployment_block=env.deployment_block,
    )


def api_client(services: Services) -> TestClient:
    return TestClient(create_app(services), raise_server_exceptions=True)


def relayer_key(services: Services) -> LocalAccount:
    """The relayer's key as the service loads it (dev key #5 here), derived once per chain."""
    key = _RELAYER_KEYS.get(services.chain_id)
    if key is None:
        key = _RELAYER_KEYS[services.chain_id] = relayer_account(services.w3, services.settings)
    return key


_RELAYER_KEYS: dict[int, LocalAccount] = {}


def relayer(services: Services, hook: Hook | None = None, **kwargs: Any) -> Relayer:
    return Relayer(services, relayer_key(services), hook=hook, **kwargs)


def typed_data(
    client: TestClient, escrow_id: int, milestone: int, **body: Any
) -> dict[str, Any]:
    body.setdefault("rating", 5)
    response = client.post(f"/api/escrows/{escrow_id}/milestones/{milestone}/typed-data", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def sign(account: LocalAccount, prepared: dict[str, Any]) -> str:
    """Signs the API's typed data with eth-account's own EIP-712 encoder."""
    signed = account.sign_typed_data(full_message=prepared["typed_data"])
    return "0x" + bytes(signed.signature).hex()


def confirmation_body(prepared: dict[str, Any], signature: str, **body: Any) -> dict[str, Any]:
    """The confirmation body matching a typed-data answer (rating, review, deadline)."""
    message = prepared["typed_data"]["message"]
    review = prepared["review"] or {"comment": "", "attachments": []}
    out: dict[str, Any] = {
        "rating": message["rating"],
        "comment": review["comment"],
        "attachments": [a["sha256"] for a in review["attachments"]],
        "deadline": int(message["deadline"]),
        "signature": signature,
    }
    out.update(body)
    return out


def post_confirmation(
    client: TestClient, escrow_id: int, milestone: int, body: dict[str, Any]
) -> Any:
    return client.post(f"/api/escrows/{escrow_id}/milestones/{milestone}/confirmations", json=body)


def sign_and_confirm(
    client: TestClient, env: EscrowEnv, escrow_id: int, milestone: int, **request: Any
) -> dict[str, Any]:
    """typed-data -> the client signs -> confirmations; asserts the 202."""
    prepared = typed_data(client, escrow_id, milestone, **request)
    body = confirmation_body(prepared, sign(env.parties.client, prepared))
    response = post_confirmation(client, escrow_id, milestone, body)
    assert response.status_code == 202, response.text
    result: dict[str, Any] = response.json()
    return result


def outbox_count(services: Services) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(ConfirmationRequest)) or 0)


def review_count(services: Services) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Review)) or 0)


def outbox_row(services: Services, request_id: int) -> ConfirmationRequest:
    with services.sessions() as session:
        row = session.get(ConfirmationRequest, request_id)
        assert row is not None
        return row


def relayer_tx_count(services: Services) -> int:
    """Transactions the relayer account has sent (mined and pending)."""
    address = relayer_key(services).address
    return int(services.w3.eth.get_transaction_count(address, "pending"))


def settled_events(services: Services, escrow_id: int, milestone: int) -> list[dict[str, Any]]:
    """Every `MilestoneSettled` of that milestone on the chain, from any transaction."""
    logs = services.escrow.contract.events.MilestoneSettled.get_logs(
        from_block=0, to_block="latest", argument_filters={"escrowId": escrow_id}
    )
    return [
        {**dict(log["args"]), "tx_hash": "0x" + bytes(log["transactionHash"]).hex()}
        for log in logs
        if int(log["args"]["milestone"]) == milestone
    ]


def burning_wallet_escrow(env: EscrowEnv, amounts: tuple[int, ...]) -> tuple[int, str]:
    """An active escrow of `amounts` (wei) whose client is a GasBurningWallet driven by the
    client's key, burning nothing yet (`set_burn`): (escrow id, wallet)."""
    address, _ = deploy_contract(env.w3, "GasBurningWallet", env.client)
    wallet = env.contract("GasBurningWallet", str(address))
    p = env.params(amounts, client=str(address))
    data = env.escrow.contract.functions.createEscrow(p.to_abi())._encode_transaction_data()
    send(env.w3, wallet, wallet.functions.execute(env.escrow.address, p.total, data),
         env.client, value=p.total)
    escrow_id = env.escrow.escrow_count()
    env.escrow.accept(escrow_id, env.provider)
    return escrow_id, str(address)


def set_burn(env: EscrowEnv, wallet: str, gas: int) -> None:
    """The wallet burns `gas` whenever the escrow asks it `isValidSignature` (and only then)."""
    env.contract("GasBurningWallet", wallet).functions.setBurn(
        env.escrow.address, gas
    ).transact({"from": env.client})


def wallet_confirmation(
    client: TestClient, escrow_id: int, milestone: int, rating: int = 5
) -> Any:
    """A contract wallet's confirmation as the API takes it: the typed data, any signature
    bytes (the GasBurningWallet accepts all), posted."""
    prepared = typed_data(client, escrow_id, milestone, rating=rating)
    return post_confirmation(
        client, escrow_id, milestone, confirmation_body(prepared, "0x" + "11" * 65)
    )
