"""Slither on the contract, offline, against a triage file: the CI gate for static analysis.

What it analyses: ``contracts_sol/QualityEscrow.sol`` and everything it imports (the interface,
the constants library, OpenZeppelin from ``hardhat_local/node_modules``), not the test mocks in
``contracts_sol/test/``. The sources are collected by :func:`backend.chain.compiler.collect_sources`
(so the same files, content and settings as the artifacts), put into one solc standard JSON input
and handed to Slither through crytic-compile's ``solc-json`` platform. solc is whatever
:func:`backend.chain.compiler.resolve_solc` picks (``ESCROW_SOLC``, py-solc-x's solc 0.8.28, or
the npm solc-js behind ``hardhat_local/solcjs-wrapper``), so nothing is downloaded. Only the AST
is requested (Slither's detectors work on it; code generation would triple the time).

Which findings count: those with at least one element (function, variable, expression, pragma)
in one of the project's own files. Findings wholly inside OpenZeppelin are counted by impact and
listed with ``--all``, never gated (a pinned, audited dependency; not ours to change).

A finding is identified without line numbers (``detector``, ``element``, ``expressions``), see
:func:`identity`. The triage file (default ``contracts_sol/slither-triage.json``) lists accepted
findings, each with a one-line ``reason``. Exit status:

* 0: every finding of Medium impact or above is triaged (untriaged Low, Informational and
  Optimization findings are printed, marked ``new``, and do not fail);
* 1: at least one untriaged finding of High or Medium impact;
* 2: the analysis could not run (no solc, Slither not installed, compile error, bad triage file).

Usage (see docs/static-analysis.md)::

    scripts/slither [--triage FILE] [--contract FILE] [--report FILE] [--all]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.chain.compiler import (
    SETTINGS,
    CompilerError,
    collect_sources,
    find_imports,
    resolve_import_name,
    resolve_solc,
    standard_input,
)
from backend.errors import QualityEscrowError
from backend.paths import CONTRACTS_DIR, HARDHAT_DIR

#: The contract analysed by default.
DEFAULT_CONTRACT: Final = CONTRACTS_DIR / "QualityEscrow.sol"
#: The triage file committed next to the contracts.
DEFAULT_TRIAGE: Final = CONTRACTS_DIR / "slither-triage.json"
#: Slither's impact levels, most severe first.
IMPACTS: Final = ("High", "Medium", "Low", "Informational", "Optimization")
#: Impacts that fail the gate when a finding of them is not triaged.
FAILING_IMPACTS: Final = frozenset({"High", "Medium"})
#: Upper bound for one Slither run (seconds); it takes about 7 s here.
SLITHER_TIMEOUT_S: Final = 600

EXIT_OK: Final = 0
EXIT_UNTRIAGED: Final = 1
EXIT_ERROR: Final = 2


class GateError(QualityEscrowError):
    """The analysis could not run or its input is unusable (exit status 2)."""


@dataclass(frozen=True, order=True)
class Identity:
    """What names a finding across edits: no line numbers, no file offsets.

    ``detector`` is Slither's check name (``divide-before-multiply``); ``element`` the qualified
    name of the finding's first element in our files that is not an expression
    (``QualityEscrow._settle``, ``QualityEscrow._books``,
    ``QualityEscrow._settleBreach.toProvider``, ``contracts_sol/QualityEscrow.sol pragma 0.8.28``);
    ``expressions`` the sorted source text of the flagged expressions in our files as Slither
    prints them (empty for most detectors), so a second flagged expression in an already triaged
    function is a new finding.
    """

    detector: str
    element: str
    expressions: tuple[str, ...] = ()

    def as_entry(self, reason: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"detector": self.detector, "element": self.element}
        if self.expressions:
            entry["expressions"] = list(self.expressions)
        entry["reason"] = reason
        return entry


@dataclass(frozen=True)
class Finding:
    """One Slither result, reduced to what the gate needs."""

    identity: Identity
    impact: str
    confidence: str
    description: str  # Slither's text (with line numbers, for people)
    ours: bool  # at least one element in the project's own files


@dataclass(frozen=True)
class TriageEntry:
    identity: Identity
    reason: str


# --------------------------------------------------------------------------- sources


def contract_sources(contract: Path) -> tuple[dict[str, str], Path, frozenset[str]]:
    """The sources ``contract`` needs, the folder their names are relative to, and our names.

    Returns ``(sources, source_root, own)``: ``sources`` maps source unit names
    (``contracts_sol/QualityEscrow.sol``, ``@openzeppelin/contracts/...``) to content, only the
    files reachable by imports from ``contract``; ``source_root`` is the parent of the
    contract's folder; ``own`` the names that are not npm packages. Raises
    :class:`backend.chain.compiler.CompilerError` when an import cannot be resolved.
    """
    contract = contract.resolve()
    contracts_dir = contract.parent
    source_root = contracts_dir.parent
    everything, _ = collect_sources(contracts_dir, contracts_dir / "build")
    root = contract.relative_to(source_root).as_posix()
    closure: dict[str, str] = {}
    pending = [root]
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        if name not in everything:
            raise GateError(f"{name} is not among the collected sources")
        closure[name] = everything[name]
        pending.extend(resolve_import_name(name, path) for path in find_imports(everything[name]))
    own = frozenset(name for name in closure if not name.startswith("@"))
    return dict(sorted(closure.items())), source_root, own


def analysis_input(sources: Mapping[str, str]) -> dict[str, Any]:
    """The standard JSON input: the project's settings, with only the AST as output."""
    data = standard_input(sources)
    settings = {key: value for key, value in SETTINGS.items() if key != "outputSelection"}
    settings["outputSelection"] = {"*": {"": ["ast"]}}
    data["settings"] = settings
    return data


