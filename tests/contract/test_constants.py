"""The contract's named numbers (`contracts_sol/libraries/ConstantsLib.sol`) and their Python
mirrors (`backend/chain/types.py`) are the same numbers: a change on one side fails here."""

from __future__ import annotations

import re
from enum import IntEnum

from backend.chain import types
from backend.paths import CONTRACTS_DIR

CONSTANT = re.compile(r"^uint\d+ constant (\w+) = ([0-9_* ]+);$", re.MULTILINE)


def solidity_constants() -> dict[str, int]:
    text = (CONTRACTS_DIR / "libraries" / "ConstantsLib.sol").read_text()
    found: dict[str, int] = {}
    for name, expression in CONSTANT.findall(text):
        base, _, power = expression.replace("_", "").replace(" ", "").partition("**")
        found[name] = int(base) ** int(power) if power else int(base)
    return found


def python_mirrors() -> dict[str, int]:
    mirrors = {
        "BPS": types.BPS,
        "MAX_MILESTONES": types.MAX_MILESTONES,
        "MAX_TOTAL": types.MAX_TOTAL,
    }
    groups: list[tuple[str, type[IntEnum]]] = [
        ("BREACH_", types.BreachKind),
        ("OUTCOME_", types.BreachOutcome),
    ]
    for prefix, enum in groups:
        mirrors.update({prefix + member.name: int(member) for member in enum})
    how_names = {"DISPUTE_RESOLVED": "DISPUTE"}
    mirrors.update(
        {"HOW_" + how_names.get(m.name, m.name): int(m) for m in types.SettledHow}
    )
    return mirrors


def test_every_python_mirror_equals_its_solidity_constant() -> None:
    solidity = solidity_constants()
    mirrors = python_mirrors()
    assert set(mirrors) <= set(solidity), set(mirrors) - set(solidity)
    assert {name: solidity[name] for name in mirrors} == mirrors


def test_every_breach_kind_outcome_and_settlement_code_has_a_mirror() -> None:
    coded = {
        name for name in solidity_constants()
        if name.startswith(("BREACH_", "OUTCOME_", "HOW_"))
    }
    assert coded == {n for n in python_mirrors() if n.startswith(("BREACH_", "OUTCOME_", "HOW_"))}
