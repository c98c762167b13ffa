// SPDX-License-Identifier: MIT
pragma solidity >=0.8.4;

/// @title Quality Escrow: payment released by client ratings, refunded by KPI breach evidence.
/// @notice One singleton holds many escrows. Each escrow stores only a hash of its `EscrowParams`;
/// every call after creation passes the same parameters back (the service fills them in from
/// `EscrowCreated`). Amounts are in the token's smallest unit, `token == address(0)` means ETH,
/// basis points (bps) are out of 10 000. Every payout is a credit; money leaves only via `withdraw`.
/// The numbers of the interface (breach kinds, outcomes, how a milestone settled, limits) are named
/// in `libraries/ConstantsLib.sol`. `docs/interface.md` section 1 describes the same interface for
/// the service's users.
/// @dev Times: "inside" a window that starts at t0 and lasts d means `block.timestamp <= t0 + d`,
/// "after" it means `block.timestamp > t0 + d`. Every check on a call that takes `(escrowId, p)`
/// runs in this order: the escrow exists (`EscrowNotFound`), `p` hashes to its commitment
/// (`EscrowParamsMismatch`), its status is the one the call needs (`EscrowInvalidStatus`), then
/// the caller, then the call's own checks.
/// @dev Warning: fee-on-transfer tokens are refused at creation: `createEscrow` measures the
/// contract's balance before and after pulling the total and reverts with
/// `EscrowTokenAmountMismatch` unless it grew by exactly the total. A token that starts charging a
/// fee after creation (upgradeable or configurable tokens) is not detected: `withdraw` sends the
/// full credit with `transfer` and does not check what arrives, so the account receives less.
/// @dev Warning: rebasing tokens are not supported. Locked amounts, reserves and credits are fixed
/// numbers recorded at creation and settlement. After a negative rebase the contract holds less than
/// it owes, and the last withdrawals of that token revert (the token refuses the transfer) until
/// someone sends the difference; after a positive rebase the surplus stays in the contract, where
/// no function can reach it.
/// @dev Warning: tokens with a blocklist (USDC, USDT, ...) can block a party. Payouts are pull
/// credits per (account, token), so a blocked account's `withdraw` reverts with the token's error
/// and its credit stays recorded, withdrawable once the token unblocks it (credits cannot be sent to
/// another address); other accounts are not affected. If the escrow contract itself is blocked,
/// no withdrawal of that token can succeed. A blocked client cannot create an escrow in that token.
/// @dev Warning: tokens are moved with OpenZeppelin's SafeERC20 (tokens that return nothing are
/// accepted, tokens that return false revert with `SafeERC20FailedOperation`); the token must be a
/// contract at creation (`EscrowTokenNotContract`). `createEscrow` and `withdraw` are guarded
/// against re-entry (ERC-777-style hooks); every other function makes no external call that can
/// change state (the ERC-1271 check is a `staticcall`).
/// @dev Warning: ETH credits are paid with a plain call forwarding all gas; an account that
/// rejects ETH keeps its credit (`EscrowEthTransferFailed`). ETH or tokens sent to the contract
/// outside `createEscrow` (the contract has no `receive`, but `selfdestruct` and plain token
/// transfers still arrive) are not credited to anyone and cannot be recovered.
/// @dev Warning: the oracle and the arbiter named in the parameters are trusted within their rules:
/// the oracle can reserve up to `terms.maxRefundBps` of the total with reports the contract cannot
/// check (only the provider's challenge, when there is an arbiter, stops them), and the arbiter
/// decides disputes and challenges. The provider agrees to both by calling `accept`.
interface IQualityEscrow {
    /* ---------------------------------------------------------------- types */

    /// @notice Life of an escrow. `Proposed` until the provider accepts (or the client cancels),
    /// `Closed` once no milestone is unsettled and nothing is reserved for breach reports.
    enum Status {
        None,
        Proposed,
        Active,
        Closed
    }

    /// @notice Life of a milestone. `Delivered` opens the review window; `Disputed` hands it to the
    /// arbiter; `Settled` is final.
    enum MilestoneState {
        None,
        Delivered,
        Disputed,
        Settled
    }