# --------------------------------------------------------------------------- running Slither


def _slither_executable() -> Path:
    beside = Path(sys.executable).parent / "slither"
    if beside.is_file():
        return beside
    found = shutil.which("slither")
    if found is None:
        raise GateError(
            "slither is not installed: run scripts/setup (slither-analyzer is in the test extras)"
        )
    return Path(found)


def run_slither(
    sources: Mapping[str, str], source_root: Path, workdir: Path
) -> list[dict[str, Any]]:
    """Run Slither on ``sources``; return its detector results (Slither's JSON objects).

    ``workdir`` receives the input, the output and a ``bin/solc`` shim for the resolved
    compiler (crytic-compile 0.3 runs ``solc`` from PATH whatever ``--solc`` says). Slither runs
    with ``source_root`` as working directory, so our files keep their source unit names, and
    ``hardhat_local`` as solc working directory, where ``node_modules/@openzeppelin`` is found.
    Raises :class:`GateError` when Slither fails or times out.
    """
    choice = resolve_solc()
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "solc"
    shim.write_text(f'#!/bin/sh\nexec "{choice.path}" "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    input_path = workdir / "input.json"
    input_path.write_text(json.dumps(analysis_input(sources)), encoding="utf-8")
    output_path = workdir / "slither.json"
    cmd = [
        str(_slither_executable()),
        str(input_path),
        "--compile-force-framework",
        "solc-json",
        "--solc",
        str(shim),
        "--solc-working-dir",
        str(HARDHAT_DIR),
        "--json",
        str(output_path),
        "--disable-color",
    ]
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    try:
        proc = subprocess.run(
            cmd,
            cwd=source_root,
            env=env,
            capture_output=True,
            text=True,
            timeout=SLITHER_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GateError(f"slither did not finish within {SLITHER_TIMEOUT_S} s") from exc
    try:
        output = json.loads(output_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        output = None
    if not isinstance(output, dict) or not output.get("success"):
        error = output.get("error") if isinstance(output, dict) else None
        detail = error or proc.stderr.strip()[-3000:] or f"exit status {proc.returncode}"
        raise GateError(f"slither failed ({choice.describe()}):\n{detail}")
    results = output.get("results") or {}
    detectors = results.get("detectors") or []
    return [r for r in detectors if isinstance(r, dict)]


def slither_version() -> str:
    """The installed slither-analyzer version, or ``"not installed"``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slither-analyzer")
    except PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------- findings


def _filename(element: Mapping[str, Any]) -> str:
    mapping = element.get("source_mapping") or {}
    return str(mapping.get("filename_relative", ""))


def _qualified(element: Mapping[str, Any]) -> str:
    names = [str(element.get("name", ""))]
    parent = (element.get("type_specific_fields") or {}).get("parent")
    while isinstance(parent, dict):
        names.append(str(parent.get("name", "")))
        parent = (parent.get("type_specific_fields") or {}).get("parent")
    return ".".join(reversed(names))


def identity(result: Mapping[str, Any], own: frozenset[str]) -> Identity:
    """A result's line-free identity (see :class:`Identity`); ``own``: our source unit names."""
    elements = [e for e in result.get("elements", []) if isinstance(e, dict)]
    mine = [e for e in elements if _filename(e) in own] or elements
    expressions = sorted({str(e.get("name", "")) for e in mine if e.get("type") == "node"} - {""})
    named = [e for e in mine if e.get("type") != "node"]
    if named:
        first = named[0]
        if first.get("type") == "pragma":
            element = f"{_filename(first)} pragma {first.get('name', '')}"
        else:
            element = _qualified(first)
    elif mine:  # only expressions: name their function
        parent = (mine[0].get("type_specific_fields") or {}).get("parent")
        element = _qualified(parent) if isinstance(parent, dict) else _filename(mine[0])
    else:
        element = ""
    return Identity(str(result.get("check", "")), element, tuple(expressions))


def findings(results: Sequence[Mapping[str, Any]], own: frozenset[str]) -> list[Finding]:
    """Slither's results as :class:`Finding` objects, most severe first."""
    out = [
        Finding(
            identity=identity(r, own),
            impact=str(r.get("impact", "")),
            confidence=str(r.get("confidence", "")),
            description=str(r.get("description", "")).strip(),
            ours=any(_filename(e) in own for e in r.get("elements", []) if isinstance(e, dict)),
        )
        for r in results
    ]
    rank = {impact: i for i, impact in enumerate(IMPACTS)}
    out.sort(key=lambda f: (rank.get(f.impact, len(IMPACTS)), f.identity))
    return out


# --------------------------------------------------------------------------- triage


def load_triage(path: Path) -> list[TriageEntry]:
    """Read the triage file: ``{"findings": [{detector, element, expressions?, reason}]}``.

    Raises :class:`GateError` when it is missing, not JSON, or an entry lacks a field, has a
    reason that is empty or spans lines, or repeats another entry.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GateError(f"cannot read the triage file {path}: {exc}") from exc
    raw = data.get("findings") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise GateError(f"{path}: expected an object with a list under 'findings'")
    entries: list[TriageEntry] = []
    seen: set[Identity] = set()
    for i, item in enumerate(raw):
        where = f"{path}: findings[{i}]"
        if not isinstance(item, dict):
            raise GateError(f"{where} is not an object")
        detector, element = item.get("detector"), item.get("element")
        expressions = item.get("expressions", [])
        reason = item.get("reason")
        if not isinstance(detector, str) or not detector or not isinstance(element, str):
            raise GateError(f"{where}: 'detector' and 'element' must be non-empty strings")
        if not isinstance(expressions, list) or not all(isinstance(x, str) for x in expressions):
            raise GateError(f"{where}: 'expressions' must be a list of strings")
        if not isinstance(reason, str) or not reason.strip() or "\n" in reason:
            raise GateError(f"{where} ({detector} {element}): 'reason' must be one non-empty line")
        ident = Identity(detector, element, tuple(sorted(set(expressions))))
        if ident in seen:
            raise GateError(f"{where} repeats an earlier entry ({detector} {element})")
        seen.add(ident)
        entries.append(TriageEntry(ident, reason.strip()))
    return entries


# --------------------------------------------------------------------------- the gate


@dataclass(frozen=True)
class GateResult:
    ours: list[tuple[Finding, str | None]]  # (finding, triage reason or None)
    dependencies: list[Finding]
    stale: list[TriageEntry]  # entries that matched no finding
    failing: list[Finding]  # untriaged and of a failing impact
    seconds: float

    @property
    def exit_code(self) -> int:
        return EXIT_UNTRIAGED if self.failing else EXIT_OK


def evaluate(all_findings: Sequence[Finding], triage: Sequence[TriageEntry]) -> GateResult:
    """Match findings with triage entries (exact identity) and decide the outcome."""
    reasons = {entry.identity: entry.reason for entry in triage}
    ours = [(f, reasons.get(f.identity)) for f in all_findings if f.ours]
    matched = {f.identity for f, reason in ours if reason is not None}
    return GateResult(
        ours=ours,
        dependencies=[f for f in all_findings if not f.ours],
        stale=[entry for entry in triage if entry.identity not in matched],
        failing=[f for f, reason in ours if reason is None and f.impact in FAILING_IMPACTS],
        seconds=0.0,
    )


def _counts(items: Sequence[Finding]) -> str:
    counter = Counter(f.impact for f in items)
    return ", ".join(f"{impact} {counter[impact]}" for impact in IMPACTS if counter[impact])


def print_result(result: GateResult, *, show_dependencies: bool, triage_path: Path) -> None:
    """The human report on stdout: each finding with its triage, then a summary."""
    for finding, reason in result.ours:
        ident = finding.identity
        if reason is not None:
            mark = "triaged"
        elif finding.impact in FAILING_IMPACTS:
            mark = "NEW, FAILS"
        else:
            mark = "new"
        print(f"[{mark}] {finding.impact}/{finding.confidence} {ident.detector}: {ident.element}")
        for expression in ident.expressions:
            print(f"    at: {expression}")
        if reason is not None:
            print(f"    reason: {reason}")
        else:
            for line in finding.description.splitlines():
                print(f"    | {line}")
            todo = json.dumps(ident.as_entry("TODO: why this is acceptable"), ensure_ascii=False)
            print(f"    triage entry to add (with a real reason): {todo}")
    if show_dependencies:
        for finding in result.dependencies:
            first = finding.description.splitlines()[0] if finding.description else ""
            print(f"[dependency] {finding.impact} {finding.identity.detector}: {first}")
    for entry in result.stale:
        ident = entry.identity
        print(f"[stale triage entry, matches nothing: remove it] {ident.detector}: {ident.element}")
    ours = [f for f, _ in result.ours]
    untriaged = [f for f, reason in result.ours if reason is None]
    print(
        f"slither {slither_version()}: {len(ours)} findings in our files"
        f" ({_counts(ours) or 'none'})"
        f", {len(ours) - len(untriaged)} triaged in {triage_path.name}, {len(untriaged)} not"
        f"; {len(result.dependencies)} in dependencies ({_counts(result.dependencies) or 'none'}"
        f", not gated{'' if show_dependencies else '; --all lists them'})"
        f"; {len(result.stale)} stale triage entries; {result.seconds:.1f} s"
    )
    if result.failing:
        print(
            f"FAIL: {len(result.failing)} untriaged finding(s) of Medium impact or above; fix the "
            f"contract or add an entry with its reason to {triage_path} (docs/static-analysis.md)"
        )
    else:
        print("OK: no untriaged finding of Medium impact or above (Low and below never fail)")


def _report(result: GateResult) -> dict[str, Any]:
    def finding(f: Finding, reason: str | None) -> dict[str, Any]:
        return {
            **f.identity.as_entry(reason or ""),
            "impact": f.impact,
            "confidence": f.confidence,
            "triaged": reason is not None,
        }

    return {
        "slither": slither_version(),
        "exit_code": result.exit_code,
        "seconds": round(result.seconds, 2),
        "findings": [finding(f, reason) for f, reason in result.ours],
        "dependency_findings": dict(Counter(f.impact for f in result.dependencies)),
        "stale": [e.identity.as_entry(e.reason) for e in result.stale],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/slither",
        description="Slither on the contract, offline; fails on untriaged Medium+ findings.",
    )
    parser.add_argument(
        "--contract",
        type=Path,
        default=DEFAULT_CONTRACT,
        help="the root .sol file (default: contracts_sol/QualityEscrow.sol)",
    )
    parser.add_argument(
        "--triage",
        type=Path,
        default=DEFAULT_TRIAGE,
        help="the triage file (default: contracts_sol/slither-triage.json)",
    )
    parser.add_argument("--report", type=Path, help="also write the outcome as JSON here")
    parser.add_argument("--all", action="store_true", help="list dependency findings too")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        triage = load_triage(args.triage)
        sources, source_root, own = contract_sources(args.contract)
        with tempfile.TemporaryDirectory(prefix="slither-gate-") as tmp:
            results = run_slither(sources, source_root, Path(tmp))
    except (GateError, CompilerError) as exc:  # CompilerError: no solc, unresolved import
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    evaluated = evaluate(findings(results, own), triage)
    result = GateResult(
        ours=evaluated.ours,
        dependencies=evaluated.dependencies,
        stale=evaluated.stale,
        failing=evaluated.failing,
        seconds=time.perf_counter() - started,
    )
    print_result(result, show_dependencies=args.all, triage_path=args.triage)
    if args.report is not None:
        args.report.write_text(json.dumps(_report(result), indent=2) + "\n", encoding="utf-8")
    return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
