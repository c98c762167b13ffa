"""Random sequences of every `QualityEscrow` operation against a Python model of
docs/interface.md section 1, with the design's money invariants checked after every step.

The model predicts each call: either it succeeds (then the amounts in its events must equal the
model's) or it is refused (then the contract must revert with one of the custom errors the model
says apply, and nothing may change). docs/interface.md does not fix the order of a function's
checks, so when several refusals apply any one of them is accepted.

Targets are drawn so that both outcomes are common: an index mostly lands on an escrow,
milestone or breach in a state the call accepts, and `prepare` can first bring one into that
state (deliver, dispute, report, challenge) and move time to the last second of its window or
the first second after it.

Two shortcuts keep the run near 30 s of CPU: views are read with a direct `eth_call` into the
in-process chain (`ChainViews`), and gas is estimated with one run of the transaction instead of
py-evm's binary search (`_fast_gas_estimates`). Transactions still go through `EscrowClient`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, cast

import eth_abi
from eth.vm.spoof import SpoofTransaction
from eth_account.signers.local import LocalAccount
from eth_utils import function_signature_to_4byte_selector
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from backend.chain import devchain
from backend.chain import revert_types as rt
from backend.chain.eip712 import Confirmation
from backend.chain.errors import ContractRevert
from backend.chain.transactions import TxResult, send
from backend.chain.types import (
    BPS,
    ZERO_ADDRESS,
    ZERO_HASH,
    BreachState,
    BreachView,
    EscrowParams,
    EscrowView,
    MilestoneState,
    Status,
    Terms,
)
from tests.support import TERMS_HASH, EscrowEnv

DAY = 86_400
MAX_ESCROWS = 5
DELIVERY_HASH = b"\x22" * 32
SOME_HASH = b"\x33" * 32

SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    # no `explain` phase: re-running a failure under a tracer costs minutes on this chain
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)

# ------------------------------------------------------------------ strategies

PICK = st.integers(0, 7)  # which escrow a rule acts on (see `EscrowMachine.pick`)
INDEX = st.integers(0, 9)  # which milestone or breach (see `_choose`)
# 0: act on what is there; 1: first bring a target into the state the call needs; 2 and 3: also
# move time so that the call runs at the last second of its window (2) or the first after it (3)
PREPARE = st.integers(0, 3)
WHO = st.integers(-2, 7)  # negative: a wrong caller, otherwise the party the call is reserved for
ANYONE = st.integers(0, 6)
RATING = st.integers(0, 6)  # 0 and 6 are invalid
SPLIT = st.one_of(
    st.integers(0, BPS), st.sampled_from([0, 1, 4_999, 5_000, 9_999, BPS, BPS + 1, 65_535])
)
KIND = st.sampled_from([1, 1, 2, 2, 3, 3, 0, 4])
PERIOD = st.one_of(
    st.integers(0, 3), st.sampled_from([63, 64, 127, 128, 2**32 - 1]), st.integers(0, 2**32 - 1)
)
COMMENT = st.sampled_from([ZERO_HASH, SOME_HASH])
BPS_VALUE = st.one_of(st.integers(0, BPS), st.sampled_from([0, 1, 3_333, 9_999, BPS]))
WINDOW = st.one_of(st.integers(1, 5).map(lambda d: d * DAY), st.integers(DAY, 5 * DAY))


def _choose(value: int, count: int, preferred: list[int]) -> int:
    """Maps an `INDEX` draw to mostly one of the `preferred` items (those a call can succeed on),
    sometimes any of the `count` items, and now and then one just past them."""
    if value < 5 and preferred:
        return preferred[value % len(preferred)]
    if value < 8 and count:
        return value % count
    return count + value % 2


def _amounts(use_token: bool) -> st.SearchStrategy[tuple[int, ...]]:
    large = st.integers(10**9, 2**108 if use_token else 10**21)
    one = st.one_of(st.integers(1, 10), st.integers(11, 10**9), large)
    return st.lists(one, min_size=1, max_size=4).map(tuple)


@dataclass(frozen=True)
class Spec:
    """An escrow to create; the delivery deadline is `deadline_in` seconds after creation."""

    use_token: bool
    amounts: tuple[int, ...]
    payouts: tuple[int, int, int, int, int]
    refund_bps: tuple[int, int, int]
    max_refund_bps: int
    review: int
    challenge: int
    arbitration: int
    has_arbiter: bool
    deadline_in: int
    client: str  # attribute of `Parties`
    provider: str


@st.composite
def specs(draw: st.DrawFn, use_token: bool | None = None, has_arbiter: bool | None = None) -> Spec:
    if use_token is None:
        use_token = draw(st.booleans())
    if has_arbiter is None:
        has_arbiter = draw(st.sampled_from([True, True, True, False]))
    table = sorted(draw(st.lists(BPS_VALUE, min_size=4, max_size=4)))
    arbitration = draw(WINDOW) if has_arbiter else draw(st.sampled_from([0, DAY]))
    return Spec(
        use_token=use_token,
        amounts=draw(_amounts(use_token)),
        payouts=(table[0], table[1], table[2], table[3], BPS),
        refund_bps=(draw(BPS_VALUE), draw(BPS_VALUE), draw(BPS_VALUE)),
        max_refund_bps=draw(BPS_VALUE),
        review=draw(WINDOW),
        challenge=draw(WINDOW),
        arbitration=arbitration,
        has_arbiter=has_arbiter,
        # now and then the deadline is the creation time itself (allowed, nothing deliverable)
        deadline_in=0 if draw(st.integers(0, 9)) == 0 else draw(st.integers(2 * DAY, 10 * DAY)),
        client=draw(st.sampled_from(["client", "stranger"])),
        provider=draw(st.sampled_from(["provider", "deployer"])),
    )


# ----------------------------------------------------------------------- model


@dataclass(frozen=True)
class Refusal:
    """A custom error the model expects, with the fields it can predict."""

    error: type[ContractRevert]
    fields: tuple[tuple[str, Any], ...] = ()

    def matches(self, exc: ContractRevert) -> bool:
        return type(exc) is self.error and all(exc.fields.get(k) == v for k, v in self.fields)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.fields)
        return f"{self.error.__name__}({shown})"


def refusal(error: type[ContractRevert], **fields: Any) -> Refusal:
    return Refusal(error, tuple(fields.items()))


@dataclass
class MilestoneModel:
    amount: int
    state: MilestoneState = MilestoneState.NONE
    since: int = 0


@dataclass
class BreachModel:
    kind: int
    period: int
    reported_at: int
    reserve: int
    state: BreachState = BreachState.REPORTED
    challenged_at: int = 0


@dataclass
class EscrowModel:
    """What docs/interface.md's rules say one escrow's state is."""

    escrow_id: int
    params: EscrowParams
    client_key: LocalAccount
    locked: int
    nominal: int
    status: Status = Status.PROPOSED
    reserved: int = 0
    refunded: int = 0
    settled_count: int = 0
    cancelled: bool = False
    milestones: list[MilestoneModel] = field(default_factory=list)
    breaches: list[BreachModel] = field(default_factory=list)
    reported: set[tuple[int, int]] = field(default_factory=set)
    # credited from this escrow, summed from its events (independent of the model's arithmetic)
    event_to_provider: int = 0
    event_to_client: int = 0

    @property
    def total(self) -> int:
        return self.params.total

    @property
    def terms(self) -> Terms:
        return self.params.terms

    @property
    def active(self) -> bool:
        return self.status == Status.ACTIVE

    @property
    def arbitrated(self) -> bool:
        return self.params.arbiter != ZERO_ADDRESS

    def milestones_in(self, *states: MilestoneState) -> list[int]:
        return [i for i, m in enumerate(self.milestones) if m.state in states]

    def breaches_in(self, state: BreachState) -> list[int]:
        return [i for i, b in enumerate(self.breaches) if b.state == state]

    def unsettled(self) -> list[int]:
        return [i for i, m in enumerate(self.milestones) if m.state != MilestoneState.SETTLED]

    def split(self, milestone: int, provider_bps: int) -> tuple[int, int, int]:
        """(base, toProvider, toClient) of settling `milestone` now."""
        amount = self.milestones[milestone].amount
        if self.unsettled() == [milestone]:  # the last unsettled milestone takes all of locked
            base = self.locked
        else:
            base = amount * self.locked // self.nominal
        to_provider = base * provider_bps // BPS
        return base, to_provider, base - to_provider

    def settle(self, milestone: int, provider_bps: int, t: int) -> tuple[int, int]:
        base, to_provider, to_client = self.split(milestone, provider_bps)
        m = self.milestones[milestone]
        self.locked -= base
        self.nominal -= m.amount
        self.settled_count += 1
        m.state, m.since = MilestoneState.SETTLED, t
        self.close_if_done()
        return to_provider, to_client

    def reserve_for(self, kind: int) -> int:
        kind_bps = self.terms.kind_bps(kind)
        cap = self.terms.max_refund_bps * self.total // BPS
        cap_left = max(0, cap - self.refunded - self.reserved)
        return min(kind_bps * self.total // BPS, cap_left, self.locked)

    def close_if_done(self) -> None:
        if self.nominal == 0 and self.reserved == 0:
            self.status = Status.CLOSED


# ----------------------------------------------------------------------- views


class ChainViews:
    """The contract's views (and the token's `balanceOf`), each one `eth_call` straight into the
    in-process chain. `EscrowClient` makes the same calls through web3's request middleware,
    which costs three times the EVM work here and was half of this test's time; every escrow
    created is read both ways once to keep the two in step."""

    ESCROW = "(uint8,uint256,uint256,uint256,uint256,uint256,uint256,uint256)"
    BREACH = "(uint8,uint8,uint32,uint64,uint64,uint256)"

    def __init__(self, env: EscrowEnv) -> None:
        self.tester = cast(Any, env.w3.provider).ethereum_tester
        self.escrow = env.escrow.address
        self.sender = env.parties.deployer.address

    def call(self, to: str, signature: str, args: tuple[Any, ...], out: list[str]) -> Any:
        inputs = signature[signature.index("(") + 1 : -1].split(",")
        data = function_signature_to_4byte_selector(signature) + eth_abi.encode(inputs, args)
        tx = {"from": self.sender, "to": to, "data": "0x" + data.hex()}
        raw = self.tester.call(tx, "latest")
        return eth_abi.decode(out, bytes.fromhex(raw.removeprefix("0x")))

    def get_escrow(self, escrow_id: int) -> EscrowView:
        (v,) = self.call(self.escrow, "getEscrow(uint256)", (escrow_id,), [self.ESCROW])
        return EscrowView.from_abi(v)

    def get_milestone(self, escrow_id: int, milestone: int) -> tuple[MilestoneState, int]:
        args = (escrow_id, milestone)
        state, since = self.call(
            self.escrow, "getMilestone(uint256,uint256)", args, ["uint8", "uint64"]
        )
        return MilestoneState(state), since

    def get_breach(self, escrow_id: int, breach: int) -> BreachView:
        args = (escrow_id, breach)
        (v,) = self.call(self.escrow, "getBreach(uint256,uint256)", args, [self.BREACH])
        return BreachView.from_abi(v)

    def credits(self, account: str, token: str) -> int:
        args = (account, token)
        (amount,) = self.call(self.escrow, "credits(address,address)", args, ["uint256"])
        return int(amount)

    def balance(self, token: str) -> int:
        if token == ZERO_ADDRESS:
            return int(self.tester.get_balance(self.escrow))
        (amount,) = self.call(token, "balanceOf(address)", (self.escrow,), ["uint256"])
        return int(amount)


# --------------------------------------------------------------------- machine

# what `refused_call` does wrong: a creation refusal, an unknown id or mismatched parameters
REFUSED_CALLS = [
    "caller",
    "no_milestones",
    "too_many",
    "zero_amount",
    "too_large",
    "self_provider",
    "zero_provider",
    "decreasing",
    "not_full",
    "refund_bps",
    "cap_bps",
    "review0",
    "challenge0",
    "arbitration0",
    "deadline",
    "eth_value",
    "token_value",
    "unknown_escrow",
    "wrong_params",
]


class EscrowMachine(RuleBasedStateMachine):
    def __init__(self, env: EscrowEnv) -> None:
        super().__init__()
        self.env = env
        self.w3 = env.w3
        self.api = env.escrow
        self.views = ChainViews(env)
        self.snapshot = devchain.snapshot(self.w3)
        assert self.api.escrow_count() == 0, "the invariant machine needs a clean chain"
        # Run well ahead of the wall clock: each block is then exactly 1 s after the one before.
        env.advance(DAY)
        parties = env.parties
        self.accounts: list[str] = [
            a.address
            for a in (
                parties.client,
                parties.provider,
                parties.oracle,
                parties.arbiter,
                parties.relayer,
                parties.stranger,
                parties.deployer,
            )
        ]
        self.tokens: list[str] = [ZERO_ADDRESS, env.token]
        for token in self.tokens:
            assert env.balance(self.api.address, token) == 0, "the escrow must start empty"
        self.credits: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.escrows: list[EscrowModel] = []
        self.settled_seen: set[tuple[int, int]] = set()
        self.reports_seen: set[tuple[int, int, int]] = set()
        self.version = 0  # successful escrow transactions so far
        self.checked_version = -1
        self.dirty: set[int] = set()
        self.t = 0

    def teardown(self) -> None:
        devchain.revert(self.w3, self.snapshot)

    # ------------------------------------------------------------ targets

    def has_escrows(self) -> bool:
        return bool(self.escrows)

    def pick(self, value: int, *tiers: Callable[[EscrowModel], bool]) -> EscrowModel:
        """Mostly an escrow of the first non-empty tier (active ones by default), sometimes any."""
        if value < 6:
            for tier in tiers or (lambda e: e.active,):
                found = [e for e in self.escrows if tier(e)]
                if found:
                    return found[value % len(found)]
        return self.escrows[value % len(self.escrows)]

    def pick_milestone(
        self, value: int, index: int, *states: MilestoneState, arbitrated: bool = False
    ) -> tuple[EscrowModel, int]:
        """An escrow with a milestone in one of `states` if possible (else, when the call needs
        an arbiter, one with an arbiter so that `prepare` can make such a milestone)."""
        e = self.pick(
            value,
            lambda e: e.active and bool(e.milestones_in(*states)),
            lambda e: e.active and (e.arbitrated or not arbitrated) and self.deliverable(e),
            lambda e: e.active and (e.arbitrated or not arbitrated),
        )
        return e, _choose(index, len(e.milestones), e.milestones_in(*states))

    def deliverable(self, e: EscrowModel) -> bool:
        """Whether a milestone of `e` can still be delivered."""
        todo = e.milestones_in(MilestoneState.NONE)
        return e.active and bool(todo) and self.env.now() + 1 <= e.terms.delivery_deadline

    def pick_breach(
        self, value: int, index: int, state: BreachState, *, arbitrated: bool = False
    ) -> tuple[EscrowModel, int]:
        e = self.pick(
            value,
            lambda e: e.active and bool(e.breaches_in(state)),
            lambda e: e.active and (e.arbitrated or not arbitrated),
        )
        return e, _choose(index, len(e.breaches), e.breaches_in(state))

    def next_time(self) -> int:
        """The timestamp the next transaction will run at."""
        self.t = self.env.now() + 1
        return self.t

    def run_next_at(self, target: int) -> None:
        """Moves time so that the next transaction runs at `target` (if that is still ahead)."""
        now = self.env.now()
        if target > now + 1:
            self.env.advance(target - now)

    def caller(self, who: int, required: str) -> str:
        if who >= 0:
            return required
        others = [a for a in self.accounts if a != required and a != ZERO_ADDRESS]
        return others[-who % len(others)]

    def arbiter_caller(self, e: EscrowModel, who: int) -> str:
        return self.caller(who, e.params.arbiter if e.arbitrated else self.env.arbiter)

    # ----------------------------------------------------------- refusals

    @staticmethod
    def needs_caller(sender: str, required: str) -> list[Refusal]:
        if sender == required:
            return []
        return [refusal(rt.EscrowUnauthorizedCaller, caller=sender, required=required)]

    @staticmethod
    def needs_status(e: EscrowModel, required: Status) -> list[Refusal]:
        if e.status == required:
            return []
        return [
            refusal(
                rt.EscrowInvalidStatus, escrowId=e.escrow_id, status=e.status, required=required
            )
        ]

    @staticmethod
    def needs_arbiter(e: EscrowModel) -> list[Refusal]:
        return [] if e.arbitrated else [refusal(rt.EscrowNoArbiter, escrowId=e.escrow_id)]

    @staticmethod
    def in_range(e: EscrowModel, milestone: int) -> list[Refusal]:
        count = len(e.milestones)
        if milestone < count:
            return []
        return [refusal(rt.EscrowMilestoneOutOfRange, milestone=milestone, count=count)]

    @staticmethod
    def milestone_state(e: EscrowModel, milestone: int, *allowed: MilestoneState) -> list[Refusal]:
        state = e.milestones[milestone].state
        if state in allowed:
            return []
        return [
            refusal(
                rt.EscrowInvalidMilestoneState,
                escrowId=e.escrow_id,
                milestone=milestone,
                state=state,
            )
        ]

    @staticmethod
    def breach_state(e: EscrowModel, breach: int, allowed: BreachState) -> list[Refusal]:
        if breach >= len(e.breaches):
            return [refusal(rt.EscrowBreachNotFound, escrowId=e.escrow_id, breachId=breach)]
        state = e.breaches[breach].state
        if state == allowed:
            return []
        return [
            refusal(rt.EscrowInvalidBreachState, escrowId=e.escrow_id, breachId=breach, state=state)
        ]

    def inside(self, end: int) -> list[Refusal]:
        """The call must run inside a window ending at `end`: `t <= end`."""
        if self.t <= end:
            return []
        return [refusal(rt.EscrowWindowClosed, endedAt=end, timestamp=self.t)]

    def after(self, end: int) -> list[Refusal]:
        """The call must run after a window ending at `end`: `t > end`."""
        if self.t > end:
            return []
        return [refusal(rt.EscrowWindowOpen, endsAt=end, timestamp=self.t)]

    # ---------------------------------------------------------- execution

    def execute(
        self, what: str, action: Callable[[], TxResult], refusals: list[Refusal]
    ) -> TxResult | None:
        """Runs `action`; returns its result when the model predicted success, None otherwise."""
        block = self.w3.eth.block_number
        if refusals:
            try:
                action()
            except ContractRevert as exc:
                if not any(r.matches(exc) for r in refusals):
                    raise AssertionError(
                        f"{what} at t={self.t}: reverted with {exc}, the model expected one of "
                        f"{refusals}"
                    ) from exc
            else:
                raise AssertionError(
                    f"{what} at t={self.t}: succeeded, the model expected one of {refusals}"
                )
            assert self.w3.eth.block_number == block, f"{what}: a refused call changed the chain"
            return None
        try:
            result = action()
        except ContractRevert as exc:
            raise AssertionError(
                f"{what} at t={self.t}: the model expected success, the contract reverted "
                f"with {exc}"
            ) from exc
        mined_at = int(self.w3.eth.get_block(result.block_number)["timestamp"])
        assert mined_at == self.t, f"harness: {what} ran at {mined_at}, not at {self.t}"
        self.version += 1
        self.absorb(result)
        return result

    def absorb(self, result: TxResult) -> None:
        """Per-escrow credit flows from the events, and the no-double-settlement rules."""
        by_id = {e.escrow_id: e for e in self.escrows}
        for ev in result.events:
            args = ev.args
            e = by_id.get(args.get("escrowId", 0))
            if ev.name == "MilestoneSettled":
                key = (args["escrowId"], args["milestone"])
                assert key not in self.settled_seen, f"milestone {key} settled twice"
                self.settled_seen.add(key)
                assert e is not None
                e.event_to_provider += args["toProvider"]
                e.event_to_client += args["toClient"]
            elif ev.name == "BreachReported":
                key3 = (args["escrowId"], args["kind"], args["period"])
                assert key3 not in self.reports_seen, f"(kind, period) {key3} reported twice"
                self.reports_seen.add(key3)
            elif ev.name == "BreachSettled":
                assert e is not None
                e.event_to_provider += args["toProvider"]
                e.event_to_client += args["toClient"]
            elif ev.name == "EscrowCancelled":
                assert e is not None
                e.event_to_client += args["refund"]

    @staticmethod
    def expect(result: TxResult, name: str, **expected: Any) -> None:
        args = result.event(name).args
        got = {k: args[k] for k in expected}
        assert got == expected, f"{name}: the contract says {got}, the model {expected}"

    def credit(self, account: str, token: str, amount: int) -> None:
        self.credits[(account, token)] += amount

    def settled(
        self,
        e: EscrowModel,
        result: TxResult,
        milestone: int,
        provider_bps: int,
        how: int,
        rating: int,
        comment: bytes,
    ) -> None:
        to_provider, to_client = e.settle(milestone, provider_bps, self.t)
        self.credit(e.params.provider, e.params.token, to_provider)
        self.credit(e.params.client, e.params.token, to_client)
        self.expect(
            result,
            "MilestoneSettled",
            escrowId=e.escrow_id,
            milestone=milestone,
            how=how,
            rating=rating,
            commentHash=comment,
            toProvider=to_provider,
            toClient=to_client,
        )
        self.dirty.add(e.escrow_id)

    def breach_settled(
        self,
        e: EscrowModel,
        result: TxResult,
        breach: int,
        outcome: BreachState,
        code: int,
        refund: int,
        release: int,
    ) -> None:
        e.breaches[breach].state = outcome
        e.reserved -= refund + release
        e.refunded += refund
        self.credit(e.params.client, e.params.token, refund)
        to_provider = 0
        if release:
            if e.unsettled():  # back to locked while a milestone can still use it
                e.locked += release
            else:
                to_provider = release
                self.credit(e.params.provider, e.params.token, release)
        e.close_if_done()
        self.expect(
            result,
            "BreachSettled",
            escrowId=e.escrow_id,
            breachId=breach,
            outcome=code,
            toClient=refund,
            toProvider=to_provider,
        )
        self.dirty.add(e.escrow_id)

    # --------------------------------------------------------- operations

    def build_params(self, spec: Spec, client: str, provider: str, deadline: int) -> EscrowParams:
        return EscrowParams(
            client=client,
            provider=provider,
            token=self.env.token if spec.use_token else ZERO_ADDRESS,
            oracle=self.env.oracle,
            arbiter=self.env.arbiter if spec.has_arbiter else ZERO_ADDRESS,
            terms_hash=TERMS_HASH,
            milestone_amounts=spec.amounts,
            terms=Terms(
                rating_payout_bps=spec.payouts,
                breach_refund_bps=spec.refund_bps[0],
                streak_refund_bps=spec.refund_bps[1],
                incident_refund_bps=spec.refund_bps[2],
                max_refund_bps=spec.max_refund_bps,
                review_period=spec.review,
                challenge_period=spec.challenge,
                arbitration_period=spec.arbitration,
                delivery_deadline=deadline,
            ),
        )

    def do_create(self, spec: Spec, *, accept_now: bool) -> None:
        client_key: LocalAccount = getattr(self.env.parties, spec.client)
        provider = getattr(self.env.parties, spec.provider).address
        if spec.use_token:
            self.env.fund_token(self.env.token, client_key.address, sum(spec.amounts))
        t = self.next_time()
        p = self.build_params(spec, client_key.address, provider, t + spec.deadline_in)
        result = self.execute("createEscrow", lambda: self.api.create_escrow(p, p.client)[1], [])
        assert result is not None
        escrow_id = len(self.escrows) + 1
        args = result.event("EscrowCreated").args
        assert args["escrowId"] == escrow_id
        assert (args["client"], args["provider"]) == (p.client, p.provider)
        assert EscrowParams.from_abi(args["params"]) == p
        assert self.views.get_escrow(escrow_id) == self.api.get_escrow(escrow_id)
        e = EscrowModel(
            escrow_id=escrow_id,
            params=p,
            client_key=client_key,
            locked=p.total,
            nominal=p.total,
            milestones=[MilestoneModel(a) for a in p.milestone_amounts],
        )
        self.escrows.append(e)
        self.dirty.add(escrow_id)
        if accept_now:
            self.do_accept(e, p.provider)

    def do_cancel(self, e: EscrowModel, sender: str) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.PROPOSED) + self.needs_caller(
            sender, e.params.client
        )
        result = self.execute("cancel", lambda: self.api.cancel(e.escrow_id, sender), refusals)
        if result is None:
            return
        refund = e.locked
        self.expect(result, "EscrowCancelled", escrowId=e.escrow_id, refund=refund)
        e.status, e.locked, e.nominal, e.cancelled = Status.CLOSED, 0, 0, True
        self.credit(e.params.client, e.params.token, refund)
        self.dirty.add(e.escrow_id)

    def do_accept(self, e: EscrowModel, sender: str) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.PROPOSED) + self.needs_caller(
            sender, e.params.provider
        )
        result = self.execute("accept", lambda: self.api.accept(e.escrow_id, sender), refusals)
        if result is None:
            return
        self.expect(result, "EscrowAccepted", escrowId=e.escrow_id)
        e.status = Status.ACTIVE
        self.dirty.add(e.escrow_id)

    def do_submit(self, e: EscrowModel, milestone: int, sender: str) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.ACTIVE) + self.needs_caller(
            sender, e.params.provider
        )
        refusals += self.inside(e.terms.delivery_deadline)
        refusals += self.in_range(e, milestone) or self.milestone_state(
            e, milestone, MilestoneState.NONE
        )
        result = self.execute(
            "submitDelivery",
            lambda: self.api.submit_delivery(e.escrow_id, milestone, DELIVERY_HASH, sender),
            refusals,
        )
        if result is None:
            return
        self.expect(
            result,
            "DeliverySubmitted",
            escrowId=e.escrow_id,
            milestone=milestone,
            deliveryHash=DELIVERY_HASH,
        )
        m = e.milestones[milestone]
        m.state, m.since = MilestoneState.DELIVERED, self.t
        self.dirty.add(e.escrow_id)

    def confirm_refusals(self, e: EscrowModel, milestone: int, rating: int) -> list[Refusal]:
        """What `confirm` and `confirmWithSig` share: rating, milestone state, review window."""
        refusals = [] if 1 <= rating <= 5 else [refusal(rt.EscrowInvalidRating, rating=rating)]
        if self.in_range(e, milestone):
            return refusals + self.in_range(e, milestone)
        m = e.milestones[milestone]
        if m.state == MilestoneState.DELIVERED:
            return refusals + self.inside(m.since + e.terms.review_period)
        return refusals + self.milestone_state(e, milestone, MilestoneState.NONE)

    def do_confirm(
        self, e: EscrowModel, milestone: int, rating: int, comment: bytes, sender: str
    ) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.ACTIVE) + self.needs_caller(sender, e.params.client)
        refusals += self.confirm_refusals(e, milestone, rating)
        result = self.execute(
            "confirm",
            lambda: self.api.confirm(e.escrow_id, milestone, rating, comment, sender),
            refusals,
        )
        if result is not None:
            bps = e.terms.payout_bps(rating)
            self.settled(e, result, milestone, bps, 1, rating, comment)

    def do_confirm_with_sig(
        self,
        e: EscrowModel,
        milestone: int,
        rating: int,
        comment: bytes,
        deadline_in: int,
        signer: LocalAccount,
    ) -> None:
        t = self.next_time()
        confirmation = Confirmation(e.escrow_id, milestone, rating, comment, t + deadline_in)
        signature = self.env.sign(confirmation, signer)
        refusals = self.needs_status(e, Status.ACTIVE)
        if t > confirmation.deadline:
            refusals.append(
                refusal(rt.EscrowSignatureExpired, deadline=confirmation.deadline, timestamp=t)
            )
        if signer.address != e.params.client:
            digest = confirmation.digest(self.api.chain_id, self.api.address)
            refusals.append(
                refusal(rt.EscrowInvalidSignature, client=e.params.client, digest=digest)
            )
        refusals += self.confirm_refusals(e, milestone, rating)
        relayer = self.env.parties.relayer.address
        result = self.execute(
            "confirmWithSig",
            lambda: self.api.confirm_with_sig(confirmation, signature, relayer),
            refusals,
        )
        if result is not None:
            bps = e.terms.payout_bps(rating)
            self.settled(e, result, milestone, bps, 2, rating, comment)

    def do_release(self, e: EscrowModel, milestone: int, sender: str) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.ACTIVE)
        refusals += self.in_range(e, milestone) or (
            self.milestone_state(e, milestone, MilestoneState.DELIVERED)
            or self.after(e.milestones[milestone].since + e.terms.review_period)
        )
        result = self.execute(
            "releaseAfterTimeout",
            lambda: self.api.release_after_timeout(e.escrow_id, milestone, sender),
            refusals,
        )
        if result is not None:
            self.settled(e, result, milestone, BPS, 3, 5, ZERO_HASH)

    def do_dispute(self, e: EscrowModel, milestone: int, sender: str) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.ACTIVE) + self.needs_caller(sender, e.params.client)
        refusals += self.needs_arbiter(e)
        refusals += self.in_range(e, milestone) or (
            self.milestone_state(e, milestone, MilestoneState.DELIVERED)
            or self.inside(e.milestones[milestone].since + e.terms.review_period)
        )
        result = self.execute(
            "openDispute",
            lambda: self.api.open_dispute(e.escrow_id, milestone, SOME_HASH, sender),
            refusals,
        )
        if result is None:
            return
        self.expect(
            result, "DisputeOpened", escrowId=e.escrow_id, milestone=milestone, reasonHash=SOME_HASH
        )
        m = e.milestones[milestone]
        m.state, m.since = MilestoneState.DISPUTED, self.t
        self.dirty.add(e.escrow_id)

    def do_resolve_dispute(
        self, e: EscrowModel, milestone: int, provider_bps: int, sender: str
    ) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.ACTIVE) + self.needs_caller(sender, e.params.arbiter)
        if provider_bps > BPS:
            refusals.append(refusal(rt.EscrowInvalidSplit, providerBps=provider_bps))
        refusals += self.in_range(e, milestone) or (
            self.milestone_state(e, milestone, MilestoneState.DISPUTED)
            or self.inside(e.milestones[milestone].since + e.terms.arbitration_period)
        )
        result = self.execute(
            "resolveDispute",
            lambda: self.api.resolve_dispute(e.escrow_id, milestone, provider_bps, sender),
            refusals,
        )
        if result is not None:
            self.settled(e, result, milestone, provider_bps, 4, 0, ZERO_HASH)

    def do_stale_dispute(self, e: EscrowModel, milestone: int, sender: str) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.ACTIVE)
        refusals += self.in_range(e, milestone) or (
            self.milestone_state(e, milestone, MilestoneState.DISPUTED)
            or self.after(e.milestones[milestone].since + e.terms.arbitration_period)
        )
        result = self.execute(
            "settleStaleDispute",
            lambda: self.api.settle_stale_dispute(e.escrow_id, milestone, sender),
            refusals,
        )
        if result is not None:
            self.settled(e, result, milestone, BPS // 2, 5, 0, ZERO_HASH)

    def do_reclaim(self, e: EscrowModel, sender: str) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.ACTIVE) + self.needs_caller(sender, e.params.client)
        refusals += self.after(e.terms.delivery_deadline)
        never_delivered = e.milestones_in(MilestoneState.NONE)
        if not never_delivered:
            refusals.append(refusal(rt.EscrowNothingToReclaim, escrowId=e.escrow_id))
        result = self.execute(
            "reclaimExpired", lambda: self.api.reclaim_expired(e.escrow_id, sender), refusals
        )
        if result is None:
            return
        events = result.events_named("MilestoneSettled")
        assert [ev.args["milestone"] for ev in events] == never_delivered, "reclaim order"
        for i, ev in zip(never_delivered, events, strict=True):
            to_provider, to_client = e.settle(i, 0, self.t)  # in index order, like the contract
            self.credit(e.params.client, e.params.token, to_client)
            want = {"how": 6, "rating": 0, "toProvider": to_provider, "toClient": to_client}
            got = {k: ev.args[k] for k in want}
            assert got == want, f"reclaimExpired, milestone {i}: chain {got} != model {want}"
        self.dirty.add(e.escrow_id)

    def do_report(self, e: EscrowModel, kind: int, period: int, sender: str) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.ACTIVE) + self.needs_caller(sender, e.params.oracle)
        if kind not in (1, 2, 3):
            refusals.append(refusal(rt.EscrowInvalidBreachKind, kind=kind))
        if (kind, period) in e.reported:
            refusals.append(
                refusal(
                    rt.EscrowBreachAlreadyReported, escrowId=e.escrow_id, kind=kind, period=period
                )
            )
        result = self.execute(
            "reportBreach",
            lambda: self.api.report_breach(e.escrow_id, kind, period, SOME_HASH, sender)[1],
            refusals,
        )
        if result is None:
            return
        reserve = e.reserve_for(kind)
        self.expect(
            result,
            "BreachReported",
            escrowId=e.escrow_id,
            breachId=len(e.breaches),
            kind=kind,
            period=period,
            evidenceHash=SOME_HASH,
            reserved=reserve,
        )
        e.breaches.append(BreachModel(kind, period, self.t, reserve))
        e.reported.add((kind, period))
        e.locked -= reserve
        e.reserved += reserve
        self.dirty.add(e.escrow_id)

    def do_challenge(self, e: EscrowModel, breach: int, sender: str) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.ACTIVE) + self.needs_caller(
            sender, e.params.provider
        )
        refusals += self.needs_arbiter(e)
        refusals += self.breach_state(e, breach, BreachState.REPORTED) or self.inside(
            e.breaches[breach].reported_at + e.terms.challenge_period
        )
        result = self.execute(
            "challengeBreach",
            lambda: self.api.challenge_breach(e.escrow_id, breach, sender),
            refusals,
        )
        if result is None:
            return
        self.expect(result, "BreachChallenged", escrowId=e.escrow_id, breachId=breach)
        b = e.breaches[breach]
        b.state, b.challenged_at = BreachState.CHALLENGED, self.t
        self.dirty.add(e.escrow_id)

    def do_resolve_breach(self, e: EscrowModel, breach: int, upheld: bool, sender: str) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.ACTIVE) + self.needs_caller(sender, e.params.arbiter)
        refusals += self.breach_state(e, breach, BreachState.CHALLENGED) or self.inside(
            e.breaches[breach].challenged_at + e.terms.arbitration_period
        )
        result = self.execute(
            "resolveBreach",
            lambda: self.api.resolve_breach(e.escrow_id, breach, upheld, sender),
            refusals,
        )
        if result is None:
            return
        reserve = e.breaches[breach].reserve
        if upheld:
            self.breach_settled(e, result, breach, BreachState.UPHELD, 2, reserve, 0)
        else:
            self.breach_settled(e, result, breach, BreachState.REJECTED, 3, 0, reserve)

    def do_stale_breach(self, e: EscrowModel, breach: int, sender: str) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.ACTIVE)
        refusals += self.breach_state(e, breach, BreachState.CHALLENGED) or self.after(
            e.breaches[breach].challenged_at + e.terms.arbitration_period
        )
        result = self.execute(
            "settleStaleBreach",
            lambda: self.api.settle_stale_breach(e.escrow_id, breach, sender),
            refusals,
        )
        if result is None:
            return
        reserve = e.breaches[breach].reserve
        half = reserve // 2  # the client's half, rounded down
        self.breach_settled(e, result, breach, BreachState.STALE_SPLIT, 4, half, reserve - half)

    def do_finalize(self, e: EscrowModel, breach: int, sender: str) -> None:
        self.next_time()
        refusals = self.needs_status(e, Status.ACTIVE)
        refusals += self.breach_state(e, breach, BreachState.REPORTED) or self.after(
            e.breaches[breach].reported_at + e.terms.challenge_period
        )
        result = self.execute(
            "finalizeBreach",
            lambda: self.api.finalize_breach(e.escrow_id, breach, sender),
            refusals,
        )
        if result is None:
            return
        reserve = e.breaches[breach].reserve
        self.breach_settled(e, result, breach, BreachState.FINALIZED, 1, reserve, 0)

    def do_withdraw(self, account: str, token: str) -> None:
        self.next_time()
        amount = self.credits[(account, token)]
        refusals = []
        if not amount:
            refusals.append(refusal(rt.EscrowNothingToWithdraw, account=account, token=token))
        result = self.execute("withdraw", lambda: self.api.withdraw(token, account), refusals)
        if result is None:
            return
        self.expect(result, "Withdrawn", account=account, token=token, amount=amount)
        self.credits[(account, token)] = 0

    # -------------------------------------------------------- preparation

    def milestone_end(self, e: EscrowModel, milestone: int) -> int | None:
        """The last second of the milestone's window: review if delivered, arbitration if
        disputed (None when it has no window)."""
        if milestone >= len(e.milestones):
            return None
        m = e.milestones[milestone]
        if m.state == MilestoneState.DELIVERED:
            return m.since + e.terms.review_period
        if m.state == MilestoneState.DISPUTED:
            return m.since + e.terms.arbitration_period
        return None

    def breach_end(self, e: EscrowModel, breach: int) -> int | None:
        """The last second of the report's window: challenge, then arbitration."""
        if breach >= len(e.breaches):
            return None
        b = e.breaches[breach]
        if b.state == BreachState.REPORTED:
            return b.reported_at + e.terms.challenge_period
        if b.state == BreachState.CHALLENGED:
            return b.challenged_at + e.terms.arbitration_period
        return None

    def milestones_open(self, e: EscrowModel, state: MilestoneState, fresh: bool) -> list[int]:
        """Milestones in `state`; with `fresh`, only those whose window is still open."""
        t = self.env.now() + 1
        found = e.milestones_in(state)
        return [i for i in found if not fresh or t <= (self.milestone_end(e, i) or 0)]

    def breaches_open(self, e: EscrowModel, state: BreachState, fresh: bool) -> list[int]:
        t = self.env.now() + 1
        found = e.breaches_in(state)
        return [i for i in found if not fresh or t <= (self.breach_end(e, i) or 0)]

    def ensure_delivered(self, e: EscrowModel, *, fresh: bool) -> None:
        """Delivers a milestone of `e` unless one is delivered (inside its review window, when
        `fresh`) or none can be."""
        if self.deliverable(e) and not self.milestones_open(e, MilestoneState.DELIVERED, fresh):
            self.do_submit(e, e.milestones_in(MilestoneState.NONE)[0], e.params.provider)

    def ensure_disputed(self, e: EscrowModel, *, fresh: bool) -> None:
        """Opens a dispute on a milestone of `e` unless one is disputed (inside its arbitration
        window, when `fresh`) or none can be."""
        if not e.active or not e.arbitrated:
            return
        if not self.milestones_open(e, MilestoneState.DISPUTED, fresh):
            self.ensure_delivered(e, fresh=True)
            delivered = self.milestones_open(e, MilestoneState.DELIVERED, True)
            if delivered:
                self.do_dispute(e, delivered[0], e.params.client)

    def ensure_reported(self, e: EscrowModel, *, fresh: bool) -> None:
        """Reports a new breach on `e` unless an unchallenged one is open (inside its challenge
        window, when `fresh`)."""
        if e.active and not self.breaches_open(e, BreachState.REPORTED, fresh):
            kind = max((1, 2, 3), key=e.terms.kind_bps)  # the biggest reserve
            period = min(p for p in range(len(e.reported) + 1) if (kind, p) not in e.reported)
            self.do_report(e, kind, period, e.params.oracle)

    def ensure_challenged(self, e: EscrowModel, *, fresh: bool) -> None:
        """Challenges a breach of `e` unless one is challenged (inside its arbitration window,
        when `fresh`) or none can be."""
        if not e.active or not e.arbitrated:
            return
        if not self.breaches_open(e, BreachState.CHALLENGED, fresh):
            self.ensure_reported(e, fresh=True)
            reported = self.breaches_open(e, BreachState.REPORTED, True)
            if reported:
                self.do_challenge(e, reported[0], e.params.provider)

    def settle_all_milestones(self, e: EscrowModel) -> None:
        """Settles every unsettled milestone of `e` the quickest way open to it, so that a
        reserve released afterwards finds none left and goes to the provider."""
        for i in e.unsettled():
            t = self.env.now() + 1
            end = self.milestone_end(e, i)
            state = e.milestones[i].state
            if state == MilestoneState.NONE or (
                state == MilestoneState.DELIVERED and end is not None and t <= end
            ):
                self.do_confirm(e, i, 5, ZERO_HASH, e.params.client)
            elif state == MilestoneState.DELIVERED:
                self.do_release(e, i, e.params.provider)
            elif end is not None and t <= end:
                self.do_resolve_dispute(e, i, BPS // 2, e.params.arbiter)
            else:
                self.do_stale_dispute(e, i, e.params.client)

    def to_window_end(self, prepare: int, end: int | None, *, after: bool = False) -> None:
        """With `prepare` 2 the next call runs at the window's last second, with 3 at the first
        second after it; so does 1 for the calls that need the window to have passed."""
        if end is None or prepare == 0 or (prepare == 1 and not after):
            return
        self.run_next_at(end if prepare == 2 else end + 1)

    # -------------------------------------------------------------- rules

    @initialize(spec=specs(use_token=False, has_arbiter=True))
    def create_eth_escrow(self, spec: Spec) -> None:
        self.do_create(spec, accept_now=True)

    @initialize(spec=specs(use_token=True))
    def create_token_escrow(self, spec: Spec) -> None:
        self.do_create(spec, accept_now=True)

    @precondition(lambda self: len(self.escrows) < MAX_ESCROWS)
    @rule(spec=specs(), accept_now=st.integers(0, 3))
    def create_escrow(self, spec: Spec, accept_now: int) -> None:
        self.do_create(spec, accept_now=accept_now > 0)

    @precondition(has_escrows)
    @rule(pick=PICK, cancel=st.booleans(), who=WHO)
    def answer_proposal(self, pick: int, cancel: bool, who: int) -> None:
        """The client cancels, or the provider accepts, a proposed escrow."""
        e = self.pick(pick, lambda e: e.status == Status.PROPOSED)
        if cancel:
            self.do_cancel(e, self.caller(who, e.params.client))
        else:
            self.do_accept(e, self.caller(who, e.params.provider))

    @precondition(has_escrows)
    @rule(pick=PICK, index=INDEX, who=WHO)
    def submit_delivery(self, pick: int, index: int, who: int) -> None:
        e, milestone = self.pick_milestone(pick, index, MilestoneState.NONE)
        self.do_submit(e, milestone, self.caller(who, e.params.provider))

    @precondition(has_escrows)
    @rule(pick=PICK, index=INDEX, rating=RATING, comment=COMMENT, who=WHO, prepare=PREPARE)
    def confirm(
        self, pick: int, index: int, rating: int, comment: bytes, who: int, prepare: int
    ) -> None:
        e, milestone = self.pick_milestone(
            pick, index, MilestoneState.NONE, MilestoneState.DELIVERED
        )
        self.to_window_end(prepare, self.milestone_end(e, milestone))
        self.do_confirm(e, milestone, rating, comment, self.caller(who, e.params.client))

    @precondition(has_escrows)
    @rule(
        pick=PICK,
        index=INDEX,
        rating=RATING,
        comment=COMMENT,
        deadline_in=st.one_of(st.sampled_from([-1, 0, 1]), st.integers(2, 3 * DAY)),
        wrong_signer=st.integers(0, 5),
        prepare=PREPARE,
    )
    def confirm_with_sig(
        self,
        pick: int,
        index: int,
        rating: int,
        comment: bytes,
        deadline_in: int,
        wrong_signer: int,
        prepare: int,
    ) -> None:
        """Signed by the escrow's client (or, once in six, somebody else), sent by the relayer."""
        e, milestone = self.pick_milestone(
            pick, index, MilestoneState.NONE, MilestoneState.DELIVERED
        )
        self.to_window_end(prepare, self.milestone_end(e, milestone))
        signer = e.client_key
        if wrong_signer == 0:
            parties = self.env.parties
            signer = parties.stranger if signer != parties.stranger else parties.client
        self.do_confirm_with_sig(e, milestone, rating, comment, deadline_in, signer)

    @precondition(has_escrows)
    @rule(pick=PICK, index=INDEX, anyone=ANYONE, prepare=PREPARE)
    def release_after_timeout(self, pick: int, index: int, anyone: int, prepare: int) -> None:
        e, milestone = self.pick_milestone(pick, index, MilestoneState.DELIVERED)
        if prepare:
            self.ensure_delivered(e, fresh=False)
            found = self.milestones_open(e, MilestoneState.DELIVERED, False)
            milestone = _choose(index, len(e.milestones), found)
        self.to_window_end(prepare, self.milestone_end(e, milestone), after=True)
        self.do_release(e, milestone, self.accounts[anyone])

    @precondition(has_escrows)
    @rule(pick=PICK, index=INDEX, who=WHO, prepare=PREPARE)
    def open_dispute(self, pick: int, index: int, who: int, prepare: int) -> None:
        e, milestone = self.pick_milestone(pick, index, MilestoneState.DELIVERED, arbitrated=True)
        if prepare:
            self.ensure_delivered(e, fresh=True)
            found = self.milestones_open(e, MilestoneState.DELIVERED, True)
            milestone = _choose(index, len(e.milestones), found)
        self.to_window_end(prepare, self.milestone_end(e, milestone))
        self.do_dispute(e, milestone, self.caller(who, e.params.client))

    @precondition(has_escrows)
    @rule(pick=PICK, index=INDEX, provider_bps=SPLIT, who=WHO, prepare=PREPARE)
    def resolve_dispute(
        self, pick: int, index: int, provider_bps: int, who: int, prepare: int
    ) -> None:
        e, milestone = self.pick_milestone(pick, index, MilestoneState.DISPUTED, arbitrated=True)
        if prepare:
            self.ensure_disputed(e, fresh=True)
            found = self.milestones_open(e, MilestoneState.DISPUTED, True)
            milestone = _choose(index, len(e.milestones), found)
        self.to_window_end(prepare, self.milestone_end(e, milestone))
        self.do_resolve_dispute(e, milestone, provider_bps, self.arbiter_caller(e, who))

    @precondition(has_escrows)
    @rule(pick=PICK, index=INDEX, anyone=ANYONE, prepare=PREPARE)
    def settle_stale_dispute(self, pick: int, index: int, anyone: int, prepare: int) -> None:
        e, milestone = self.pick_milestone(pick, index, MilestoneState.DISPUTED, arbitrated=True)
        if prepare:
            self.ensure_disputed(e, fresh=False)
            found = self.milestones_open(e, MilestoneState.DISPUTED, False)
            milestone = _choose(index, len(e.milestones), found)
        self.to_window_end(prepare, self.milestone_end(e, milestone), after=True)
        self.do_stale_dispute(e, milestone, self.accounts[anyone])

    @precondition(has_escrows)
    @rule(pick=PICK, who=WHO, prepare=PREPARE)
    def reclaim_expired(self, pick: int, who: int, prepare: int) -> None:
        e = self.pick(pick, lambda e: e.active and bool(e.milestones_in(MilestoneState.NONE)))
        self.to_window_end(prepare, e.terms.delivery_deadline, after=True)
        self.do_reclaim(e, self.caller(who, e.params.client))

    @precondition(has_escrows)
    @rule(pick=PICK, kind=KIND, period=PERIOD, repeat=st.integers(0, 4), who=WHO)
    def report_breach(self, pick: int, kind: int, period: int, repeat: int, who: int) -> None:
        e = self.pick(pick)
        if repeat == 0 and e.reported:  # report an already reported (kind, period) again
            kind, period = sorted(e.reported)[period % len(e.reported)]
        self.do_report(e, kind, period, self.caller(who, e.params.oracle))

    @precondition(has_escrows)
    @rule(pick=PICK, index=INDEX, who=WHO, prepare=PREPARE)
    def challenge_breach(self, pick: int, index: int, who: int, prepare: int) -> None:
        e, breach = self.pick_breach(pick, index, BreachState.REPORTED, arbitrated=True)
        if prepare:
            self.ensure_reported(e, fresh=True)
            found = self.breaches_open(e, BreachState.REPORTED, True)
            breach = _choose(index, len(e.breaches), found)
        self.to_window_end(prepare, self.breach_end(e, breach))
        self.do_challenge(e, breach, self.caller(who, e.params.provider))

    @precondition(has_escrows)
    @rule(
        pick=PICK,
        index=INDEX,
        upheld=st.booleans(),
        who=WHO,
        prepare=PREPARE,
        finish=st.integers(0, 2),
    )
    def resolve_breach(
        self, pick: int, index: int, upheld: bool, who: int, prepare: int, finish: int
    ) -> None:
        """`finish` 0 settles every milestone first, so that a rejected reserve is credited to
        the provider instead of returning to `locked`."""
        e, breach = self.pick_breach(pick, index, BreachState.CHALLENGED, arbitrated=True)
        if prepare:
            self.ensure_challenged(e, fresh=True)
            if finish == 0:
                self.settle_all_milestones(e)
            found = self.breaches_open(e, BreachState.CHALLENGED, True)
            breach = _choose(index, len(e.breaches), found)
        self.to_window_end(prepare, self.breach_end(e, breach))
        self.do_resolve_breach(e, breach, upheld, self.arbiter_caller(e, who))

    @precondition(has_escrows)
    @rule(pick=PICK, index=INDEX, anyone=ANYONE, prepare=PREPARE, finish=st.integers(0, 2))
    def settle_stale_breach(
        self, pick: int, index: int, anyone: int, prepare: int, finish: int
    ) -> None:
        e, breach = self.pick_breach(pick, index, BreachState.CHALLENGED, arbitrated=True)
        if prepare:
            self.ensure_challenged(e, fresh=False)
            if finish == 0:
                self.settle_all_milestones(e)
            found = self.breaches_open(e, BreachState.CHALLENGED, False)
            breach = _choose(index, len(e.breaches), found)
        self.to_window_end(prepare, self.breach_end(e, breach), after=True)
        self.do_stale_breach(e, breach, self.accounts[anyone])

    @precondition(has_escrows)
    @rule(pick=PICK, index=INDEX, anyone=ANYONE, prepare=PREPARE)
    def finalize_breach(self, pick: int, index: int, anyone: int, prepare: int) -> None:
        e, breach = self.pick_breach(pick, index, BreachState.REPORTED)
        if prepare:
            self.ensure_reported(e, fresh=False)
            found = self.breaches_open(e, BreachState.REPORTED, False)
            breach = _choose(index, len(e.breaches), found)
        self.to_window_end(prepare, self.breach_end(e, breach), after=True)
        self.do_finalize(e, breach, self.accounts[anyone])

    @rule(choice=INDEX, anyone=ANYONE, token_index=st.sampled_from([0, 0, 1, 1, 2]))
    def withdraw(self, choice: int, anyone: int, token_index: int) -> None:
        """Mostly by an account with a credit; sometimes by anyone, in any token."""
        owed = sorted(key for key, amount in self.credits.items() if amount)
        if choice < 6 and owed:
            account, token = owed[choice % len(owed)]
        else:
            account = self.accounts[anyone]
            token = [*self.tokens, self.env.no_return_token][token_index]
        self.do_withdraw(account, token)

    @rule(seconds=st.one_of(st.integers(2, DAY // 2), st.sampled_from([2, 60, DAY, 3 * DAY])))
    def advance(self, seconds: int) -> None:
        self.env.advance(seconds)

    @precondition(has_escrows)
    @rule(pick=st.integers(0, 20), offset=st.sampled_from([-1, 0, 0, 1, 1, 2]))
    def jump_to_boundary(self, pick: int, offset: int) -> None:
        """Moves time so that the next call runs at some window's last second (+ offset)."""
        ends: set[int] = set()
        for e in self.escrows:
            if e.status == Status.CLOSED:
                continue
            ends.add(e.terms.delivery_deadline)
            for i in range(len(e.milestones)):
                ends.add(self.milestone_end(e, i) or 0)
            for i in range(len(e.breaches)):
                ends.add(self.breach_end(e, i) or 0)
        now = self.env.now()
        targets = sorted(end + offset for end in ends if end + offset > now + 1)
        if targets:
            self.run_next_at(targets[pick % len(targets)])

    @rule(spec=specs(), mutation=st.sampled_from(REFUSED_CALLS), pick=PICK)
    def refused_call(self, spec: Spec, mutation: str, pick: int) -> None:
        """Every creation refusal docs/interface.md lists (one at a time, nothing funded), an
        unknown escrow id, and parameters that do not hash to the escrow's commitment."""
        client = getattr(self.env.parties, spec.client).address
        provider = getattr(self.env.parties, spec.provider).address
        t = self.next_time()
        sender, value = client, None
        p = self.build_params(spec, client, provider, t + DAY)
        amounts = p.milestone_amounts
        expected: Refusal
        if mutation in ("unknown_escrow", "wrong_params"):
            if mutation == "unknown_escrow" or not self.escrows:
                escrow_id = len(self.escrows) + 1 + pick
                expected = refusal(rt.EscrowNotFound, escrowId=escrow_id)
            else:
                e = self.pick(pick, lambda e: True)
                escrow_id, sender = e.escrow_id, e.params.client
                p = replace(e.params, milestone_amounts=(*e.params.milestone_amounts, 1))
                expected = refusal(rt.EscrowParamsMismatch, escrowId=escrow_id)
            name = ["cancel", "accept", "reclaimExpired"][pick % 3]
            fn = self.api.contract.functions[name](escrow_id, p.to_abi())
            self.execute(
                f"{name}({mutation})",
                lambda: send(self.w3, self.api.contract, fn, sender),
                [expected],
            )
            return
        if mutation == "caller":
            sender = provider
            expected = refusal(rt.EscrowUnauthorizedCaller, caller=provider, required=client)
        elif mutation == "no_milestones":
            p = replace(p, milestone_amounts=())
            expected = refusal(rt.EscrowInvalidMilestoneCount, count=0)
        elif mutation == "too_many":
            p = replace(p, milestone_amounts=(1,) * 65)
            expected = refusal(rt.EscrowInvalidMilestoneCount, count=65)
        elif mutation == "zero_amount":
            index = len(amounts) // 2
            p = replace(p, milestone_amounts=(*amounts[:index], 0, *amounts[index + 1 :]))
            expected = refusal(rt.EscrowZeroMilestoneAmount, milestone=index)
        elif mutation == "too_large":  # a token escrow: nobody holds 2^112 wei
            p = replace(p, token=self.env.token, milestone_amounts=(2**111, 2**111 - 1, 1))
            expected = refusal(rt.EscrowTotalTooLarge)
        elif mutation == "self_provider":
            p = replace(p, provider=client)
            expected = refusal(rt.EscrowInvalidProvider, provider=client)
        elif mutation == "zero_provider":
            p = replace(p, provider=ZERO_ADDRESS)
            expected = refusal(rt.EscrowInvalidProvider, provider=ZERO_ADDRESS)
        elif mutation == "decreasing":
            table = (3_000, 2_999, 5_000, 6_000, BPS)
            p = replace(p, terms=replace(p.terms, rating_payout_bps=table))
            expected = refusal(rt.EscrowInvalidPayoutTable)
        elif mutation == "not_full":
            table = (0, 0, 0, 0, BPS - 1)
            p = replace(p, terms=replace(p.terms, rating_payout_bps=table))
            expected = refusal(rt.EscrowInvalidPayoutTable)
        elif mutation == "refund_bps":
            p = replace(p, terms=replace(p.terms, incident_refund_bps=BPS + 1))
            expected = refusal(rt.EscrowBpsTooLarge, bps=BPS + 1)
        elif mutation == "cap_bps":
            p = replace(p, terms=replace(p.terms, max_refund_bps=65_535))
            expected = refusal(rt.EscrowBpsTooLarge, bps=65_535)
        elif mutation == "review0":
            p = replace(p, terms=replace(p.terms, review_period=0))
            expected = refusal(rt.EscrowZeroPeriod, which=0)
        elif mutation == "challenge0":
            p = replace(p, terms=replace(p.terms, challenge_period=0))
            expected = refusal(rt.EscrowZeroPeriod, which=1)
        elif mutation == "arbitration0":
            terms = replace(p.terms, arbitration_period=0)
            p = replace(p, arbiter=self.env.arbiter, terms=terms)
            expected = refusal(rt.EscrowZeroPeriod, which=2)
        elif mutation == "deadline":
            p = replace(p, terms=replace(p.terms, delivery_deadline=t - 1))
            expected = refusal(rt.EscrowDeadlinePassed, deliveryDeadline=t - 1, timestamp=t)
        elif mutation == "eth_value":  # amounts an account can pay (token ones can be larger)
            payable = tuple(min(a, 10**21) for a in amounts)
            p = replace(p, token=ZERO_ADDRESS, milestone_amounts=payable)
            value = p.total + 1
            expected = refusal(rt.EscrowWrongValue, sent=value, required=p.total)
        else:  # token_value
            p = replace(p, token=self.env.token)
            value = 1
            expected = refusal(rt.EscrowWrongValue, sent=1, required=0)
        create = self.api.contract.functions.createEscrow(p.to_abi())
        amount = value if value is not None else (p.total if p.is_eth else 0)
        self.execute(
            f"createEscrow({mutation})",
            lambda: send(self.w3, self.api.contract, create, sender, value=amount),
            [expected],
        )

    # ---------------------------------------------------------- invariants

    @invariant()
    def chain_agrees_with_model(self) -> None:
        # A refused call mines nothing (checked in `execute`) and a time jump mines an empty
        # block, so the chain's state (and the model) can only change through a successful
        # transaction: checking again after the steps that made one covers every step.
        if self.checked_version == self.version:
            return
        self.checked_version = self.version
        held: defaultdict[str, int] = defaultdict(int)
        for e in self.escrows:
            v = self.views.get_escrow(e.escrow_id)
            got = (v.status, v.locked, v.nominal, v.reserved, v.refunded)
            want = (e.status, e.locked, e.nominal, e.reserved, e.refunded)
            assert got == want, f"escrow {e.escrow_id}: chain {got} != model {want}"
            counts = (v.milestone_count, v.settled_count, v.breach_count)
            assert counts == (len(e.milestones), e.settled_count, len(e.breaches))
            # credited to provider and client by this escrow's events == total - locked - reserved
            out = e.event_to_provider + e.event_to_client
            assert out == e.total - v.locked - v.reserved, (
                f"escrow {e.escrow_id}: credited {out} != total {e.total} - locked {v.locked} "
                f"- reserved {v.reserved}"
            )
            done = (v.nominal == 0 and v.reserved == 0) or e.cancelled
            assert (v.status == Status.CLOSED) == done, f"escrow {e.escrow_id}: {v}"
            settled = sum(1 for k in self.settled_seen if k[0] == e.escrow_id)
            assert settled == v.settled_count, f"escrow {e.escrow_id}: settled events"
            reports = sum(1 for k in self.reports_seen if k[0] == e.escrow_id)
            assert reports == v.breach_count, f"escrow {e.escrow_id}: report events"
            held[e.params.token] += v.locked + v.reserved
        # Only an escrow's client and provider are ever owed; a credit to anybody else would
        # leave the balance above credits + held below, so reading theirs is enough.
        payees = sorted({a for e in self.escrows for a in (e.params.client, e.params.provider)})
        for token in self.tokens:
            owed = 0
            for account in payees:
                on_chain = self.views.credits(account, token)
                model = self.credits[(account, token)]
                assert on_chain == model, f"credits[{account}][{token}]: {on_chain} != {model}"
                owed += on_chain
            balance = self.views.balance(token)
            assert balance == owed + held[token], (
                f"token {token}: balance {balance} != credits {owed} + held {held[token]}"
            )
        for escrow_id in sorted(self.dirty):
            self.check_items(self.escrows[escrow_id - 1])
        self.dirty.clear()

    def check_items(self, e: EscrowModel) -> None:
        """Every milestone and breach view of an escrow the last step touched."""
        for i, m in enumerate(e.milestones):
            got_m = self.views.get_milestone(e.escrow_id, i)
            assert got_m == (m.state, m.since), f"escrow {e.escrow_id} milestone {i}: {got_m}"
        for i, b in enumerate(e.breaches):
            got = self.views.get_breach(e.escrow_id, i)
            want = (b.state, b.kind, b.period, b.reported_at, b.challenged_at, b.reserve)
            have = (
                got.state,
                got.kind,
                got.period,
                got.reported_at,
                got.challenged_at,
                got.reserve,
            )
            assert have == want, f"escrow {e.escrow_id} breach {i}: chain {have} != model {want}"


def _one_pass_gas_estimate(state: Any, transaction: Any) -> int:
    """Runs the transaction once at the block gas limit: a revert raises exactly as py-evm's
    binary search does, a success returns twice the gas it used (ample: nothing here depends on
    the exact figure). The binary search runs it about 15 times, a third of this test's time."""
    trial = SpoofTransaction(transaction, gas=state.gas_limit, gas_price=0)
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(trial)
        if computation.is_error:
            raise computation.error
        used = transaction.intrinsic_gas + computation.get_gas_used()
    finally:
        state.revert(snapshot)
    return int(min(state.gas_limit, 2 * used + 50_000))


@contextmanager
def _fast_gas_estimates(env: EscrowEnv) -> Iterator[None]:
    chain = cast(Any, env.w3.provider).ethereum_tester.backend.chain
    original = chain.gas_estimator
    chain.gas_estimator = _one_pass_gas_estimate
    try:
        yield
    finally:
        chain.gas_estimator = original


def test_contract_keeps_its_money_invariants_under_random_operations(env: EscrowEnv) -> None:
    with _fast_gas_estimates(env):
        run_state_machine_as_test(lambda: EscrowMachine(env), settings=SETTINGS)
