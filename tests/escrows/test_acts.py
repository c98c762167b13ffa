"""Acceptance acts (`GET /api/escrows/{id}/milestones/{m}/act.pdf`): a settled milestone's
certificate names the signer recovered from the settling transaction, the transaction, the
rating and the review's attachments by sha256. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import io

from eth_typing import HexStr
from pypdf import PdfReader

from backend.confirmations.reviews import build_review, store_attachment, store_review
from tests.api.support import Api
from tests.chain.support import wallet_escrow
from tests.support import ETH

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


def _text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def _settle_by_signature(api: Api) -> tuple[int, str, str]:
    """A milestone settled by the client's signature with a review and a photo; returns the
    escrow id, the settling transaction and the photo's sha256."""
    env = api.env
    escrow_id = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(escrow_id, 0)
    with api.services.sessions.begin() as session:
        photo, _ = store_attachment(session, api.services.settings.data_dir, PNG,
                                    name="site-photo.png", declared_type="image/png")
        review = build_review(session, "Installed and tested, all good", (photo.sha256,))
        store_review(session, review)
        digest = photo.sha256
    conf = env.confirmation(escrow_id, 0, 4, review.comment_hash)
    result = env.escrow.confirm_with_sig(conf, env.sign(conf), env.parties.relayer.address)
    api.index()
    return escrow_id, result.tx_hash, digest


def test_the_act_of_a_milestone_settled_by_signature_names_signer_tx_rating_and_attachment(
    api: Api,
) -> None:
    escrow_id, tx_hash, digest = _settle_by_signature(api)
    env = api.env

    response = api.http.get(f"/api/escrows/{escrow_id}/milestones/0/act.pdf")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    chain_id = env.escrow.chain_id
    assert response.headers["content-disposition"] == (
        f'inline; filename="escrow-{chain_id}-{escrow_id}-milestone-0-act.pdf"'
    )
    assert response.content.startswith(b"%PDF")
    text = _text(response.content)
    block = env.w3.eth.get_transaction(HexStr(tx_hash))["blockNumber"]
    assert f"Recovered signer {env.client}" in text
    assert "Signer is client yes" in text
    assert tx_hash.lower() in text.lower()
    assert f"Block {block}" in text
    assert "Rating 4 of 5" in text
    assert digest in text
    assert "site-photo.png (image/png, 32 bytes)" in text
    assert "Comment Installed and tested, all good" in text
    assert "To provider 0.800000000000000000 ETH (800000000000000000 base units)" in text
    assert "To client 0.200000000000000000 ETH (200000000000000000 base units)" in text
    assert env.escrow.address in text
    assert f"Chain id {chain_id}" in text


def test_the_act_of_a_milestone_confirmed_by_transaction_has_no_signature_section(
    api: Api,
) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH,)))
    env.deliver(escrow_id, 0)
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    api.index()

    response = api.http.get(f"/api/escrows/{escrow_id}/milestones/0/act.pdf")

    assert response.status_code == 200, response.text
    text = _text(response.content)
    assert "confirmed by the client's own transaction (confirm)" in text
    assert "Recovered signer" not in text
    assert "No review: the client left no comment and no attachments." in text
    assert "To provider 1.000000000000000000 ETH" in text


def test_acts_answer_404_for_an_unknown_escrow_or_milestone_and_409_when_not_settled(
    api: Api,
) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(escrow_id, 0)
    api.index()

    unknown = api.error("GET", f"/api/escrows/{escrow_id + 1}/milestones/0/act.pdf", 404)
    assert unknown == {"error": "not_found", "detail": f"unknown escrow {escrow_id + 1}"}
    no_milestone = api.error("GET", f"/api/escrows/{escrow_id}/milestones/2/act.pdf", 404)
    assert no_milestone == {"error": "not_found", "detail": f"unknown milestone {escrow_id}/2"}
    delivered = api.error("GET", f"/api/escrows/{escrow_id}/milestones/0/act.pdf", 409)
    assert delivered == {
        "error": "not_settled",
        "detail": f"milestone 0 of escrow {escrow_id} is not settled (state delivered)",
    }
    untouched = api.error("GET", f"/api/escrows/{escrow_id}/milestones/1/act.pdf", 409)
    assert untouched["detail"].endswith("(state none)")


def test_the_act_of_a_contract_wallet_client_names_the_wallet_that_accepted_the_signature(
    api: Api,
) -> None:
    env = api.env
    escrow_id, wallet = wallet_escrow(env)
    env.deliver(escrow_id, 0)
    conf = env.confirmation(escrow_id, 0, rating=5)
    # the wallet accepts any bytes: no key can be recovered from them
    env.escrow.confirm_with_sig(conf, b"\xab" * 80, env.parties.relayer.address)
    api.index()

    response = api.http.get(f"/api/escrows/{escrow_id}/milestones/0/act.pdf")

    assert response.status_code == 200, response.text
    text = " ".join(_text(response.content).split())
    assert f"Recovered signer {wallet}" in text
    assert "Signer is client yes" in text
    assert "contract wallet that accepts this signature (EIP-1271)" in text
