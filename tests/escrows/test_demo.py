"""`escrow demo` (`backend/escrows/demo.py`): the story told to the real service (app and
workers on a loopback port, the session's Hardhat node) through its REST API, and its refusals.
The command's own process against `escrow up` is in tests/cli/test_up.py."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from backend import cli
from backend.client import ServiceClient, ServiceUnreachableError
from backend.confirmations.relayer import Relayer
from backend.errors import ConfigurationError
from backend.escrows.demo import CHAPTERS, CRITERIA, DEGRADED, day_samples
from backend.escrows.scripted import DAY, ETH, HOUR, Stage, demo_png
from backend.oracle.worker import Oracle
from tests.support import EscrowEnv
from tests.web.support import LIVE_POLL, LiveService, live_service_on

runner = CliRunner()


@pytest.fixture
def live(
    hardhat_env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LiveService]:
    """The service on the Hardhat chain (reverted afterwards) with fast worker passes; the
    commands read its settings (the demo issues the measurement token in its database)."""
    for sender in (Relayer, Oracle):  # their passes are 1 s and 5 s apart in production
        monkeypatch.setattr(sender, "interval", LIVE_POLL)
    with live_service_on(
        hardhat_env, f"sqlite:///{tmp_path / 'demo.db'}", tmp_path / "data"
    ) as service:
        monkeypatch.setattr("backend.config.get_settings", lambda: service.services.settings)
        yield service


def test_demo_tells_the_story_through_the_api_and_ends_with_a_consistent_audit(
    live: LiveService,
) -> None:
    result = runner.invoke(cli.app, ["demo", "--api", live.url, "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    story: dict[str, Any] = json.loads(result.stdout)

    assert [s["step"] for s in story["steps"]] == list(range(1, len(CHAPTERS) + 1))
    escrow_id = story["escrow_id"]
    assert story["url"] == f"{live.url}/escrows/{escrow_id}"
    assert story["audit"]["consistent"] is True
    assert {c["name"] for c in story["audit"]["checks"]} >= {"replay", "payouts", "signatures"}

    # 3 ETH: month 1 at 5 stars (1), months 2 and 3 share what the refunds (capped at 40 %)
    # left locked, 0.4 ETH each, at 4 and 3 stars
    assert story["totals"] == {"provider": str(156 * ETH // 100),
                               "client": str(144 * ETH // 100), "escrowed": str(3 * ETH)}
    whys = {(r["party"], r["amount"]): r["why"] for r in story["payouts"]}
    assert whys[("provider", str(ETH))].startswith("month 1: rated 5/5 (relayed signature)")
    assert whys[("provider", str(32 * ETH // 100))].startswith("month 2: rated 4/5 (confirmed")
    assert whys[("provider", str(24 * ETH // 100))].startswith("month 3: rated 3/5 (relayed")
    refunds = [r for r in story["payouts"] if r["why"].startswith("breach")]
    assert sorted(int(r["amount"]) for r in refunds) == sorted(
        [15 * ETH // 100] * 3 + [30 * ETH // 100, 45 * ETH // 100])
    assert any("three bad days in a row on days 2 to 4" in r["why"] for r in refunds)
    assert any("the arbiter rejected the challenge" in r["why"] for r in refunds)
    assert sum(int(r["amount"]) for r in story["payouts"]) == 3 * ETH
    withdrawn = {w["party"]: int(w["amount"]) for w in story["withdrawals"]}
    assert withdrawn["provider"] >= 156 * ETH // 100 and withdrawn["client"] >= 144 * ETH // 100

    # what the service holds agrees: the review with criteria and the photo, every breach
    detail = live.api("GET", f"/api/escrows/{escrow_id}")
    assert detail["status"] == "closed"
    review = detail["milestones"][0]["review"]
    assert [c["met"] for c in review["criteria"]] == [True] * len(CRITERIA)
    [photo] = review["attachments"]
    assert photo["media_type"] == "image/png"
    assert [(b["kind"], b["period"], b["state"]) for b in
            sorted(detail["breaches"], key=lambda b: (b["period"], b["kind"]))] == [
        (1, 1, "finalized"), (1, 2, "finalized"), (1, 3, "finalized"), (2, 3, "finalized"),
        (3, 4, "upheld"),
    ]
    credits = live.api("GET", f"/api/accounts/{live.env.provider}/credits")
    assert all(int(c["amount"]) == 0 for c in credits["credits"])


def test_demo_prints_each_step_and_the_closing_table_for_people(live: LiveService) -> None:
    result = runner.invoke(cli.app, ["demo", "--api", live.url])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    lines = result.stdout.splitlines()
    for number, (title, _, _) in enumerate(CHAPTERS, start=1):
        assert any(line.startswith(f"{number:>2}. {title}") for line in lines), title
    assert any("who got what and why (3 ETH escrowed)" in line for line in lines)
    assert any("1.56" in line and "total credited by this escrow" in line for line in lines)
    assert any("1.44" in line and "total credited by this escrow" in line for line in lines)
    assert lines[-1].startswith("audit: consistent (")


def test_demo_refuses_in_one_line_when_the_service_does_not_answer(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["demo", "--api", "http://127.0.0.1:1"])
    assert result.exit_code == cli.EXIT_REFUSED
    assert result.stderr.strip() == (
        "error: the service at http://127.0.0.1:1 does not answer (start it with `escrow up`)"
    )


def test_the_stage_refuses_a_service_on_another_chain_than_31337() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"chain_id": 1, "rpc_url": "http://127.0.0.1:1",
                                         "oracle": "0x" + "11" * 20})

    with (
        ServiceClient("http://service.test", transport=httpx.MockTransport(answer)) as api,
        pytest.raises(ConfigurationError, match=r"runs on chain 1: .* chain 31337 only"),
    ):
        Stage.open(api)


def test_the_stage_says_an_unreachable_service_is_unreachable() -> None:
    with (
        ServiceClient("http://127.0.0.1:1", timeout=2) as api,
        pytest.raises(ServiceUnreachableError),
    ):
        Stage.open(api)


def test_the_monitoring_samples_pass_on_day_1_and_miss_the_uptime_kpi_on_days_2_to_4() -> None:
    accepted = 1_900_000_000
    for day in range(4):
        samples = day_samples(accepted, day)
        uptime = [s["value"] for s in samples if s["kpi"] == "uptime_pct"]
        assert len(uptime) == 24
        assert (sum(uptime) / 24 >= 99.9) == (day == 0)
        outage = sum(s["value"] for s in samples if s["kpi"] == "outage_minutes")
        assert outage <= 60  # no incident before day 5
        assert all(accepted + day * DAY <= s["observed_at"] < accepted + (day + 1) * DAY
                   for s in samples)
    assert set(DEGRADED) == {0, 1, 2, 3}
    assert max(s["observed_at"] for s in day_samples(accepted, 0)) < accepted + DAY - HOUR // 2


def test_the_review_photo_is_a_well_formed_png() -> None:
    png = demo_png()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    offset, chunks = 8, []
    while offset < len(png):
        length = int.from_bytes(png[offset:offset + 4], "big")
        tag, data = png[offset + 4:offset + 8], png[offset + 8:offset + 8 + length]
        crc = int.from_bytes(png[offset + 8 + length:offset + 12 + length], "big")
        assert crc == zlib.crc32(tag + data)
        chunks.append(tag)
        offset += 12 + length
    assert chunks == [b"IHDR", b"IDAT", b"IEND"]
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert len(zlib.decompress(png[41:-16])) == height * (1 + 3 * width)
