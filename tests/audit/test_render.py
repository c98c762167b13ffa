"""The audit reports: JSON for machines, Markdown and one self-contained HTML page with charts."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, replace
from decimal import Decimal

from backend.audit.model import AuditReport, Check, EscrowAudit, TimelinePoint
from backend.audit.render import format_amount, to_html, to_json, to_markdown
from backend.audit.timeline_chart import timeline_svg

USDC = 10**6
XSS = "<script>alert(1)</script>"


def _timeline(points: int, start: int = 100) -> list[TimelinePoint]:
    funded = 1_000 * USDC
    out = []
    for i in range(points):
        released = min(funded, i * 15 * USDC)
        refunded = min(funded - released, (i // 10) * 5 * USDC)
        reserved = 2 * USDC * (i % 3)
        out.append(
            TimelinePoint(
                block=start + 3 * i,
                time=1_700_000_000 + 36 * i,
                event="MilestoneSettled" if i else "EscrowCreated",
                locked=funded - released - refunded - reserved,
                reserved=reserved,
                released=released,
                refunded=refunded,
            )
        )
    return out


def _passing_checks() -> list[Check]:
    return [
        Check("replay", True, "48 events replay to the contract's views at block 9000"),
        Check("signatures", True, "3 settlements re-verified"),
        Check("payouts", True, "3 payouts follow the params"),
        Check("documents", None, "not checked: no database or --api given"),
    ]


def _escrow(escrow_id: int, checks: list[Check], points: int = 6) -> EscrowAudit:
    return EscrowAudit(
        escrow_id=escrow_id,
        chain_id=31337,
        contract="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        block=9000,
        token="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        symbol="USDC",
        decimals=6,
        checks=checks,
        timeline=_timeline(points),
        events=points,
    )


def _report() -> AuditReport:
    failing = [
        *_passing_checks()[:2],
        Check(
            "payouts",
            False,
            "milestone 1 paid 80 USDC, the rules say 75 USDC",
            [{"milestone": 1, "paid": "80000000", "expected": "75000000", "tx": "0xabc123"}],
        ),
        Check(
            "documents",
            False,
            "the review comment of milestone 2 does not hash to its commentHash",
            [{"milestone": 2, "commentHash": "0x11", "recomputed": "0x22"}],
        ),
    ]
    return AuditReport(
        chain_id=31337,
        contract="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        block=9000,
        escrows=[_escrow(1, _passing_checks()), _escrow(2, failing, points=40)],
        contract_checks=[Check("bytecode", True, "runtime code equals the artifact")],
    )


def test_json_round_trips_to_the_report_model_and_is_deterministic() -> None:
    report = _report()
    text = to_json(report)
    assert json.loads(text) == report.to_json()
    assert to_json(report) == text
    assert text.index('"block"') < text.index('"chain_id"') < text.index('"consistent"')
    assert json.loads(text)["consistent"] is False
    assert json.loads(text)["escrows"][1]["timeline"][1]["released"] == str(15 * USDC)


def test_json_writes_raw_chain_values_in_evidence_as_hex_and_text() -> None:
    evidence = [{"hash": b"\x12\xab", "amount": 10**30, "big": Decimal("1.5")}]
    report = AuditReport(1, "0xC", 5, [], [Check("solvency", False, "short", evidence)])
    body = json.loads(to_json(report))
    assert body["contract_checks"][0]["evidence"] == [
        {"amount": 10**30, "big": "1.5", "hash": "0x12ab"}
    ]
    assert "`hash`: 0x12ab" in to_markdown(report)


def test_markdown_names_every_failed_check_with_its_evidence() -> None:
    md = to_markdown(_report())
    summary = "INCONSISTENT: 2 failed checks (documents, payouts) for 2 escrows at block 9000."
    assert f"**{summary}**" in md
    assert "- **payouts** (escrow #2): milestone 1 paid 80 USDC, the rules say 75 USDC" in md
    assert "`expected`: 75000000; `milestone`: 1; `paid`: 80000000; `tx`: 0xabc123" in md
    assert "`commentHash`: 0x11; `milestone`: 2; `recomputed`: 0x22" in md
    assert "| `payouts` | ✗ **FAILED** | milestone 1 paid 80 USDC, the rules say 75 USDC |" in md
    assert "| `documents` | ○ not checked | not checked: no database or --api given |" in md
    assert "## Escrow #1: consistent" in md and "## Escrow #2: INCONSISTENT" in md


def test_markdown_says_consistent_when_nothing_failed() -> None:
    report = AuditReport(31337, "0xC", 10, [_escrow(7, _passing_checks())], [])
    md = to_markdown(report)
    assert "**CONSISTENT: every check passed for 1 escrow at block 10.**" in md
    assert "Failures" not in md


def test_markdown_keeps_a_table_cell_intact_and_inert() -> None:
    report = AuditReport(1, "0xC", 10, [_escrow(7, [Check("index", False, "a|b\n" + XSS)])], [])
    md = to_markdown(report)
    assert "| `index` | ✗ **FAILED** | a\\|b &lt;script&gt;alert(1)&lt;/script&gt; |" in md
    assert "<script>" not in md


def test_html_is_self_contained_with_one_timeline_svg_per_escrow() -> None:
    html = to_html(_report())
    assert to_html(_report()) == html  # deterministic
    assert html.startswith("<!DOCTYPE html>")
    for external in ('src="http', "<script", "<link", "@import", "url(http"):
        assert external not in html
    assert html.count("<svg") == 2
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html
    sections = re.findall(r'<section id="escrow-(\d+)">(.*?)</section>', html, re.DOTALL)
    assert [s[0] for s in sections] == ["1", "2"]
    assert all(s[1].count("<svg") == 1 and "Released to provider" in s[1] for s in sections)


def test_html_shows_badges_failures_evidence_and_token_amounts() -> None:
    html = to_html(_report())
    assert '<div class="summary bad">INCONSISTENT: 2 failed checks' in html
    assert html.count('<span class="badge bad">✗ failed</span>') == 2
    assert '<h2>Escrow #2</h2><span class="badge bad">✗ inconsistent</span>' in html
    assert '<h2>Escrow #1</h2><span class="badge ok">✓ consistent</span>' in html
    assert '<span class="badge na">○ not checked</span>' in html
    assert '<td class="key mono">expected</td><td class="value mono">75000000</td>' in html
    # escrow 2's final point: 39 * 15 = 585 released, 15 refunded, 0 reserved, 400 locked
    assert "<span>released</span><b>585</b> USDC" in html
    assert "<span>locked</span><b>400</b> USDC" in html


def test_html_escapes_strings_from_the_chain_and_the_database() -> None:
    escrow = EscrowAudit(
        escrow_id=3,
        chain_id=1,
        contract="0xC",
        block=5,
        token='0xT"><img onerror=x>',
        symbol="$<b>X",
        decimals=18,
        checks=[Check("documents", False, XSS, [{"comment": XSS}])],
        timeline=_timeline(3),
        events=3,
    )
    html = to_html(AuditReport(1, "0xC", 5, [escrow], []))
    assert XSS not in html and "<img" not in html and "<b>X" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<svg") == 1


def test_an_escrow_without_money_movements_renders_without_a_chart() -> None:
    escrow = EscrowAudit(4, 1, "0xC", 5, "0xT", "DAI", 18, _passing_checks(), [], 0)
    html = to_html(AuditReport(1, "0xC", 5, [escrow], []))
    assert "<svg" not in html and "No money movements to chart." in html


def test_a_chart_does_not_depend_on_the_charts_drawn_before_it() -> None:
    first = timeline_svg(_escrow(1, [], points=8))
    single_block = _escrow(2, [], points=1)
    timeline_svg(single_block)
    timeline_svg(_escrow(3, [], points=50))
    assert timeline_svg(_escrow(1, [], points=8)) == first
    ids = re.findall(r' id="([^"]+)"', first)
    other = re.findall(r' id="([^"]+)"', timeline_svg(_escrow(4, [], points=8)))
    assert ids and other and not set(ids) & set(other)  # no id clashes between charts of a page
    assert all(f"#{i}" in first for i in ids)  # only referenced ids are kept


@dataclass(frozen=True)
class _PointWithWithdrawals(TimelinePoint):
    withdrawn: int = 0


def test_the_chart_and_the_totals_show_withdrawals_when_the_timeline_has_them() -> None:
    points: list[TimelinePoint] = [
        _PointWithWithdrawals(**{**asdict(p), "withdrawn": 5 * USDC * i})
        for i, p in enumerate(_timeline(4))
    ]
    escrow = replace(_escrow(5, []), timeline=points)
    html = to_html(AuditReport(1, "0xC", 5, [escrow], []))
    assert "Withdrawn" in timeline_svg(escrow) and "Withdrawn" not in timeline_svg(_escrow(6, []))
    assert "<span>withdrawn</span><b>15</b> USDC" in html


def test_amounts_are_formatted_exactly_in_token_units() -> None:
    assert format_amount(1_234_500_000, 6, "USDC") == "1,234.5 USDC"
    assert format_amount(10**18 + 1, 18, "WETH") == "1.000000000000000001 WETH"
    assert format_amount(0, 18) == "0"
    assert format_amount(7 * 10**20, 18, "DAI") == "700 DAI"


def test_rendering_200_escrows_with_50_points_each_takes_reasonable_time() -> None:
    report = AuditReport(
        31337,
        "0xC",
        9000,
        [_escrow(i, _passing_checks(), points=50) for i in range(200)],
        [Check("bytecode", True, "ok")],
    )
    started = time.perf_counter()
    html = to_html(report)
    elapsed = time.perf_counter() - started
    print(f"\nto_html: 200 escrows x 50 points in {elapsed:.2f} s, {len(html) / 1e6:.1f} MB")
    assert html.count("<svg") == 200
