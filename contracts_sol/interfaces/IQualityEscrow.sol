// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title Quality Escrow: payment released by client ratings, refunded by KPI breach evidence.
/// @notice One singleton holds many escrows. Each escrow stores only a hash of its `EscrowParams`;
/// every call after creation passes the same parameters back (the service fills them in from
/// `EscrowCreated`). Amounts are in the token's smallest unit, `token == address(0)` means ETH,
/// basis points (bps) are out of 10 000. Every payout is a credit; money leaves only via `withdraw`.
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
        address token;
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
        uint8 kind;
        uint32 period;
        uint64 reportedAt;
        uint64 challengedAt;
        uint256 reserve;
    }

    /* --------------------------------------------------------------- events */

    event EscrowCreated(
        uint256 indexed escrowId, address indexed client, address indexed provider, EscrowParams params
    );
    event EscrowAccepted(uint256 indexed escrowId);
    event EscrowCancelled(uint256 indexed escrowId, uint256 refund);
    event DeliverySubmitted(uint256 indexed escrowId, uint256 milestone, bytes32 deliveryHash);
    /// @param how 1 confirmed, 2 confirmed by signature, 3 timeout (rating 5), 4 dispute resolved,
    /// 5 stale dispute, 6 reclaimed after the deadline. `rating` is 0 for 4, 5 and 6.
    event MilestoneSettled(
        uint256 indexed escrowId,
        uint256 milestone,
        uint8 how,
        uint8 rating,
        bytes32 commentHash,
        uint256 toProvider,
        uint256 toClient
    );
    event DisputeOpened(uint256 indexed escrowId, uint256 milestone, bytes32 reasonHash);
    event BreachReported(
        uint256 indexed escrowId, uint256 breachId, uint8 kind, uint32 period, bytes32 evidenceHash, uint256 reserved
    );
    event BreachChallenged(uint256 indexed escrowId, uint256 breachId);
    /// @param outcome 1 finalized, 2 upheld, 3 rejected, 4 stale split. `toProvider` is non-zero
    /// only when a released reserve finds no unsettled milestone to return to.
    event BreachSettled(uint256 indexed escrowId, uint256 breachId, uint8 outcome, uint256 toClient, uint256 toProvider);
    event Withdrawn(address indexed account, address indexed token, uint256 amount);

    /* --------------------------------------------------------------- errors */

    /// @notice No escrow has this id.
    error EscrowNotFound(uint256 escrowId);
    /// @notice The parameters passed do not hash to the escrow's commitment.
    error EscrowParamsMismatch(uint256 escrowId, bytes32 expected, bytes32 actual);
    /// @notice The escrow is not in the status this call needs.
    error EscrowInvalidStatus(uint256 escrowId, Status status, Status required);
    /// @notice The caller is not the party this call is reserved for.
    error EscrowUnauthorizedCaller(address caller, address required);

    /// @notice Creation: the milestone list is empty or longer than 64.
    error EscrowInvalidMilestoneCount(uint256 count);
    /// @notice Creation: a milestone amount is zero.
    error EscrowZeroMilestoneAmount(uint256 milestone);
    /// @notice Creation: the total of the milestones is 2^112 or more.
    error EscrowTotalTooLarge(uint256 total);
    /// @notice Creation: the provider is zero or the client itself.
    error EscrowInvalidProvider(address provider);
    /// @notice Creation: the payout table decreases at `index` or does not end at 10000.
    error EscrowInvalidPayoutTable(uint256 index, uint16 bps);
    /// @notice Creation: a bps value is above 10000.
    error EscrowBpsTooLarge(uint16 bps);
    /// @notice Creation: a review or challenge period is zero, or the arbitration period is zero
    /// while there is an arbiter. `which` is 0 review, 1 challenge, 2 arbitration.
    error EscrowZeroPeriod(uint8 which);
    /// @notice Creation: the delivery deadline is already past.
    error EscrowDeadlinePassed(uint64 deliveryDeadline, uint256 timestamp);
    /// @notice Creation: the ETH sent is not the escrow's total (or not zero for a token escrow).
    error EscrowWrongValue(uint256 sent, uint256 required);
    /// @notice Creation: the token is not a contract.
    error EscrowTokenNotContract(address token);
    /// @notice Creation: the token delivered less (or more) than the amount pulled.
    error EscrowTokenAmountMismatch(address token, uint256 expected, uint256 received);

    /// @notice The milestone index is past the escrow's last milestone.
    error EscrowMilestoneOutOfRange(uint256 milestone, uint256 count);
    /// @notice The milestone is not in a state this call accepts.
    error EscrowInvalidMilestoneState(uint256 escrowId, uint256 milestone, MilestoneState state);
    /// @notice The window this call must happen inside closed at `endedAt`.
    error EscrowWindowClosed(uint256 endedAt, uint256 timestamp);
    /// @notice The window that must pass before this call is still open until `endsAt`.
    error EscrowWindowOpen(uint256 endsAt, uint256 timestamp);
    /// @notice A rating outside 1..5.
    error EscrowInvalidRating(uint8 rating);
    /// @notice The confirmation signature's deadline has passed.
    error EscrowSignatureExpired(uint256 deadline, uint256 timestamp);
    /// @notice The signature is not the client's (plain key or ERC-1271 wallet).
    error EscrowInvalidSignature(address client, bytes32 digest);
    /// @notice The escrow has no arbiter, so disputes and challenges are unavailable.
    error EscrowNoArbiter(uint256 escrowId);
    /// @notice A provider share above 10000 bps.
    error EscrowInvalidSplit(uint16 providerBps);
    /// @notice Breach kind outside 1..3.
    error EscrowInvalidBreachKind(uint8 kind);
    /// @notice A report for this (kind, period) already exists.
    error EscrowBreachAlreadyReported(uint256 escrowId, uint8 kind, uint32 period);
    /// @notice No breach report has this id.
    error EscrowBreachNotFound(uint256 escrowId, uint256 breachId);
    /// @notice The breach report is not in a state this call accepts.
    error EscrowInvalidBreachState(uint256 escrowId, uint256 breachId, BreachState state);
    /// @notice `reclaimExpired` found no never-delivered milestone.
    error EscrowNothingToReclaim(uint256 escrowId);
    /// @notice The caller has no credit in this token.
    error EscrowNothingToWithdraw(address account, address token);
    /// @notice Sending ETH to the account failed.
    error EscrowEthTransferFailed(address account, uint256 amount);

    /* ------------------------------------------------------------ functions */

    /// @notice Locks the total of `p.milestoneAmounts` (ETH as msg.value, ERC-20 pulled from the
    /// client) and proposes the escrow to the provider. Only `p.client` may call.
    /// @return escrowId The new escrow's id; ids count up from 1.
    function createEscrow(EscrowParams calldata p) external payable returns (uint256 escrowId);

    /// @notice Client, while `Proposed`: credits the whole total back to the client.
    function cancel(uint256 escrowId, EscrowParams calldata p) external;

    /// @notice Provider, while `Proposed`: agrees to the terms, oracle and arbiter.
    function accept(uint256 escrowId, EscrowParams calldata p) external;

    /// @notice Provider, before the delivery deadline: starts the milestone's review window.
    function submitDelivery(uint256 escrowId, EscrowParams calldata p, uint256 milestone, bytes32 deliveryHash)
        external;

    /// @notice Client: settles the milestone at the rating's payout; allowed before delivery and,
    /// after delivery, inside the review window.
    function confirm(uint256 escrowId, EscrowParams calldata p, uint256 milestone, uint8 rating, bytes32 commentHash)
        external;

    /// @notice Anyone: `confirm` authorised by the client's EIP-712 `Confirmation` signature (an
    /// EOA signature with low s and v in {27, 28}, or an ERC-1271 wallet's answer).
    function confirmWithSig(
        uint256 escrowId,
        EscrowParams calldata p,
        uint256 milestone,
        uint8 rating,
        bytes32 commentHash,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Anyone, once a delivered milestone's review window passed undisputed: rating 5.
    function releaseAfterTimeout(uint256 escrowId, EscrowParams calldata p, uint256 milestone) external;

    /// @notice Client, inside the review window: freezes the milestone for the arbiter.
    function openDispute(uint256 escrowId, EscrowParams calldata p, uint256 milestone, bytes32 reasonHash) external;

    /// @notice Arbiter, inside the arbitration period: settles the disputed milestone.
    function resolveDispute(uint256 escrowId, EscrowParams calldata p, uint256 milestone, uint16 providerBps)
        external;

    /// @notice Anyone, after the arbitration period: settles the disputed milestone 50/50.
    function settleStaleDispute(uint256 escrowId, EscrowParams calldata p, uint256 milestone) external;

    /// @notice Oracle, while `Active`: records breach evidence and reserves its refund at once.
    /// One report per (kind, period).
    /// @return breachId Counts up from 0 per escrow.
    function reportBreach(uint256 escrowId, EscrowParams calldata p, uint8 kind, uint32 period, bytes32 evidenceHash)
        external
        returns (uint256 breachId);

    /// @notice Provider, inside the challenge period: sends the report to the arbiter.
    function challengeBreach(uint256 escrowId, EscrowParams calldata p, uint256 breachId) external;

    /// @notice Arbiter, inside the arbitration period: upheld refunds the reserve, rejected releases it.
    function resolveBreach(uint256 escrowId, EscrowParams calldata p, uint256 breachId, bool upheld) external;

    /// @notice Anyone, after the arbitration period: half the reserve refunded, half released.
    function settleStaleBreach(uint256 escrowId, EscrowParams calldata p, uint256 breachId) external;

    /// @notice Anyone, after an unchallenged challenge period: the reserve is refunded to the client.
    function finalizeBreach(uint256 escrowId, EscrowParams calldata p, uint256 breachId) external;

    /// @notice Client, after the delivery deadline: settles every never-delivered milestone wholly
    /// to the client, in index order.
    function reclaimExpired(uint256 escrowId, EscrowParams calldata p) external;

    /// @notice Pays the caller's whole credit in `token`.
    function withdraw(address token) external;

    /* ---------------------------------------------------------------- views */

    function paramsHash(uint256 escrowId) external view returns (bytes32);
    function hashParams(EscrowParams calldata p) external pure returns (bytes32);
    function getEscrow(uint256 escrowId) external view returns (EscrowView memory);
    function getMilestone(uint256 escrowId, uint256 milestone)
        external
        view
        returns (MilestoneState state, uint64 since);
    function getBreach(uint256 escrowId, uint256 breachId) external view returns (BreachView memory);
    function credits(address account, address token) external view returns (uint256);
    /// @notice The EIP-712 domain separator: name "QualityEscrow", version "1", this chain, this contract.
    function DOMAIN_SEPARATOR() external view returns (bytes32);
    function escrowCount() external view returns (uint256);
    function confirmationDigest(uint256 escrowId, uint256 milestone, uint8 rating, bytes32 commentHash, uint256 deadline)
        external
        view
        returns (bytes32);
}
