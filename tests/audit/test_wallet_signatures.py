"""The audit checks a contract-wallet client's settlement through the one EIP-1271 check, asking
the wallet as it was at the settlement's block."""

from __future__ import annotations

from backend.audit.verify import audit_escrow
from tests.chain.support import OTHER_VALUE, set_mode, wallet_escrow
from tests.support import EscrowEnv


def _signatures(env: EscrowEnv, escrow_id: int) -> tuple[bool | None, str, list[dict[str, object]]]:
    report = audit_escrow(env.w3, env.escrow.address, escrow_id, from_block=env.deployment_block)
    [check] = [c for c in report.checks if c.name == "signatures"]
    return check.ok, check.detail, check.evidence


def test_a_wallet_settlement_verifies_at_its_block_even_after_the_wallet_changed_its_mind(
    env: EscrowEnv,
) -> None:
    escrow_id, wallet = wallet_escrow(env)
    confirmation = env.confirmation(escrow_id, 0, rating=5)
    env.escrow.confirm_with_sig(confirmation, b"\xab" * 80, env.parties.relayer.address)
    assert _signatures(env, escrow_id)[:2] == (True, "1 of 1 signatures verified")
    set_mode(env, wallet, OTHER_VALUE)
    # the wallet refuses now, but it accepted when the contract asked it
    assert _signatures(env, escrow_id)[:2] == (True, "1 of 1 signatures verified")
