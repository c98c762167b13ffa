"""Audit reports: JSON for machines, Markdown for humans and one self-contained HTML file (inline
CSS, inline SVG timeline charts, no external resources). Every string that came from the chain or
a database is escaped for the format it lands in."""

from __future__ import annotations

import json
from decimal import Decimal
from html import escape
from typing import Any

from backend.audit.model import AuditReport, Check, EscrowAudit
from backend.audit.timeline_chart import timeline_svg

_MONEY = ("locked", "reserved", "released", "refunded", "withdrawn")


# ---------------------------------------------------------------- shared helpers


def format_amount(raw: int, decimals: int, symbol: str = "") -> str:
    """`1234500000, 6, "USDC"` -> `1,234.5 USDC` (exact, no float rounding)."""
    text = f"{Decimal(raw).scaleb(-decimals):,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {symbol}".rstrip()


def status_word(ok: bool | None) -> str:
    return "passed" if ok else ("not checked" if ok is None else "FAILED")


def _json_default(value: Any) -> Any:
    """Evidence may hold raw chain values: bytes (hashes, calldata) as 0x-hex, the rest as text."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if not isinstance(value, tuple) else list(value)
    return str(value)


def _evidence_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return str(_json_default(value))
    return json.dumps(value, sort_keys=True, default=_json_default)


def _failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.ok is False]


def _all_failures(report: AuditReport) -> list[tuple[str, Check]]:
    found = [("contract", c) for c in _failures(report.contract_checks)]
    for escrow in report.escrows:
        found += [(f"escrow #{escrow.escrow_id}", c) for c in _failures(escrow.checks)]
    return found


def _summary(report: AuditReport) -> str:
    failures = _all_failures(report)
    scope = f"{len(report.escrows)} escrow{'s' if len(report.escrows) != 1 else ''}"
    if not failures:
        return f"CONSISTENT: every check passed for {scope} at block {report.block}."
    names = sorted({c.name for _, c in failures})
    return (
        f"INCONSISTENT: {len(failures)} failed check{'s' if len(failures) != 1 else ''} "
        f"({', '.join(names)}) for {scope} at block {report.block}."
    )


def _final_money(escrow: EscrowAudit) -> dict[str, int]:
    if not escrow.timeline:
        return {}
    last = escrow.timeline[-1]
    return {name: int(getattr(last, name)) for name in _MONEY if hasattr(last, name)}


# ---------------------------------------------------------------- JSON


def to_json(report: AuditReport) -> str:
    """Deterministic JSON (sorted keys; amounts as decimal strings of raw integers)."""
    body = report.to_json()
    return json.dumps(body, sort_keys=True, indent=2, default=_json_default) + "\n"


# ---------------------------------------------------------------- Markdown


def _md(text: str) -> str:
    """A string safe inside a Markdown table cell (no pipes, no line breaks, no raw HTML)."""
    return (
        escape(str(text), quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    )


def _md_checks(checks: list[Check]) -> list[str]:
    marks = {True: "✓ passed", False: "✗ **FAILED**", None: "○ not checked"}
    lines = ["| Check | Result | Detail |", "| --- | --- | --- |"]
    lines += [f"| `{_md(c.name)}` | {marks[c.ok]} | {_md(c.detail)} |" for c in checks]
    return lines


def _md_failures(where: str, checks: list[Check]) -> list[str]:
    lines: list[str] = []
    for check in _failures(checks):
        lines.append(f"- **{_md(check.name)}** ({_md(where)}): {_md(check.detail)}")
        for item in check.evidence:
            pairs = "; ".join(
                f"`{_md(k)}`: {_md(_evidence_value(v))}" for k, v in sorted(item.items())
            )
            lines.append(f"  - evidence: {pairs}")
    return lines


def to_markdown(report: AuditReport) -> str:
    lines = [
        "# Escrow audit report",
        "",
        f"**{_md(_summary(report))}**",
        "",
        f"Chain {report.chain_id} · contract `{_md(report.contract)}` · block {report.block}",
        "",
        "## Contract checks",
        "",
        *(_md_checks(report.contract_checks) if report.contract_checks else ["(none run)"]),
    ]
    failures = _md_failures("contract", report.contract_checks)
    if failures:
        lines += ["", "### Failures", "", *failures]
    for escrow in report.escrows:
        verdict = "consistent" if escrow.consistent else "INCONSISTENT"
        lines += [
            "",
            f"## Escrow #{escrow.escrow_id}: {verdict}",
            "",
            f"Token {_md(escrow.symbol)} (`{_md(escrow.token)}`, {escrow.decimals} decimals) · "
            f"{escrow.events} events · compared at block {escrow.block}",
        ]
        money = _final_money(escrow)
        if money:
            lines += [
                "",
                "Final: "
                + " · ".join(
                    f"{name} {_md(format_amount(v, escrow.decimals, escrow.symbol))}"
                    for name, v in money.items()
                ),
            ]
        lines += ["", *_md_checks(escrow.checks)]
        failures = _md_failures(f"escrow #{escrow.escrow_id}", escrow.checks)
        if failures:
            lines += ["", "### Failures", "", *failures]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- HTML

_CSS = """
:root { --ok:#047857; --ok-bg:#d1fae5; --bad:#b91c1c; --bad-bg:#fee2e2; --na:#4b5563;
  --na-bg:#e5e7eb; --ink:#111827; --muted:#6b7280; --line:#e5e7eb; --card:#ffffff; }
* { box-sizing: border-box; }
body { margin:0; background:#f3f4f6; color:var(--ink);
  font:15px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1080px; margin:0 auto; padding:32px 24px 64px; }
h1 { font-size:26px; margin:0 0 4px; } h2 { font-size:19px; margin:0; }
h3 { font-size:15px; margin:20px 0 8px; color:var(--bad); }
code, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:13px; }
.meta { color:var(--muted); font-size:13px; word-break:break-all; }
.summary { margin:20px 0 28px; padding:16px 20px; border-radius:10px; font-weight:600;
  border-left:6px solid; }
