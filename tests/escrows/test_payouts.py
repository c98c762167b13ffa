"""`backend/escrows/payouts.py`: what settling a milestone pays each side, the contract's own rule
(docs/interface.md section 1.4), checked against the contract's `MilestoneSettled` on the
in-process chain: after a breach reserve shrank `locked`, with rounding, and for the last
milestone, which takes all of `locked`."""

from __future__ import annotations

from backend.escrows.payouts import MilestonePayout, milestone_payout, settlement_split
from tests.support import PAYOUTS, EscrowEnv


def test_the_split_rounds_the_base_and_the_providers_share_down() -> None:
    # base = 3 * 1000 // 7 = 428; provider 428 * 3333 // 10000 = 142
    assert settlement_split(3, 1_000, 7, 3_333) == MilestonePayout(142, 286)
    assert settlement_split(7, 1_000, 7, 3_333) == MilestonePayout(333, 667)  # the last: all
    assert settlement_split(5, 50, 10, 10_000) == MilestonePayout(25, 0)
    assert settlement_split(5, 50, 10, 0) == MilestonePayout(0, 25)


def test_the_preview_is_what_the_contract_credits_after_a_reserve_and_for_the_last_milestone(
    env: EscrowEnv,
) -> None:
    amounts = (1_000_003, 2_000_001, 333)
    escrow_id = env.create_active(env.params(amounts))
    env.escrow.report_breach(escrow_id, 1, 0, b"\x44" * 32, env.oracle)  # locked shrinks
    params = env.escrow.params(escrow_id)
    for milestone, rating in ((1, 3), (0, 2), (2, 4)):  # the last one takes all of locked
        view = env.escrow.get_escrow(escrow_id)
        preview = milestone_payout(params, view, milestone, rating)
        settled = env.escrow.confirm(escrow_id, milestone, rating, None, env.client)
        event = settled.event("MilestoneSettled").args
        assert (preview.to_provider, preview.to_client) == (
            event["toProvider"], event["toClient"]
        ), (milestone, rating)
        assert preview.to_provider == (
            (preview.to_provider + preview.to_client) * PAYOUTS[rating - 1] // 10_000
        )
    assert env.escrow.get_escrow(escrow_id).locked == 0


def test_the_payout_json_gives_decimal_strings_next_to_the_token() -> None:
    token = {"address": "0x" + "00" * 20, "symbol": "ETH", "decimals": 18}
    assert MilestonePayout(2**200, 1).to_json(token) == {
        "to_provider": str(2**200), "to_client": "1", "token": token,
    }
