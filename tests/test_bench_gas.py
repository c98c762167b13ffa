"""`scripts/bench_gas.py` reports the realistic scenarios beside the best ones.

The benchmark runs once on the session's Hardhat node (the product's node, rolled back after the
module) and its rows and rendered table are checked for the scenarios, never for hard-coded gas
figures: the relations checked are the ones the EVM's storage pricing implies (a slot written
from zero costs more than one already non-zero, a cleared slot earns a refund).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.chain import devchain
from tests.support import EscrowEnv, load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_gas.py"


bench = load_script(SCRIPT)


@pytest.fixture(scope="module")
def rows(_hardhat_env: EscrowEnv) -> Iterator[list[Any]]:
    """The benchmark's rows from one run on a freshly deployed escrow, rolled back afterwards."""
    w3 = _hardhat_env.w3
    snap = devchain.snapshot(w3)
    _hardhat_env.escrow._params.clear()
    try:
        yield bench.measure(_hardhat_env)
    finally:
        devchain.revert(w3, snap)
        _hardhat_env.escrow._params.clear()


def _gas(rows: list[Any], operation: str, case: str) -> list[int]:
    return [r.gas for r in rows if r.operation == operation and r.case == case]


def test_the_gas_benchmark_reports_each_realistic_scenario_beside_the_best(
    rows: list[Any],
) -> None:
    table = bench.render_markdown(rows, "the test node")
    for operation, case in bench.REQUIRED_SCENARIOS:
        assert _gas(rows, operation, case), f"no {case} row for {operation}"
        assert any(line.startswith(f"| {operation} | {case} | ") for line in table.splitlines()), (
            f"the table has no {case} row for {operation}"
        )
    for row in rows:
        assert row.case in bench.CASES and row.scenario


def test_the_realistic_scenarios_cost_what_their_storage_state_implies(
    rows: list[Any],
) -> None:
    # a provider who withdraws after every escrow pays its zero credit slot at each escrow
    assert min(_gas(rows, bench.LIFECYCLE, bench.REALISTIC)) > max(
        _gas(rows, bench.LIFECYCLE, bench.BEST)
    )
    assert min(_gas(rows, bench.CONFIRM_SIG, bench.REALISTIC)) > max(
        _gas(rows, bench.CONFIRM_SIG, bench.BEST)
    )
    # a payer who keeps a balance earns fewer refunds; a token's first escrow writes a zero slot
    best_erc20 = max(_gas(rows, bench.CREATE_ERC20, bench.BEST))
    realistic = _gas(rows, bench.CREATE_ERC20, bench.REALISTIC)
    assert min(realistic) > best_erc20
    assert min(_gas(rows, bench.CREATE_ERC20, bench.FIRST_USE)) > max(realistic)
    assert min(_gas(rows, bench.CREATE_ETH, bench.FIRST_USE)) > max(
        _gas(rows, bench.CREATE_ETH, bench.REALISTIC)
    )


def test_every_missed_target_says_by_how_much_and_why(rows: list[Any]) -> None:
    target = bench.TARGETS[bench.CREATE_ERC20][0]
    made_up = bench.Row(bench.CREATE_ERC20, bench.FIRST_USE, "s", target + 1_234, "a zero slot")
    assert bench.verdict(made_up, markdown=True) == "**missed by 1,234**: a zero slot"
    missed = [
        r for r in rows if r.operation in bench.TARGETS and r.gas > bench.TARGETS[r.operation][0]
    ]
    for row in missed:
        line = bench.verdict(row, markdown=True)
        over = row.gas - bench.TARGETS[row.operation][0]
        assert line.startswith(f"**missed by {over:,}**: ") and row.why, line