.summary.ok { background:var(--ok-bg); border-color:var(--ok); color:var(--ok); }
.summary.bad { background:var(--bad-bg); border-color:var(--bad); color:var(--bad); }
section { background:var(--card); border:1px solid var(--line); border-radius:12px;
  padding:20px 24px; margin:0 0 24px; box-shadow:0 1px 2px rgba(0,0,0,.04); }
.head { display:flex; align-items:center; gap:12px; flex-wrap:wrap; margin-bottom:6px; }
.badge { display:inline-block; padding:2px 10px; border-radius:999px; font-size:12px;
  font-weight:700; letter-spacing:.02em; text-transform:uppercase; white-space:nowrap; }
.badge.ok { background:var(--ok-bg); color:var(--ok); }
.badge.bad { background:var(--bad-bg); color:var(--bad); }
.badge.na { background:var(--na-bg); color:var(--na); }
table { width:100%; border-collapse:collapse; margin-top:12px; font-size:14px;
  table-layout:fixed; }
th { text-align:left; font-size:12px; text-transform:uppercase; letter-spacing:.04em;
  color:var(--muted); border-bottom:2px solid var(--line); padding:6px 10px; }
td { border-bottom:1px solid var(--line); padding:8px 10px; vertical-align:top; }
tr.fail td { background:#fff7f7; }
th.name, td.name { width:140px; } th.status, td.status { width:150px; }
.money { display:flex; gap:12px; flex-wrap:wrap; margin:14px 0 4px; }
.money div { flex:1 1 150px; border:1px solid var(--line); border-radius:8px; padding:8px 12px; }
.money span { display:block; font-size:11px; text-transform:uppercase; color:var(--muted);
  letter-spacing:.04em; }
.money b { font-size:15px; font-variant-numeric:tabular-nums; }
.chart { margin-top:14px; } .chart svg { width:100%; height:auto; display:block; }
.failure { border:1px solid #fecaca; border-radius:8px; padding:10px 14px; margin:8px 0;
  background:#fffafa; }
.failure table { margin-top:6px; font-size:13px; } .failure td { padding:4px 8px; }
.failure td.key { width:160px; color:var(--muted); }
.value { word-break:break-all; }
footer { color:var(--muted); font-size:12px; text-align:center; margin-top:32px; }
"""


def _h(text: object) -> str:
    return escape(str(text), quote=True)


def _badge(ok: bool | None, labels: tuple[str, str] = ("passed", "failed")) -> str:
    kind = "ok" if ok else ("na" if ok is None else "bad")
    label = {"ok": f"✓ {labels[0]}", "bad": f"✗ {labels[1]}", "na": "○ not checked"}[kind]
    return f'<span class="badge {kind}">{label}</span>'


_FAIL_ROW = ' class="fail"'


def _html_checks(checks: list[Check]) -> str:
    rows = "".join(
        f"<tr{_FAIL_ROW if c.ok is False else ''}>"
        f'<td class="name"><code>{_h(c.name)}</code></td>'
        f'<td class="status">{_badge(c.ok)}</td><td>{_h(c.detail)}</td></tr>'
        for c in checks
    )
    return (
        '<table><thead><tr><th class="name">Check</th><th class="status">Result</th>'
        "<th>Detail</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _html_failures(checks: list[Check]) -> str:
    failed = _failures(checks)
    if not failed:
        return ""
    parts = ["<h3>Failures and evidence</h3>"]
    for check in failed:
        items = "".join(
            "<table><tbody>"
            + "".join(
                f'<tr><td class="key mono">{_h(k)}</td>'
                f'<td class="value mono">{_h(_evidence_value(v))}</td></tr>'
                for k, v in sorted(item.items())
            )
            + "</tbody></table>"
            for item in check.evidence
        )
        if not check.evidence:
            items = '<p class="meta">No evidence attached.</p>'
        parts.append(
            f'<div class="failure"><b><code>{_h(check.name)}</code></b>: {_h(check.detail)}'
            f"{items}</div>"
        )
    return "".join(parts)


def _html_money(escrow: EscrowAudit) -> str:
    money = _final_money(escrow)
    if not money:
        return ""
    cells = "".join(
        f"<div><span>{_h(name)}</span><b>{_h(format_amount(v, escrow.decimals))}</b> "
        f"{_h(escrow.symbol)}</div>"
        for name, v in money.items()
    )
    return f'<div class="money">{cells}</div>'


def _html_escrow(escrow: EscrowAudit) -> str:
    chart = (
        f'<div class="chart">{timeline_svg(escrow)}</div>'
        if escrow.timeline
        else '<p class="meta">No money movements to chart.</p>'
    )
    return (
        f'<section id="escrow-{escrow.escrow_id}"><div class="head">'
        f"<h2>Escrow #{escrow.escrow_id}</h2>"
        f"{_badge(escrow.consistent, ('consistent', 'inconsistent'))}</div>"
        f'<div class="meta">Token {_h(escrow.symbol)} <code>{_h(escrow.token)}</code> · '
        f"{escrow.decimals} decimals · {escrow.events} events · compared at block "
        f"{escrow.block}</div>"
        f"{_html_money(escrow)}{chart}{_html_checks(escrow.checks)}"
        f"{_html_failures(escrow.checks)}</section>"
    )


def to_html(report: AuditReport) -> str:
    """One self-contained page: summary, contract checks, then per escrow its checks, failures
    with evidence and a timeline chart (inline SVG)."""
    ok = report.consistent
    contract = (
        f'<section><div class="head"><h2>Contract checks</h2></div>'
        f"{_html_checks(report.contract_checks)}{_html_failures(report.contract_checks)}"
        "</section>"
        if report.contract_checks
        else ""
    )
    escrows = "".join(_html_escrow(e) for e in report.escrows)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Escrow audit report: {'consistent' if ok else 'INCONSISTENT'}</title>"
        f"<style>{_CSS}</style></head><body><main>"
        "<h1>Escrow audit report</h1>"
        f'<div class="meta">Chain {report.chain_id} · contract '
        f"<code>{_h(report.contract)}</code> · block {report.block}</div>"
        f'<div class="summary {"ok" if ok else "bad"}">{_h(_summary(report))}</div>'
        f"{contract}{escrows}"
        "<footer>Generated by <code>escrow audit</code> from the chain; every check can be "
        "re-run by anyone with the RPC URL and the contract address.</footer>"
        "</main></body></html>\n"
    )