    /// @notice Life of a breach report. `Reported` holds a reserve until the challenge window has
    /// passed; `Challenged` waits for the arbiter; the last four are final outcomes.
    enum BreachState {
        None,
        Reported,
        Challenged,
        Finalized,
        Upheld,
        Rejected,
        StaleSplit
    }

    /// @notice Refund rules and time windows agreed at creation.
    struct Terms {
        uint16[5] ratingPayoutBps; // provider share for rating 1..5; non-decreasing; [4] == 10000
        uint16 breachRefundBps; // kind 1: a KPI below standard in one period
        uint16 streakRefundBps; // kind 2: underperformance in N consecutive periods
        uint16 incidentRefundBps; // kind 3: a major outage or error
        uint16 maxRefundBps; // cap on all breach refunds and reserves together, of the total
        uint32 reviewPeriod; // seconds the client has after a delivery to confirm or dispute
        uint32 challengePeriod; // seconds the provider has to challenge a breach report
        uint32 arbitrationPeriod; // seconds the arbiter has before the 50/50 fallback
        uint64 deliveryDeadline; // after it, undelivered milestones can be reclaimed by the client
    }

    /// @notice Everything fixed at creation. Stored only as `keccak256(abi.encode(p))`.
    struct EscrowParams {
        address client;
        address provider;
        address token; // zero: ETH
        address oracle;
        address arbiter; // zero: no disputes and no challenges
        bytes32 termsHash; // keccak256 of the RFC 8785 canonical terms document
        uint256[] milestoneAmounts; // 1..64 non-zero amounts, total below 2^112
        Terms terms;
    }

    /// @notice What `getEscrow` returns.
    struct EscrowView {
        Status status;
        uint256 locked; // still held for unsettled milestones
        uint256 nominal; // sum of the amounts of unsettled milestones
        uint256 reserved; // held for open breach reports
        uint256 refunded; // breach refunds credited to the client so far
        uint256 milestoneCount;
        uint256 settledCount;
        uint256 breachCount;
    }

    /// @notice What `getBreach` returns.
    struct BreachView {
        BreachState state;
        uint8 kind; // 1..3, see ConstantsLib BREACH_*
        uint32 period; // the oracle's period number, as reported
        uint64 reportedAt; // block time of the report
        uint64 challengedAt; // block time of the challenge, 0 if none
        uint256 reserve; // the amount reserved by the report
    }

    /* --------------------------------------------------------------- events */

    /// @notice An escrow was created and its total locked; its parameters appear here once.
    /// @param escrowId The new escrow's id (counts up from 1).
    /// @param client The client, who locked the total (also `params.client`).
    /// @param provider The provider, who may now accept (also `params.provider`).
    /// @param params The full parameters; later calls must pass exactly these back.
    event EscrowCreated(
        uint256 indexed escrowId, address indexed client, address indexed provider, EscrowParams params
    );

    /// @notice The provider accepted: the escrow is `Active`.
    /// @param escrowId The escrow.
    event EscrowAccepted(uint256 indexed escrowId);

    /// @notice The client cancelled a `Proposed` escrow: it is `Closed`.
    /// @param escrowId The escrow.
    /// @param refund The total, credited back to the client.
    event EscrowCancelled(uint256 indexed escrowId, uint256 refund);

    /// @notice The provider delivered a milestone; its review window starts now.
    /// @param escrowId The escrow.
    /// @param milestone The milestone's index (from 0).
    /// @param deliveryHash The provider's reference to what was delivered (free use, not checked).
    event DeliverySubmitted(uint256 indexed escrowId, uint256 milestone, bytes32 deliveryHash);

