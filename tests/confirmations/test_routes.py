"""The confirmation relay's API on a real Hardhat node and both databases: attachments, typed
data, signed confirmations (202, then relayed and settled), and every refusal (400, 403, 404,
409, 410, 413, 422) leaving no outbox row, no review and no transaction behind."""

from __future__ import annotations

import time
from collections.abc import Callable
from hashlib import sha256
from typing import Any

import pytest
import requests
from eth_utils import keccak
from hexbytes import HexBytes

from backend.chain.eip712 import SECP256K1_N, Confirmation
from backend.chain.types import BPS, MilestoneState, SettledHow
from backend.confirmations.reviews import MAX_ATTACHMENT_BYTES
from backend.db.models import Attachment, Review
from backend.index.indexer import index_once
from backend.services import Services
from tests.chain.support import wallet_escrow
from tests.confirmations.support import (
    PDF,
    PNG,
    TestClient,
    confirmation_body,
    outbox_count,
    outbox_row,
    post_confirmation,
    relayer,
    relayer_tx_count,
    review_count,
    settled_events,
    sign,
    sign_and_confirm,
    typed_data,
)
from tests.support import ETH, PAYOUTS, REVIEW, EscrowEnv

ZERO_HASH = "0x" + "00" * 32


def upload(
    client: TestClient, data: bytes, name: str = "photo.png", media_type: str = "image/png"
) -> Any:
    return client.post("/api/attachments", files={"file": (name, data, media_type)})


def chain_now(env: EscrowEnv) -> int:
    return max(env.now(), int(time.time()))


# ------------------------------------------------------------------ attachments


def test_upload_stores_a_file_content_addressed_and_answers_201_then_200(
    client: TestClient, services: Services
) -> None:
    digest = sha256(PNG).hexdigest()
    first = upload(client, PNG, "site/photo 1.png")
    assert first.status_code == 201
    assert first.json() == {
        "sha256": digest, "name": "photo 1.png", "media_type": "image/png", "size": len(PNG)
    }
    assert (services.settings.data_dir / "attachments" / digest).read_bytes() == PNG
    again = upload(client, PNG, "other-name.png")
    assert again.status_code == 200
    assert again.json()["name"] == "photo 1.png"  # the first name stays: reviews bind it
    served = client.get(f"/api/attachments/{digest}")
    assert served.status_code == 200
    assert served.content == PNG
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"


def test_upload_reads_the_type_from_the_bytes_not_the_declaration(client: TestClient) -> None:
    response = upload(client, PDF, "act.pdf", "application/octet-stream")
    assert response.status_code == 201
    assert response.json()["media_type"] == "application/pdf"


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (PNG, "application/pdf"),  # a PNG that says it is a PDF
        (b"PK\x03\x04" + bytes(range(256)), "application/zip"),  # not an allowed type
        (b"MZ\x90\x00\x03" + bytes(200), "application/octet-stream"),  # a program
        (b"", "text/plain"),  # empty
    ],
    ids=["lying-type", "zip", "binary", "empty"],
)
def test_upload_refuses_content_of_another_type_with_422(
    client: TestClient, services: Services, data: bytes, media_type: str
) -> None:
    response = upload(client, data, "x", media_type)
    assert response.status_code == 422
    assert response.json()["error"] in ("unsupported_media_type", "out_of_range")
    assert _attachment_rows(services) == []
    assert not list((services.settings.data_dir / "attachments").glob("*"))


def test_upload_of_exactly_10_mib_is_stored_and_one_byte_more_is_refused_with_413(
    client: TestClient, services: Services
) -> None:
    exact = PNG + bytes(MAX_ATTACHMENT_BYTES - len(PNG))
    assert upload(client, exact).status_code == 201
    response = upload(client, exact + b"\x00")
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert [r.size for r in _attachment_rows(services)] == [MAX_ATTACHMENT_BYTES]


def test_upload_of_a_body_far_over_the_limit_is_refused_before_it_is_parsed(
    client: TestClient, services: Services
) -> None:
    response = upload(client, PNG + bytes(MAX_ATTACHMENT_BYTES + 100_000))
    assert response.status_code == 413
    assert "request body" in response.json()["detail"]
    assert _attachment_rows(services) == []


