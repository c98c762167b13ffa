"""`backend.client.api.ServiceClient`: JSON in and out of the running service, its refusals as
`ServiceRefusedError` (code, detail, status), a silent service as `ServiceUnreachableError`,
and the waits for the index, a transaction and a relayed confirmation."""

from __future__ import annotations

import httpx
import pytest

from backend.client import (
    ServiceClient,
    ServiceRefusedError,
    ServiceTimeoutError,
    ServiceUnreachableError,
)
from backend.errors import UnavailableError
from tests.support import EscrowEnv
from tests.web.support import LiveService

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4bd0000000049454e44ae426082"
)


def test_config_names_the_chain_contract_and_the_service_accounts(
    service: ServiceClient, live_service: LiveService
) -> None:
    config = service.config()
    assert config["chain_id"] == 31337
    assert config["contract"] == live_service.env.escrow.address
    assert config["oracle"] == live_service.env.oracle
    assert service.config() is config  # asked once


def test_a_refusal_carries_the_api_code_detail_and_status(service: ServiceClient) -> None:
    with pytest.raises(ServiceRefusedError) as caught:
        service.get_json("/api/escrows/999")
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert caught.value.detail == "unknown escrow 999"
    assert caught.value.message == "unknown escrow 999 (not_found, HTTP 404)"


def test_the_index_serves_an_escrow_the_chain_created_once_waited_for(
    service: ServiceClient, live_service: LiveService
) -> None:
    env: EscrowEnv = live_service.env
    escrow_id = env.create()
    detail = service.wait_for_escrow(escrow_id, until=lambda d: d["status"] == "proposed",
                                     timeout=10)
    assert detail["params"]["client"] == env.client
    listed = service.get_json("/api/escrows", {"party": env.provider, "status": None})
    assert [item["id"] for item in listed["escrows"]] == [escrow_id]


def test_an_upload_answers_the_digest_of_the_stored_file(service: ServiceClient) -> None:
    stored = service.upload("pixel.png", PNG, "image/png")
    assert stored["media_type"] == "image/png" and stored["size"] == len(PNG)
    assert service.get_bytes(f"/api/attachments/{stored['sha256']}") == PNG


def test_a_service_that_does_not_answer_is_one_unreachable_error() -> None:
    with (
        ServiceClient("http://127.0.0.1:1", timeout=2) as client,
        pytest.raises(ServiceUnreachableError) as caught,
    ):
        client.config()
    assert isinstance(caught.value, UnavailableError)
    assert caught.value.message == (
        "the service at http://127.0.0.1:1 does not answer (start it with `escrow up`)"
    )


def test_an_error_page_that_is_not_the_apis_keeps_its_status_and_text() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(502, text="<html><h1>Bad   gateway</h1></html>")
    )
    with (
        ServiceClient("http://proxy.test", transport=transport) as client,
        pytest.raises(ServiceRefusedError) as caught,
    ):
        client.post_json("/api/tx/withdraw", {"token": "0x" + "00" * 20})
    assert caught.value.code == "http_502"
    assert caught.value.message == "<html><h1>Bad gateway</h1></html> (http_502, HTTP 502)"


def test_waiting_for_an_escrow_the_index_never_gets_times_out_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("backend.client.api.POLL_INTERVAL", 0.01)
    transport = httpx.MockTransport(lambda request: httpx.Response(
        404, json={"error": "not_found", "detail": "unknown escrow 5"}))
    with (
        ServiceClient("http://service.test", transport=transport) as client,
        pytest.raises(ServiceTimeoutError) as caught,
    ):
        client.wait_for_escrow(5, timeout=0.05)
    assert caught.value.message == "escrow 5 in the service's index did not come within 0.05 s"