    /// @notice A milestone settled; `toProvider + toClient` is its share of what was locked.
    /// @param escrowId The escrow.
    /// @param milestone The milestone's index (from 0).
    /// @param how 1 confirmed, 2 confirmed by signature, 3 timeout (rating 5), 4 dispute resolved,
    /// 5 stale dispute, 6 reclaimed after the deadline (ConstantsLib HOW_*).
    /// @param rating The client's rating 1..5 for 1 and 2; 5 for 3; 0 for 4, 5 and 6.
    /// @param commentHash The hash of the client's review for 1 and 2 (zero: no review); zero otherwise.
    /// @param toProvider The amount credited to the provider.
    /// @param toClient The amount credited to the client.
    event MilestoneSettled(
        uint256 indexed escrowId,
        uint256 milestone,
        uint8 how,
        uint8 rating,
        bytes32 commentHash,
        uint256 toProvider,
        uint256 toClient
    );

    /// @notice The client disputed a delivered milestone; the arbiter's window starts now.
    /// @param escrowId The escrow.
    /// @param milestone The milestone's index (from 0).
    /// @param reasonHash The client's reference to the reason (free use, not checked).
    event DisputeOpened(uint256 indexed escrowId, uint256 milestone, bytes32 reasonHash);

    /// @notice The oracle reported a breach; its refund is reserved at once.
    /// @param escrowId The escrow.
    /// @param breachId The report's id (counts up from 0 per escrow).
    /// @param kind 1 KPI below standard, 2 consecutive underperformance, 3 major incident
    /// (ConstantsLib BREACH_*).
    /// @param period The period the report is about; one report per (kind, period).
    /// @param evidenceHash keccak256 of the RFC 8785 canonical evidence bundle.
    /// @param reserved The amount reserved: `min(kindBps * total / 10000, capLeft, locked)`; may be 0.
    event BreachReported(
        uint256 indexed escrowId, uint256 breachId, uint8 kind, uint32 period, bytes32 evidenceHash, uint256 reserved
    );

    /// @notice The provider challenged a breach report; the arbiter's window starts now.
    /// @param escrowId The escrow.
    /// @param breachId The report.
    event BreachChallenged(uint256 indexed escrowId, uint256 breachId);

    /// @notice A breach report ended.
    /// @param escrowId The escrow.
    /// @param breachId The report.
    /// @param outcome 1 finalized, 2 upheld, 3 rejected, 4 stale split (ConstantsLib OUTCOME_*).
    /// @param toClient The amount refunded (credited) to the client.
    /// @param toProvider The amount credited to the provider: non-zero only when a released reserve
    /// finds no unsettled milestone to return to (otherwise it goes back to `locked`).
    event BreachSettled(uint256 indexed escrowId, uint256 breachId, uint8 outcome, uint256 toClient, uint256 toProvider);

    /// @notice An account withdrew its whole credit in a token.
    /// @param account The account paid (the caller).
    /// @param token The token, `address(0)` for ETH.
    /// @param amount The amount sent.
    event Withdrawn(address indexed account, address indexed token, uint256 amount);

    /* --------------------------------------------------------------- errors */

    /// @notice No escrow has this id.
    /// @param escrowId The id asked for.
    error EscrowNotFound(uint256 escrowId);
    /// @notice The parameters passed do not hash to the escrow's commitment.
    /// @param escrowId The escrow.
    /// @param expected The stored commitment, `paramsHash(escrowId)`.
    /// @param actual The hash of the parameters passed.
    error EscrowParamsMismatch(uint256 escrowId, bytes32 expected, bytes32 actual);
    /// @notice The escrow is not in the status this call needs.
    /// @param escrowId The escrow.
    /// @param status Its status.
    /// @param required The status the call needs.
    error EscrowInvalidStatus(uint256 escrowId, Status status, Status required);
    /// @notice The caller is not the party this call is reserved for.
    /// @param caller `msg.sender`.
    /// @param required The party the call is reserved for.
    error EscrowUnauthorizedCaller(address caller, address required);