def test_upload_without_a_file_part_is_refused_with_400(client: TestClient) -> None:
    assert client.post("/api/attachments", data={"name": "x"}).status_code == 400
    assert client.post("/api/attachments", json={"file": "x"}).status_code == 400


def _attachment_rows(services: Services) -> list[Attachment]:
    with services.sessions() as session:
        return list(session.query(Attachment).all())


# ------------------------------------------------------------------ typed data


def test_typed_data_hands_out_the_confirmation_ready_for_eth_signTypedData_v4(
    hardhat_env: EscrowEnv, client: TestClient
) -> None:
    env = hardhat_env
    escrow_id = env.create_active()
    digest = upload(client, PNG, "photo.png").json()["sha256"]
    deadline = chain_now(env) + 7_200
    answer = typed_data(
        client, escrow_id, 1, rating=4, comment="Très bien ✓", attachments=[digest.upper()],
        deadline=deadline,
    )
    canonical = (
        '{"attachments":[{"media_type":"image/png","name":"photo.png","sha256":"' + digest
        + '","size":' + str(len(PNG)) + '}],"comment":"Très bien ✓"}'
    ).encode()
    comment_hash = keccak(canonical)
    assert answer["comment_hash"] == "0x" + comment_hash.hex()
    assert answer["review"] == {
        "comment": "Très bien ✓",
        "attachments": [
            {"name": "photo.png", "media_type": "image/png", "size": len(PNG), "sha256": digest}
        ],
    }
    assert answer["typed_data"] == {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Confirmation": [
                {"name": "escrowId", "type": "uint256"},
                {"name": "milestone", "type": "uint256"},
                {"name": "rating", "type": "uint8"},
                {"name": "commentHash", "type": "bytes32"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "Confirmation",
        "domain": {
            "name": "QualityEscrow",
            "version": "1",
            "chainId": 31337,
            "verifyingContract": env.escrow.address,
        },
        "message": {
            "escrowId": str(escrow_id),
            "milestone": "1",
            "rating": 4,
            "commentHash": "0x" + comment_hash.hex(),
            "deadline": str(deadline),
        },
    }
    on_chain = env.escrow.confirmation_digest(
        Confirmation(escrow_id, 1, 4, comment_hash, deadline)
    )
    assert answer["digest"] == "0x" + on_chain.hex()


def test_typed_data_of_no_review_binds_the_zero_hash_and_defaults_the_deadline_to_an_hour(
    hardhat_env: EscrowEnv, client: TestClient
) -> None:
    escrow_id = hardhat_env.create_active()
    before = chain_now(hardhat_env)
    answer = typed_data(client, escrow_id, 0, rating=5)
    after = chain_now(hardhat_env)
    assert answer["review"] is None
    assert answer["comment_hash"] == ZERO_HASH
    assert answer["typed_data"]["message"]["commentHash"] == ZERO_HASH
    assert before + 3_600 <= int(answer["typed_data"]["message"]["deadline"]) <= after + 3_600


# ------------------------------------------------------------------ confirmations


def test_a_client_confirmation_is_accepted_with_202_stored_and_relayed_until_settled(
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    env = hardhat_env
    escrow_id = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(escrow_id, 1)
    digest = upload(client, PDF, "acceptance act.pdf", "application/pdf").json()["sha256"]
    prepared = typed_data(
        client, escrow_id, 1, rating=3, comment="late but fine", attachments=[digest]
    )
    body = confirmation_body(prepared, sign(env.parties.client, prepared))
    response = post_confirmation(client, escrow_id, 1, body)
    assert response.status_code == 202
    assert response.json() == {"id": 1, "status": "pending", "tx_hash": None}
    with services.sessions() as session:
        review = session.get(Review, prepared["comment_hash"])
        assert review is not None
        assert keccak(review.canonical.encode()).hex() == prepared["comment_hash"][2:]

    report = relayer(services).run_until_idle()
    assert (report.signed, report.broadcast, report.mined, report.failed) == (1, 1, 1, 0)
    [event] = settled_events(services, escrow_id, 1)
    assert event["how"] == SettledHow.SIGNED
    assert event["rating"] == 3
    assert "0x" + bytes(event["commentHash"]).hex() == prepared["comment_hash"]
    assert event["toProvider"] == 2 * ETH * PAYOUTS[2] // BPS
    assert env.escrow.credits(env.provider) == 2 * ETH * PAYOUTS[2] // BPS
    status = client.get("/api/confirmations/1").json()
    assert (status["status"], status["error"]) == ("mined", None)
    assert status["tx_hash"] == event["tx_hash"]
    assert status["signer"] == env.client
    assert status["nonce"] == outbox_row(services, 1).nonce


def test_the_same_confirmation_again_is_refused_with_409_before_and_after_it_is_relayed(
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    env = hardhat_env
    escrow_id = env.create_active()
    prepared = typed_data(client, escrow_id, 0, rating=5)
    body = confirmation_body(prepared, sign(env.parties.client, prepared))
    assert post_confirmation(client, escrow_id, 0, body).status_code == 202
    again = post_confirmation(client, escrow_id, 0, body)
    assert again.status_code == 409
    assert again.json()["error"] == "already_confirmed"
    relayer(services).run_until_idle()
    after = post_confirmation(client, escrow_id, 0, body)
    assert after.status_code == 409
    assert outbox_count(services) == 1
    assert len(settled_events(services, escrow_id, 0)) == 1
    # and the typed data for it is refused as well
    refused = client.post(f"/api/escrows/{escrow_id}/milestones/0/typed-data", json={"rating": 5})
    assert refused.status_code == 409


def test_a_confirmation_whose_deadline_passes_in_the_queue_fails_without_a_transaction_and_can_be_signed_again(  # noqa: E501
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    env = hardhat_env
    escrow_id = env.create_active()
    deadline = chain_now(env) + 600
    prepared = typed_data(client, escrow_id, 0, rating=2, deadline=deadline)
    body = confirmation_body(prepared, sign(env.parties.client, prepared))
    assert post_confirmation(client, escrow_id, 0, body).status_code == 202
    env.advance(deadline + 1 - env.now())
    sent_before = relayer_tx_count(services)
    report = relayer(services).run_until_idle()
    assert (report.signed, report.failed) == (0, 1)
    assert relayer_tx_count(services) == sent_before  # the simulation refused it: no nonce used
    failed = client.get("/api/confirmations/1").json()
    assert failed["status"] == "failed"
    assert failed["error"].startswith(f"EscrowSignatureExpired(deadline={body['deadline']}, ")

    accepted = sign_and_confirm(client, env, escrow_id, 0, rating=4)
    assert accepted == {"id": 1, "status": "pending", "tx_hash": None}  # the failed row, revived
    relayer(services).run_until_idle()
    [event] = settled_events(services, escrow_id, 0)
    assert event["rating"] == 4
    assert client.get("/api/confirmations/1").json()["status"] == "mined"


def _wallet_escrow(env: EscrowEnv, mode: int) -> int:
    """An active escrow whose client is a MockERC1271Wallet (0 accept, 1 reject, 2 revert)."""
    return wallet_escrow(env, mode)[0]


def test_a_contract_wallet_client_is_verified_through_erc1271_and_relayed(
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    env = hardhat_env
    escrow_id = _wallet_escrow(env, 0)
    prepared = typed_data(client, escrow_id, 0, rating=5, comment="wallet says yes")
    body = confirmation_body(prepared, "0x" + "ab" * 80)  # a wallet's own signature format
    response = post_confirmation(client, escrow_id, 0, body)
    assert response.status_code == 202
    assert outbox_row(services, 1).signer == env.escrow.params(escrow_id).client
    relayer(services).run_until_idle()
    [event] = settled_events(services, escrow_id, 0)
    assert event["how"] == SettledHow.SIGNED


@pytest.mark.parametrize("mode", [1, 2], ids=["rejects", "reverts"])
def test_a_contract_wallet_that_does_not_accept_is_refused_with_403(
    hardhat_env: EscrowEnv, client: TestClient, services: Services, mode: int
) -> None:
    env = hardhat_env
    escrow_id = _wallet_escrow(env, mode)
    prepared = typed_data(client, escrow_id, 0, rating=5)
    # even the wallet owner's key does not speak for the wallet
    response = post_confirmation(
        client, escrow_id, 0, confirmation_body(prepared, sign(env.parties.client, prepared))
    )
    assert response.status_code == 403
    assert response.json()["error"] == "wallet_refused"
    assert outbox_count(services) == 0


def test_the_index_supplies_the_escrow_when_the_node_logs_are_out_of_reach(
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    env = hardhat_env
    escrow_id = env.create_active()
    env.escrow.confirm(escrow_id, 1, 5, None, env.client)
    assert index_once(services) > 0
    services.escrow.from_block = env.w3.eth.block_number + 1_000  # log lookups now find nothing
    services.escrow._params.clear()
    assert typed_data(client, escrow_id, 0, rating=5)["review"] is None
    settled = client.post(f"/api/escrows/{escrow_id}/milestones/1/typed-data", json={"rating": 5})
    assert settled.status_code == 409
    assert settled.json()["error"] == "not_confirmable"


# ------------------------------------------------------------------ refusals


Case = Callable[[EscrowEnv, TestClient], tuple[int, int, Any]]


def _signed(
    env: EscrowEnv, client: TestClient, escrow_id: int | None = None, milestone: int = 0,
    **request: Any,
) -> tuple[int, int, dict[str, Any]]:
    escrow_id = escrow_id or env.create_active()
    prepared = typed_data(client, escrow_id, milestone, **request)
    return escrow_id, milestone, confirmation_body(prepared, sign(env.parties.client, prepared))


def _with(**changes: Any) -> Case:
    def case(env: EscrowEnv, client: TestClient) -> tuple[int, int, Any]:
        escrow_id, milestone, body = _signed(env, client)
        body.update(changes)
        return escrow_id, milestone, body

    return case


def _resigned(transform: Callable[[bytes], bytes]) -> Case:
    def case(env: EscrowEnv, client: TestClient) -> tuple[int, int, Any]:
        escrow_id, milestone, body = _signed(env, client)
        raw = bytes.fromhex(body["signature"][2:])
        body["signature"] = "0x" + transform(raw).hex()
        return escrow_id, milestone, body

    return case


def _high_s(sig: bytes) -> bytes:
    s = int.from_bytes(sig[32:64], "big")
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])


def _by_stranger(env: EscrowEnv, client: TestClient) -> tuple[int, int, Any]:
    escrow_id = env.create_active()
    prepared = typed_data(client, escrow_id, 0, rating=5)
    return escrow_id, 0, confirmation_body(prepared, sign(env.parties.stranger, prepared))


def _expired(env: EscrowEnv, client: TestClient) -> tuple[int, int, Any]:
    escrow_id = env.create_active()
    deadline = chain_now(env) + 600
    escrow_id, milestone, body = _signed(env, client, escrow_id, deadline=deadline)
    # the next block lies after the deadline however far the chain's latest block trails the
    # wall clock (a reverted snapshot's block can be minutes old)
    env.advance(deadline + 1 - env.now())
    return escrow_id, milestone, body


def _window_closed(env: EscrowEnv, client: TestClient) -> tuple[int, int, Any]:
    escrow_id = env.create_active()
    env.deliver(escrow_id, 0)
    escrow_id, milestone, body = _signed(
        env, client, escrow_id, deadline=chain_now(env) + REVIEW + 10_000
    )
    env.advance(REVIEW + 1)
    return escrow_id, milestone, body


def _settled(env: EscrowEnv, client: TestClient) -> tuple[int, int, Any]:
    escrow_id, milestone, body = _signed(env, client)
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    return escrow_id, milestone, body


def _disputed(env: EscrowEnv, client: TestClient) -> tuple[int, int, Any]:
    escrow_id = env.create_active()
    env.deliver(escrow_id, 0)
    escrow_id, milestone, body = _signed(env, client, escrow_id)
    env.escrow.open_dispute(escrow_id, 0, b"\x01" * 32, env.client)
    return escrow_id, milestone, body


def _proposed(env: EscrowEnv, client: TestClient) -> tuple[int, int, Any]:
    escrow_id = env.create()
    signed = env.confirmation(escrow_id, 0, 5, deadline=chain_now(env) + 600)
    signature = "0x" + env.sign(signed).hex()
    body = {"rating": 5, "comment": "", "deadline": signed.deadline, "signature": signature}
    return escrow_id, 0, body


def _elsewhere(escrow_id: int | None, milestone: int) -> Case:
    def case(env: EscrowEnv, client: TestClient) -> tuple[int, int, Any]:
        real, _, body = _signed(env, client)
        return (real if escrow_id is None else escrow_id), milestone, body

    return case


def _attachments(count: int, *, known: bool = False, dup: bool = False) -> Case:
    def case(env: EscrowEnv, client: TestClient) -> tuple[int, int, Any]:
        escrow_id, milestone, body = _signed(env, client)
        digests = [sha256(bytes([i])).hexdigest() for i in range(count)]
        if known:
            digests = [upload(client, PNG).json()["sha256"]]
        if dup:
            digests = digests * 2
        body["attachments"] = digests
        return escrow_id, milestone, body

    return case


def _raw(text: str) -> Case:
    def case(env: EscrowEnv, client: TestClient) -> tuple[int, int, Any]:
        return env.create_active(), 0, text

    return case


def _without(field: str) -> Case:
    def case(env: EscrowEnv, client: TestClient) -> tuple[int, int, Any]:
        escrow_id, milestone, body = _signed(env, client)
        del body[field]
        return escrow_id, milestone, body

    return case


BAD_SIG = "invalid_signature"
REFUSALS: dict[str, tuple[Case, int, str]] = {
    "high-s signature": (_resigned(_high_s), 400, "invalid_signature"),
    "v as parity 0/1": (_resigned(lambda s: s[:64] + bytes([s[64] - 27])), 400, BAD_SIG),
    "64-byte signature": (_resigned(lambda s: s[:64]), 400, "invalid_signature"),
    "signature not hex": (_with(signature="0xzz" + "00" * 64), 400, "invalid_signature"),
    "empty signature": (_with(signature="0x"), 400, "invalid_signature"),
    "signature missing": (_without("signature"), 400, "malformed"),
    "deadline missing": (_without("deadline"), 400, "malformed"),
    "body not JSON": (_raw("{rating: 5"), 400, "malformed"),
    "comment with a lone surrogate": (
        _raw('{"rating": 5, "comment": "\\ud800", "deadline": 9999999999, "signature": "0x00"}'),
        400,
        "malformed",
    ),
    "signed by a stranger": (_by_stranger, 403, "forbidden_signer"),
    "rating changed after signing": (_with(rating=4), 403, "forbidden_signer"),
    "comment changed after signing": (_with(comment="changed"), 403, "forbidden_signer"),
    "deadline changed after signing": (_with(deadline=9_999_999_999), 403, "forbidden_signer"),
    "unknown escrow": (_elsewhere(999, 0), 404, "not_found"),
    "escrow id 0": (_elsewhere(0, 0), 404, "not_found"),
    "escrow id beyond 64 bits": (_elsewhere(2**70, 0), 404, "not_found"),
    "milestone out of range": (_elsewhere(None, 2), 404, "not_found"),
    "unknown attachment": (_attachments(1), 404, "not_found"),
    "milestone settled": (_settled, 409, "not_confirmable"),
    "milestone disputed": (_disputed, 409, "not_confirmable"),
    "escrow not accepted yet": (_proposed, 409, "not_confirmable"),
    "deadline passed": (_expired, 410, "deadline_passed"),
    "review window closed": (_window_closed, 410, "deadline_passed"),
    "comment of 2,001 characters": (_with(comment="x" * 2_001), 413, "too_large"),
    "11 attachments": (_attachments(11), 413, "too_large"),
    "rating 0": (_with(rating=0), 422, "out_of_range"),
    "rating 6": (_with(rating=6), 422, "out_of_range"),
    "rating as a string": (_with(rating="5"), 422, "invalid"),
    "negative deadline": (_with(deadline=-1), 422, "out_of_range"),
    "attachment digest malformed": (_with(attachments=["abc"]), 422, "out_of_range"),
    "attachment listed twice": (_attachments(1, known=True, dup=True), 422, "out_of_range"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_confirmations_refuse_bad_requests_with_their_status_and_store_and_send_nothing(
    hardhat_env: EscrowEnv, client: TestClient, services: Services, name: str
) -> None:
    case, status, code = REFUSALS[name]
    escrow_id, milestone, body = case(hardhat_env, client)
    sent_before = relayer_tx_count(services)
    url = f"/api/escrows/{escrow_id}/milestones/{milestone}/confirmations"
    if isinstance(body, str):
        response = client.post(url, content=body, headers={"content-type": "application/json"})
    else:
        response = client.post(url, json=body)
    assert (response.status_code, response.json()["error"]) == (status, code), response.text
    assert outbox_count(services) == 0
    assert review_count(services) == 0
    report = relayer(services).run_until_idle()
    assert not report.busy
    assert relayer_tx_count(services) == sent_before
    if name != "milestone settled" and 0 < escrow_id < 999 and milestone < 2:
        assert hardhat_env.escrow.get_milestone(escrow_id, milestone).state in (
            MilestoneState.NONE, MilestoneState.DELIVERED, MilestoneState.DISPUTED
        )


def test_a_comment_of_exactly_2000_characters_is_accepted(
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    assert sign_and_confirm(client, hardhat_env, hardhat_env.create_active(), 0,
                            comment="é" * 2_000)["status"] == "pending"
    assert review_count(services) == 1


# ------------------------------------------------------------------ uint256 as string or integer


@pytest.mark.parametrize("as_string", [True, False], ids=["string", "integer"])
def test_typed_data_and_confirmations_accept_the_deadline_as_a_string_or_an_integer(
    hardhat_env: EscrowEnv, client: TestClient, services: Services, as_string: bool
) -> None:
    env = hardhat_env
    escrow_id = env.create_active()
    deadline = chain_now(env) + 7_200
    sent: str | int = str(deadline) if as_string else deadline
    prepared = typed_data(client, escrow_id, 0, rating=5, deadline=sent)
    assert prepared["typed_data"]["message"]["deadline"] == str(deadline)
    # the deadline goes back exactly as the API served it: a decimal string
    body = confirmation_body(prepared, sign(env.parties.client, prepared))
    body["deadline"] = prepared["typed_data"]["message"]["deadline"] if as_string else deadline
    response = post_confirmation(client, escrow_id, 0, body)
    assert response.status_code == 202, response.text
    assert outbox_row(services, 1).deadline == deadline


def test_the_literal_deadline_1900000000_is_accepted_as_a_string(
    hardhat_env: EscrowEnv, client: TestClient
) -> None:
    escrow_id = hardhat_env.create_active()
    answer = typed_data(client, escrow_id, 0, rating=5, deadline="1900000000")
    assert answer["typed_data"]["message"]["deadline"] == "1900000000"


@pytest.mark.parametrize(
    ("deadline", "status", "code"),
    [
        ("19e8", 400, "malformed"),
        ("-1", 422, "out_of_range"),
        (" 1900000000", 400, "malformed"),
        (1.9e9, 400, "malformed"),
        (True, 400, "malformed"),
        (str(2**256), 422, "out_of_range"),
        (2**256, 422, "out_of_range"),
    ],
    ids=["exponent", "negative-string", "space", "float", "bool", "2^256-string", "2^256"],
)
def test_a_deadline_that_is_no_uint256_is_refused_naming_the_field(
    hardhat_env: EscrowEnv, client: TestClient, deadline: Any, status: int, code: str
) -> None:
    escrow_id = hardhat_env.create_active()
    response = client.post(
        f"/api/escrows/{escrow_id}/milestones/0/typed-data",
        json={"rating": 5, "deadline": deadline},
    )
    assert (response.status_code, response.json()["error"]) == (status, code), response.text
    assert "deadline" in response.json()["detail"]


# ------------------------------------------------------------------ messages that find the mistake


@pytest.mark.parametrize(
    ("change", "wrong"),
    [({"rating": 4}, "rating=4"), ({"comment": "changed"}, "commentHash=0x")],
    ids=["rating", "review"],
)
def test_a_signature_that_recovers_to_another_address_names_every_signed_field(
    hardhat_env: EscrowEnv, client: TestClient, change: dict[str, Any], wrong: str
) -> None:
    env = hardhat_env
    escrow_id, milestone, body = _signed(env, client)
    body.update(change)
    response = post_confirmation(client, escrow_id, milestone, body)
    assert response.status_code == 403, response.text
    answer = response.json()
    assert answer["error"] == "forbidden_signer"
    detail = answer["detail"]
    assert f"not to the escrow's client {env.client}" in detail
    for expected in (
        "name='QualityEscrow'", "version='1'", "chainId=31337",
        f"verifyingContract={env.escrow.address}", f"escrowId={escrow_id}",
        f"milestone={milestone}", f"deadline={body['deadline']}", wrong,
    ):
        assert expected in detail, expected


# ------------------------------------------------------------------ the node is unavailable


def _down(*_args: Any, **_kwargs: Any) -> Any:
    raise requests.ConnectionError("connection refused")


def test_typed_data_answers_503_with_retry_after_when_the_node_does_not(
    hardhat_env: EscrowEnv, client: TestClient, services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    escrow_id = hardhat_env.create_active()
    # the chain's state comes in one batch (`Web3ChainReader.snapshot`): it goes unanswered
    monkeypatch.setattr(services.w3.provider, "make_batch_request", _down)
    response = client.post(
        f"/api/escrows/{escrow_id}/milestones/0/typed-data", json={"rating": 5}
    )
    assert response.status_code == 503, response.text
    assert response.json() == {
        "error": "unavailable", "detail": "node unavailable: latest block: connection refused"
    }
    assert int(response.headers["retry-after"]) > 0


def test_a_contract_wallet_confirmation_answers_503_not_403_when_the_node_does_not(
    hardhat_env: EscrowEnv, client: TestClient, services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = hardhat_env
    escrow_id = _wallet_escrow(env, 0)
    prepared = typed_data(client, escrow_id, 0, rating=5)
    call = services.w3.eth.call

    def wallet_question_unanswered(tx: Any, *args: Any, **kwargs: Any) -> Any:
        if HexBytes(tx["data"])[:4] == bytes.fromhex("1626ba7e"):  # isValidSignature
            _down()
        return call(tx, *args, **kwargs)

    monkeypatch.setattr(services.w3.eth, "call", wallet_question_unanswered)
    body = confirmation_body(prepared, "0x" + "ab" * 80)
    response = post_confirmation(client, escrow_id, 0, body)
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable"
    assert "isValidSignature" in response.json()["detail"]
    assert int(response.headers["retry-after"]) > 0
    assert outbox_count(services) == 0


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/escrows/abc/milestones/0/typed-data", 422, "out_of_range"),
        ("/api/escrows/0/milestones/0/typed-data", 404, "not_found"),
        (f"/api/escrows/{2**70}/milestones/0/confirmations", 404, "not_found"),
        (f"/api/escrows/1/milestones/{2**70}/typed-data", 404, "not_found"),
    ],
    ids=["escrow-not-a-number", "escrow-0", "escrow-beyond-64-bits", "milestone-beyond-limit"],
)
def test_path_ids_no_escrow_can_have_are_refused_before_the_body_is_read(
    client: TestClient, path: str, status: int, code: str
) -> None:
    response = client.post(path, json={"rating": 5, "deadline": "1900000000", "signature": "0x"})
    assert (response.status_code, response.json()["error"]) == (status, code), response.text


@pytest.mark.parametrize("request_id", ["0", str(2**70), "-1"])
def test_a_confirmation_request_id_no_row_can_have_is_404(
    client: TestClient, request_id: str
) -> None:
    response = client.get(f"/api/confirmations/{request_id}")
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"