    /// @notice Creation: the milestone list is empty or longer than 64.
    /// @param count The number of milestones passed.
    error EscrowInvalidMilestoneCount(uint256 count);
    /// @notice Creation: a milestone amount is zero.
    /// @param milestone The index of the first zero amount.
    error EscrowZeroMilestoneAmount(uint256 milestone);
    /// @notice Creation: the total of the milestones is 2^112 or more.
    /// @param total The running total when it reached 2^112 (or a single amount that did).
    error EscrowTotalTooLarge(uint256 total);
    /// @notice Creation: the provider is zero or the client itself.
    /// @param provider The provider passed.
    error EscrowInvalidProvider(address provider);
    /// @notice Creation: the payout table decreases at `index` or does not end at 10000.
    /// @param index The first decreasing entry, or 4 when the last entry is not 10000.
    /// @param bps The entry's value.
    error EscrowInvalidPayoutTable(uint256 index, uint16 bps);
    /// @notice Creation: a refund bps value is above 10000.
    /// @param bps The value.
    error EscrowBpsTooLarge(uint16 bps);
    /// @notice Creation: a review or challenge period is zero, or the arbitration period is zero
    /// while there is an arbiter.
    /// @param which 0 review, 1 challenge, 2 arbitration (ConstantsLib PERIOD_*).
    error EscrowZeroPeriod(uint8 which);
    /// @notice Creation: the delivery deadline is already past.
    /// @param deliveryDeadline The deadline passed.
    /// @param timestamp The block time.
    error EscrowDeadlinePassed(uint64 deliveryDeadline, uint256 timestamp);
    /// @notice Creation: the ETH sent is not the escrow's total (or not zero for a token escrow).
    /// @param sent `msg.value`.
    /// @param required The total for ETH, 0 for a token.
    error EscrowWrongValue(uint256 sent, uint256 required);
    /// @notice Creation: the token is not a contract.
    /// @param token The token passed.
    error EscrowTokenNotContract(address token);
    /// @notice Creation: the token delivered less (or more) than the amount pulled.
    /// @param token The token.
    /// @param expected The total pulled.
    /// @param received What the contract's balance grew by.
    error EscrowTokenAmountMismatch(address token, uint256 expected, uint256 received);

    /// @notice The milestone index is past the escrow's last milestone.
    /// @param milestone The index passed.
    /// @param count The escrow's number of milestones.
    error EscrowMilestoneOutOfRange(uint256 milestone, uint256 count);
    /// @notice The milestone is not in a state this call accepts.
    /// @param escrowId The escrow.
    /// @param milestone The milestone.
    /// @param state Its state.
    error EscrowInvalidMilestoneState(uint256 escrowId, uint256 milestone, MilestoneState state);
    /// @notice The window this call must happen inside closed at `endedAt`.
    /// @param endedAt The window's last second.
    /// @param timestamp The block time.
    error EscrowWindowClosed(uint256 endedAt, uint256 timestamp);
    /// @notice The window that must pass before this call is still open until `endsAt`.
    /// @param endsAt The window's last second; the call works from `endsAt + 1`.
    /// @param timestamp The block time.
    error EscrowWindowOpen(uint256 endsAt, uint256 timestamp);
    /// @notice A rating outside 1..5.
    /// @param rating The rating passed.
    error EscrowInvalidRating(uint8 rating);
    /// @notice The confirmation signature's deadline has passed.
    /// @param deadline The signed deadline.
    /// @param timestamp The block time.
    error EscrowSignatureExpired(uint256 deadline, uint256 timestamp);
    /// @notice The signature is not the client's (plain key or ERC-1271 wallet).
    /// @param client The escrow's client.
    /// @param digest The EIP-712 digest that was checked, `confirmationDigest(...)`.
    error EscrowInvalidSignature(address client, bytes32 digest);
    /// @notice The escrow has no arbiter, so disputes and challenges are unavailable.
    /// @param escrowId The escrow.
    error EscrowNoArbiter(uint256 escrowId);
    /// @notice A provider share above 10000 bps.
    /// @param providerBps The share passed.
    error EscrowInvalidSplit(uint16 providerBps);
    /// @notice Breach kind outside 1..3.
    /// @param kind The kind passed.
    error EscrowInvalidBreachKind(uint8 kind);
    /// @notice A report for this (kind, period) already exists.
    /// @param escrowId The escrow.
    /// @param kind The kind.
    /// @param period The period.
    error EscrowBreachAlreadyReported(uint256 escrowId, uint8 kind, uint32 period);
    /// @notice No breach report has this id.
    /// @param escrowId The escrow.
    /// @param breachId The id passed.
    error EscrowBreachNotFound(uint256 escrowId, uint256 breachId);
    /// @notice The breach report is not in a state this call accepts.
    /// @param escrowId The escrow.
    /// @param breachId The report.
    /// @param state Its state.
    error EscrowInvalidBreachState(uint256 escrowId, uint256 breachId, BreachState state);
    /// @notice `reclaimExpired` found no never-delivered milestone.
    /// @param escrowId The escrow.
    error EscrowNothingToReclaim(uint256 escrowId);
    /// @notice The caller has no credit in this token.
    /// @param account The caller.
    /// @param token The token.
    error EscrowNothingToWithdraw(address account, address token);
    /// @notice Sending ETH to the account failed; its credit is kept.
    /// @param account The caller.
    /// @param amount The credit that could not be sent.
    error EscrowEthTransferFailed(address account, uint256 amount);

    /* ------------------------------------------------------------ functions */

    /// @notice Locks the total of `p.milestoneAmounts` and proposes the escrow to the provider.
    /// Only `p.client` may call. ETH comes as `msg.value`; an ERC-20 is pulled from the client
    /// (approve the total first) and must arrive in full.
    /// @dev Refuses: a caller other than `p.client`; provider zero or equal to the client; 0 or
    /// more than 64 milestones; a zero amount; a total of 2^112 or more; a payout table that
    /// decreases or does not end at 10000; any bps above 10000; a zero review or challenge period;
    /// a zero arbitration period when there is an arbiter; a `deliveryDeadline` before the block
    /// time; ETH other than the total (ETH escrow) or any ETH (token escrow); a token without code;
    /// a token that delivers another amount than the total. Emits `EscrowCreated`.
    /// @param p The escrow's parameters; the contract stores `keccak256(abi.encode(p))`.
    /// @return escrowId The new escrow's id; ids count up from 1.
    function createEscrow(EscrowParams calldata p) external payable returns (uint256 escrowId);

    /// @notice Client, while `Proposed`: closes the escrow and credits the whole total back to the
    /// client. Emits `EscrowCancelled`.
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    function cancel(uint256 escrowId, EscrowParams calldata p) external;

    /// @notice Provider, while `Proposed`: agrees to the terms, oracle and arbiter; the escrow
    /// becomes `Active`. Emits `EscrowAccepted`.
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    function accept(uint256 escrowId, EscrowParams calldata p) external;

    /// @notice Provider, not after the delivery deadline: marks a not yet delivered, unsettled
    /// milestone delivered and starts its review window. Emits `DeliverySubmitted`.
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    /// @param milestone The milestone's index (from 0).
    /// @param deliveryHash A reference to what was delivered, emitted as is.
    function submitDelivery(uint256 escrowId, EscrowParams calldata p, uint256 milestone, bytes32 deliveryHash)
        external;

    /// @notice Client: settles the milestone at the rating's payout (`terms.ratingPayoutBps[rating - 1]`
    /// of its share to the provider, the rest to the client); allowed before delivery and, after
    /// delivery, inside the review window; not once disputed or settled. Emits `MilestoneSettled`
    /// (how 1).
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    /// @param milestone The milestone's index (from 0).
    /// @param rating 1..5.
    /// @param commentHash keccak256 of the RFC 8785 canonical review, or zero for none.
    function confirm(uint256 escrowId, EscrowParams calldata p, uint256 milestone, uint8 rating, bytes32 commentHash)
        external;

    /// @notice Anyone (the service's relayer): `confirm` authorised by the client's EIP-712
    /// `Confirmation` signature. The payee is always the escrow's provider, so a front-run relay
    /// is harmless; the first valid confirmation to land settles the milestone. Emits
    /// `MilestoneSettled` (how 2).
    /// @dev The signature is checked at execution: first as a plain ECDSA signature (65 bytes, low
    /// s, v in {27, 28}), and when that does not recover the client, as an ERC-1271 wallet's answer
    /// (`isValidSignature` of the client). The deadline is checked before the signature.
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    /// @param milestone The milestone's index (from 0).
    /// @param rating 1..5.
    /// @param commentHash keccak256 of the RFC 8785 canonical review, or zero for none.
    /// @param deadline Last block time at which the signature may be used (unix seconds).
    /// @param signature The client's signature of `confirmationDigest(escrowId, milestone, rating,
    /// commentHash, deadline)`.
    function confirmWithSig(
        uint256 escrowId,
        EscrowParams calldata p,
        uint256 milestone,
        uint8 rating,
        bytes32 commentHash,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Anyone, once a delivered milestone's review window has passed undisputed: settles it
    /// wholly to the provider at rating 5. Emits `MilestoneSettled` (how 3).
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    /// @param milestone The milestone's index (from 0).
    function releaseAfterTimeout(uint256 escrowId, EscrowParams calldata p, uint256 milestone) external;

    /// @notice Client, inside the review window of a delivered milestone, when the escrow has an
    /// arbiter: freezes the milestone for the arbiter. Emits `DisputeOpened`.
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    /// @param milestone The milestone's index (from 0).
    /// @param reasonHash A reference to the reason, emitted as is.
    function openDispute(uint256 escrowId, EscrowParams calldata p, uint256 milestone, bytes32 reasonHash) external;

    /// @notice Arbiter, inside the arbitration period after the dispute opened: settles the disputed
    /// milestone with that split. Emits `MilestoneSettled` (how 4, rating 0).
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    /// @param milestone The milestone's index (from 0).
    /// @param providerBps The provider's share of the milestone, 0..10000.
    function resolveDispute(uint256 escrowId, EscrowParams calldata p, uint256 milestone, uint16 providerBps)
        external;

    /// @notice Anyone, after the arbitration period: settles the disputed milestone 50/50 (the
    /// provider's half rounded down). Emits `MilestoneSettled` (how 5, rating 0).
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    /// @param milestone The milestone's index (from 0).
    function settleStaleDispute(uint256 escrowId, EscrowParams calldata p, uint256 milestone) external;

    /// @notice Oracle, while `Active`: records breach evidence and reserves its refund at once,
    /// `min(kindBps * total / 10000, capLeft, locked)` where `capLeft` is
    /// `maxRefundBps * total / 10000` less everything refunded or reserved so far. A report that
    /// reserves 0 is still recorded. One report per (kind, period). Emits `BreachReported`.
    /// @dev The contract does not check `period` against time or the evidence against anything:
    /// see the oracle warning above.
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    /// @param kind 1 KPI below standard, 2 consecutive underperformance, 3 major incident.
    /// @param period The period the evidence is about (the terms document defines its length).
    /// @param evidenceHash keccak256 of the RFC 8785 canonical evidence bundle.
    /// @return breachId Counts up from 0 per escrow.
    function reportBreach(uint256 escrowId, EscrowParams calldata p, uint8 kind, uint32 period, bytes32 evidenceHash)
        external
        returns (uint256 breachId);

    /// @notice Provider, inside the challenge period, when the escrow has an arbiter: sends the
    /// report to the arbiter. Emits `BreachChallenged`.
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    /// @param breachId The report (state `Reported`).
    function challengeBreach(uint256 escrowId, EscrowParams calldata p, uint256 breachId) external;

    /// @notice Arbiter, inside the arbitration period after the challenge: upheld refunds the
    /// reserve to the client (outcome 2); rejected releases it (outcome 3): back to `locked` while a
    /// milestone is unsettled, otherwise to the provider. Emits `BreachSettled`.
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    /// @param breachId The report (state `Challenged`).
    /// @param upheld Whether the arbiter upholds the report.
    function resolveBreach(uint256 escrowId, EscrowParams calldata p, uint256 breachId, bool upheld) external;

    /// @notice Anyone, after the arbitration period of a challenged report: half the reserve
    /// refunded to the client (rounded down), the other half released as in `resolveBreach`.
    /// Emits `BreachSettled` (outcome 4).
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    /// @param breachId The report (state `Challenged`).
    function settleStaleBreach(uint256 escrowId, EscrowParams calldata p, uint256 breachId) external;

    /// @notice Anyone, after the challenge period of an unchallenged report: the reserve is refunded
    /// to the client. Emits `BreachSettled` (outcome 1).
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    /// @param breachId The report (state `Reported`).
    function finalizeBreach(uint256 escrowId, EscrowParams calldata p, uint256 breachId) external;

    /// @notice Client, after the delivery deadline: settles every never-delivered milestone wholly
    /// to the client, in index order (one `MilestoneSettled`, how 6, each); reverts when there is
    /// none. Delivered milestones go on through confirmation, dispute or timeout.
    /// @param escrowId The escrow.
    /// @param p Its parameters.
    function reclaimExpired(uint256 escrowId, EscrowParams calldata p) external;

    /// @notice Pays the caller's whole credit in `token`, in any escrow status. Emits `Withdrawn`.
    /// @dev The credit is zeroed before the transfer; if the transfer fails the whole call reverts
    /// and the credit stays. See the token warnings above.
    /// @param token The token, `address(0)` for ETH.
    function withdraw(address token) external;

    /* ---------------------------------------------------------------- views */

    /// @notice The escrow's commitment.
    /// @param escrowId The escrow.
    /// @return The stored `keccak256(abi.encode(p))`, zero for an unknown id.
    function paramsHash(uint256 escrowId) external view returns (bytes32);

    /// @notice The commitment `createEscrow` would store for these parameters.
    /// @param p The parameters.
    /// @return `keccak256(abi.encode(p))`.
    function hashParams(EscrowParams calldata p) external pure returns (bytes32);

    /// @notice The escrow's state and balances.
    /// @param escrowId The escrow.
    /// @return The escrow's `EscrowView`; all zero (status `None`) for an unknown id.
    function getEscrow(uint256 escrowId) external view returns (EscrowView memory);

    /// @notice A milestone's state.
    /// @param escrowId The escrow.
    /// @param milestone The milestone's index (not range-checked).
    /// @return state Its state (`None` for an index past the last milestone or an unknown escrow).
    /// @return since Block time at which it entered that state (0 for `None`).
    function getMilestone(uint256 escrowId, uint256 milestone)
        external
        view
        returns (MilestoneState state, uint64 since);

    /// @notice A breach report.
    /// @param escrowId The escrow.
    /// @param breachId The report.
    /// @return The report's `BreachView`; all zero (state `None`) for an unknown id.
    function getBreach(uint256 escrowId, uint256 breachId) external view returns (BreachView memory);

    /// @notice What an account can withdraw.
    /// @param account The account.
    /// @param token The token, `address(0)` for ETH.
    /// @return The account's credit in that token, over all escrows.
    function credits(address account, address token) external view returns (uint256);

    /// @notice The EIP-712 domain separator: name "QualityEscrow", version "1", this chain, this contract.
    /// @return The separator, recomputed when the chain id changes (a fork).
    function DOMAIN_SEPARATOR() external view returns (bytes32);

    /// @notice How many escrows were created.
    /// @return The count, which is also the last escrow id.
    function escrowCount() external view returns (uint256);

    /// @notice The EIP-712 digest the client signs for `confirmWithSig`: the typed data
    /// `Confirmation(uint256 escrowId,uint256 milestone,uint8 rating,bytes32 commentHash,uint256 deadline)`
    /// under `DOMAIN_SEPARATOR()`.
    /// @param escrowId The escrow.
    /// @param milestone The milestone's index (from 0).
    /// @param rating 1..5.
    /// @param commentHash The review's hash, or zero.
    /// @param deadline Last block time at which the signature may be used.
    /// @return The digest, `keccak256("\x19\x01" || DOMAIN_SEPARATOR() || structHash)`.
    function confirmationDigest(uint256 escrowId, uint256 milestone, uint8 rating, bytes32 commentHash, uint256 deadline)
        external
        view
        returns (bytes32);
}
