// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

import {IQualityEscrow} from "./interfaces/IQualityEscrow.sol";
import {
    BPS,
    MAX_MILESTONES,
    MAX_TOTAL,
    MAX_RATING,
    BREACH_KPI_BELOW_STANDARD,
    BREACH_CONSECUTIVE_UNDERPERFORMANCE,
    BREACH_MAJOR_INCIDENT,
    OUTCOME_FINALIZED,
    OUTCOME_UPHELD,
    OUTCOME_REJECTED,
    OUTCOME_STALE_SPLIT,
    HOW_CONFIRMED,
    HOW_SIGNED,
    HOW_TIMEOUT,
    HOW_DISPUTE,
    HOW_STALE_DISPUTE,
    HOW_RECLAIMED,
    PERIOD_REVIEW,
    PERIOD_CHALLENGE,
    PERIOD_ARBITRATION
} from "./libraries/ConstantsLib.sol";

/// @title QualityEscrow
/// @notice See {IQualityEscrow}. Every function checks, then changes state, then emits, and makes
/// external calls last. All payouts are credits; only `withdraw` and `createEscrow` move tokens.
contract QualityEscrow is IQualityEscrow, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 public constant CONFIRMATION_TYPEHASH = keccak256(
        "Confirmation(uint256 escrowId,uint256 milestone,uint8 rating,bytes32 commentHash,uint256 deadline)"
    );

    /// @dev Byte size of the static head of an ABI-encoded `EscrowParams`: 5 addresses, termsHash,
    /// the offset of `milestoneAmounts`, then `Terms` inline (5 + 8 words) = 20 words.
    uint256 internal constant PARAMS_HEAD_SIZE = 20 * 32;
    /// @dev Position of the `milestoneAmounts` offset word inside the head.
    uint256 internal constant PARAMS_ARRAY_OFFSET_POS = 6 * 32;

    /// @dev Hot per-escrow state, one storage slot.
    struct EscrowState {
        Status status;
        uint8 milestoneCount;
        uint8 settledCount;
        uint112 locked;
        uint112 nominal;
    }

    /// @dev Breach accounting, one slot; first written by the escrow's first report.
    struct BreachBook {
        uint112 reserved;
        uint112 refunded;
        uint32 count;
    }

    /// @dev One slot per report.
    struct Breach {
        BreachState state;
        uint8 kind;
        uint32 period;
        uint40 reportedAt;
        uint40 challengedAt;
        uint112 reserve;
    }

    /// @inheritdoc IQualityEscrow
    uint256 public escrowCount;
    /// @inheritdoc IQualityEscrow
    mapping(uint256 escrowId => bytes32) public paramsHash;
    /// @inheritdoc IQualityEscrow
    mapping(address account => mapping(address token => uint256)) public credits;

    mapping(uint256 escrowId => EscrowState) internal _escrows;
    mapping(uint256 escrowId => BreachBook) internal _books;
    mapping(uint256 escrowId => mapping(uint256 breachId => Breach)) internal _breaches;
    /// @dev Milestones are packed four to a slot (64 bits each: state in the low byte, the time it
    /// entered that state above), so delivering the second milestone of a pair costs 2,900 gas, not 22,100.
    mapping(uint256 escrowId => mapping(uint256 word => uint256)) internal _milestoneWords;
    /// @dev One bit per (kind, period): word `period >> 6`, bit `kind << 6 | period & 63`, so reports
    /// for nearby periods share a slot.
    mapping(uint256 escrowId => mapping(uint256 word => uint256)) internal _reportedBits;

    constructor() EIP712("QualityEscrow", "1") {}

    /* ------------------------------------------------------------- creation */

    /// @inheritdoc IQualityEscrow
    function createEscrow(EscrowParams calldata p) external payable nonReentrant returns (uint256 escrowId) {
        uint256 total = _validateParams(p);
        if (p.token == address(0)) {
            if (msg.value != total) revert EscrowWrongValue(msg.value, total);
        } else {
            if (msg.value != 0) revert EscrowWrongValue(msg.value, 0);
            if (p.token.code.length == 0) revert EscrowTokenNotContract(p.token);
        }

        escrowId = ++escrowCount;
        // Canonical re-encoding: the commitment is over clean values whatever the calldata held.
        paramsHash[escrowId] = keccak256(abi.encode(p));
        _escrows[escrowId] = EscrowState({
            status: Status.Proposed,
            milestoneCount: uint8(p.milestoneAmounts.length),
            settledCount: 0,
            locked: uint112(total),
            nominal: uint112(total)
        });
        emit EscrowCreated(escrowId, p.client, p.provider, p);

        if (p.token != address(0)) {
            IERC20 token = IERC20(p.token);
            uint256 before = token.balanceOf(address(this));
            token.safeTransferFrom(msg.sender, address(this), total);
            uint256 received = token.balanceOf(address(this)) - before;
            if (received != total) revert EscrowTokenAmountMismatch(p.token, total, received);
        }
    }

    /// @dev Every refusal of creation (see `createEscrow` in {IQualityEscrow}); returns the total.
    function _validateParams(EscrowParams calldata p) internal view returns (uint256 total) {
        if (msg.sender != p.client) revert EscrowUnauthorizedCaller(msg.sender, p.client);
        if (p.provider == address(0) || p.provider == p.client) revert EscrowInvalidProvider(p.provider);

        uint256 count = p.milestoneAmounts.length;
        if (count == 0 || count > MAX_MILESTONES) revert EscrowInvalidMilestoneCount(count);
        for (uint256 i; i < count; ++i) {
            uint256 amount = p.milestoneAmounts[i];
            if (amount == 0) revert EscrowZeroMilestoneAmount(i);
            // Each amount is below 2^112 once the running total is, so this cannot overflow.
            if (amount >= MAX_TOTAL) revert EscrowTotalTooLarge(amount);
            total += amount;
            if (total >= MAX_TOTAL) revert EscrowTotalTooLarge(total);
        }

        Terms calldata t = p.terms;
        uint16 previous;
        // One entry per rating 1..MAX_RATING. The literals 5 and 4 here and the timeout's rating 5 stay
        // literals: written as MAX_RATING the IR optimizer laid `_confirm` out 56 gas dearer.
        for (uint256 i; i < 5; ++i) {
            uint16 bps = t.ratingPayoutBps[i];
            if (bps < previous) revert EscrowInvalidPayoutTable(i, bps);
            previous = bps;
        }
        if (previous != BPS) revert EscrowInvalidPayoutTable(4, previous);
        _checkBps(t.breachRefundBps);
        _checkBps(t.streakRefundBps);
        _checkBps(t.incidentRefundBps);
        _checkBps(t.maxRefundBps);
        if (t.reviewPeriod == 0) revert EscrowZeroPeriod(PERIOD_REVIEW);
        if (t.challengePeriod == 0) revert EscrowZeroPeriod(PERIOD_CHALLENGE);
        if (t.arbitrationPeriod == 0 && p.arbiter != address(0)) revert EscrowZeroPeriod(PERIOD_ARBITRATION);
        if (t.deliveryDeadline < block.timestamp) revert EscrowDeadlinePassed(t.deliveryDeadline, block.timestamp);
    }

    function _checkBps(uint16 bps) internal pure {
        if (bps > BPS) revert EscrowBpsTooLarge(bps);
    }

    /// @inheritdoc IQualityEscrow
    function cancel(uint256 escrowId, EscrowParams calldata p) external {
        EscrowState storage e = _load(escrowId, p, Status.Proposed);
        _onlyCaller(p.client);

        uint256 refund = e.locked;
        e.status = Status.Closed;
        e.locked = 0;
        e.nominal = 0;
        credits[p.client][p.token] += refund;
        emit EscrowCancelled(escrowId, refund);
    }

    /// @inheritdoc IQualityEscrow
    function accept(uint256 escrowId, EscrowParams calldata p) external {
        EscrowState storage e = _load(escrowId, p, Status.Proposed);
        _onlyCaller(p.provider);

        e.status = Status.Active;
        emit EscrowAccepted(escrowId);
    }

    /* ----------------------------------------------------------- milestones */

    /// @inheritdoc IQualityEscrow
    function submitDelivery(uint256 escrowId, EscrowParams calldata p, uint256 milestone, bytes32 deliveryHash)
        external
    {
        _load(escrowId, p, Status.Active);
        _onlyCaller(p.provider);
        _checkMilestoneIndex(p, milestone);
        if (block.timestamp > p.terms.deliveryDeadline) {
            revert EscrowWindowClosed(p.terms.deliveryDeadline, block.timestamp);
        }
        (MilestoneState state,) = _milestone(escrowId, milestone);
        if (state != MilestoneState.None) revert EscrowInvalidMilestoneState(escrowId, milestone, state);

        _setMilestone(escrowId, milestone, MilestoneState.Delivered);
        emit DeliverySubmitted(escrowId, milestone, deliveryHash);
    }

    /// @inheritdoc IQualityEscrow
    function confirm(uint256 escrowId, EscrowParams calldata p, uint256 milestone, uint8 rating, bytes32 commentHash)
        external
    {
        EscrowState storage e = _load(escrowId, p, Status.Active);
        _onlyCaller(p.client);
        _confirm(e, escrowId, p, milestone, rating, commentHash, HOW_CONFIRMED);
    }

    /// @inheritdoc IQualityEscrow
    function confirmWithSig(
        uint256 escrowId,
        EscrowParams calldata p,
        uint256 milestone,
        uint8 rating,
        bytes32 commentHash,
        uint256 deadline,
        bytes calldata signature
    ) external {
        EscrowState storage e = _load(escrowId, p, Status.Active);
        if (block.timestamp > deadline) revert EscrowSignatureExpired(deadline, block.timestamp);
        bytes32 digest = confirmationDigest(escrowId, milestone, rating, commentHash, deadline);
        // Plain keys first: it spares ordinary wallets the EXTCODESIZE of SignatureChecker. tryRecover
        // refuses high-s and v outside {27, 28}; a contract wallet answers for itself via ERC-1271.
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (
            (err != ECDSA.RecoverError.NoError || signer != p.client)
                && !SignatureChecker.isValidERC1271SignatureNowCalldata(p.client, digest, signature)
        ) revert EscrowInvalidSignature(p.client, digest);
        _confirm(e, escrowId, p, milestone, rating, commentHash, HOW_SIGNED);
    }

    /// @dev Shared by `confirm` and `confirmWithSig`: the payee is always the escrow's provider.
    function _confirm(
        EscrowState storage e,
        uint256 escrowId,
        EscrowParams calldata p,
        uint256 milestone,
        uint8 rating,
        bytes32 commentHash,
        uint8 how
    ) internal {
        _checkMilestoneIndex(p, milestone);
        if (rating == 0 || rating > MAX_RATING) revert EscrowInvalidRating(rating);
        (MilestoneState state, uint256 since) = _milestone(escrowId, milestone);
        if (state == MilestoneState.Delivered) {
            uint256 endsAt = since + p.terms.reviewPeriod;
            if (block.timestamp > endsAt) revert EscrowWindowClosed(endsAt, block.timestamp);
        } else if (state != MilestoneState.None) {
            revert EscrowInvalidMilestoneState(escrowId, milestone, state);
        }
        _settle(e, escrowId, p, milestone, p.terms.ratingPayoutBps[rating - 1], how, rating, commentHash);
    }

    /// @inheritdoc IQualityEscrow
    function releaseAfterTimeout(uint256 escrowId, EscrowParams calldata p, uint256 milestone) external {
        EscrowState storage e = _load(escrowId, p, Status.Active);
        _checkMilestoneIndex(p, milestone);
        (MilestoneState state, uint256 since) = _milestone(escrowId, milestone);
        if (state != MilestoneState.Delivered) revert EscrowInvalidMilestoneState(escrowId, milestone, state);
        uint256 endsAt = since + p.terms.reviewPeriod;
        if (block.timestamp <= endsAt) revert EscrowWindowOpen(endsAt, block.timestamp);

        _settle(e, escrowId, p, milestone, BPS, HOW_TIMEOUT, 5, bytes32(0));
    }

    /// @inheritdoc IQualityEscrow
    function openDispute(uint256 escrowId, EscrowParams calldata p, uint256 milestone, bytes32 reasonHash) external {
        _load(escrowId, p, Status.Active);
        _onlyCaller(p.client);
        if (p.arbiter == address(0)) revert EscrowNoArbiter(escrowId);
        _checkMilestoneIndex(p, milestone);
        (MilestoneState state, uint256 since) = _milestone(escrowId, milestone);
        if (state != MilestoneState.Delivered) revert EscrowInvalidMilestoneState(escrowId, milestone, state);
        uint256 endsAt = since + p.terms.reviewPeriod;
        if (block.timestamp > endsAt) revert EscrowWindowClosed(endsAt, block.timestamp);

        _setMilestone(escrowId, milestone, MilestoneState.Disputed);
        emit DisputeOpened(escrowId, milestone, reasonHash);
    }

    /// @inheritdoc IQualityEscrow
    function resolveDispute(uint256 escrowId, EscrowParams calldata p, uint256 milestone, uint16 providerBps)
        external
    {
        EscrowState storage e = _load(escrowId, p, Status.Active);
        _onlyCaller(p.arbiter);
        if (providerBps > BPS) revert EscrowInvalidSplit(providerBps);
        uint256 endsAt = _disputedSince(escrowId, p, milestone) + p.terms.arbitrationPeriod;
        if (block.timestamp > endsAt) revert EscrowWindowClosed(endsAt, block.timestamp);

        _settle(e, escrowId, p, milestone, providerBps, HOW_DISPUTE, 0, bytes32(0));
    }

    /// @inheritdoc IQualityEscrow
    function settleStaleDispute(uint256 escrowId, EscrowParams calldata p, uint256 milestone) external {
        EscrowState storage e = _load(escrowId, p, Status.Active);
        uint256 endsAt = _disputedSince(escrowId, p, milestone) + p.terms.arbitrationPeriod;
        if (block.timestamp <= endsAt) revert EscrowWindowOpen(endsAt, block.timestamp);

        _settle(e, escrowId, p, milestone, BPS / 2, HOW_STALE_DISPUTE, 0, bytes32(0));
    }

    function _disputedSince(uint256 escrowId, EscrowParams calldata p, uint256 milestone)
        internal
        view
        returns (uint256 since)
    {
        _checkMilestoneIndex(p, milestone);
        MilestoneState state;
        (state, since) = _milestone(escrowId, milestone);
        if (state != MilestoneState.Disputed) revert EscrowInvalidMilestoneState(escrowId, milestone, state);
    }

    /// @inheritdoc IQualityEscrow
    function reclaimExpired(uint256 escrowId, EscrowParams calldata p) external {
        EscrowState storage e = _load(escrowId, p, Status.Active);
        _onlyCaller(p.client);
        uint256 deadline = p.terms.deliveryDeadline;
        if (block.timestamp <= deadline) revert EscrowWindowOpen(deadline, block.timestamp);

        bool any;
        uint256 count = p.milestoneAmounts.length;
        for (uint256 i; i < count; ++i) {
            (MilestoneState state,) = _milestone(escrowId, i);
            if (state == MilestoneState.None) {
                any = true;
                _settle(e, escrowId, p, i, 0, HOW_RECLAIMED, 0, bytes32(0));
            }
        }
        if (!any) revert EscrowNothingToReclaim(escrowId);
    }

    /// @dev Moves the milestone's share of `locked` out: `providerBps` of it to the provider, the rest
    /// to the client. The last unsettled milestone takes all of `locked`, so no dust stays behind.
    function _settle(
        EscrowState storage e,
        uint256 escrowId,
        EscrowParams calldata p,
        uint256 milestone,
        uint256 providerBps,
        uint8 how,
        uint8 rating,
        bytes32 commentHash
    ) internal {
        uint256 amount = p.milestoneAmounts[milestone];
        uint256 locked = e.locked;
        uint256 nominal = e.nominal;
        uint256 base = amount == nominal ? locked : amount * locked / nominal;
        uint256 toProvider = base * providerBps / BPS;
        uint256 toClient = base - toProvider;

        e.locked = uint112(locked - base);
        e.nominal = uint112(nominal - amount);
        e.settledCount += 1;
        _setMilestone(escrowId, milestone, MilestoneState.Settled);
        if (toProvider != 0) credits[p.provider][p.token] += toProvider;
        if (toClient != 0) credits[p.client][p.token] += toClient;
        if (amount == nominal) _closeIfDone(e, escrowId);
        emit MilestoneSettled(escrowId, milestone, how, rating, commentHash, toProvider, toClient);
    }

    /* ------------------------------------------------------------- breaches */

    /// @inheritdoc IQualityEscrow
    function reportBreach(uint256 escrowId, EscrowParams calldata p, uint8 kind, uint32 period, bytes32 evidenceHash)
        external
        returns (uint256 breachId)
    {
        EscrowState storage e = _load(escrowId, p, Status.Active);
        _onlyCaller(p.oracle);
        uint256 kindBps = _kindBps(p, kind);
        BreachBook storage book = _books[escrowId];
        uint256 locked = e.locked;
        uint256 reserve = _reserveFor(p, kindBps, book, locked);

        _markReported(escrowId, kind, period);
        breachId = book.count;
        book.count = uint32(breachId + 1);
        book.reserved += uint112(reserve);
        e.locked = uint112(locked - reserve);
        _breaches[escrowId][breachId] = Breach({
            state: BreachState.Reported,
            kind: kind,
            period: period,
            reportedAt: uint40(block.timestamp),
            challengedAt: 0,
            reserve: uint112(reserve)
        });
        emit BreachReported(escrowId, breachId, kind, period, evidenceHash, reserve);
    }

    /// @dev Sets the (kind, period) bit; a second report for the same pair reverts.
    function _markReported(uint256 escrowId, uint8 kind, uint32 period) internal {
        uint256 word = period >> 6;
        uint256 bit = 1 << ((uint256(kind) << 6) | (period & 63));
        uint256 bits = _reportedBits[escrowId][word];
        if (bits & bit != 0) revert EscrowBreachAlreadyReported(escrowId, kind, period);
        _reportedBits[escrowId][word] = bits | bit;
    }

    function _kindBps(EscrowParams calldata p, uint8 kind) internal pure returns (uint256) {
        if (kind == BREACH_KPI_BELOW_STANDARD) return p.terms.breachRefundBps;
        if (kind == BREACH_CONSECUTIVE_UNDERPERFORMANCE) return p.terms.streakRefundBps;
        if (kind == BREACH_MAJOR_INCIDENT) return p.terms.incidentRefundBps;
        revert EscrowInvalidBreachKind(kind);
    }

    /// @dev `min(kindBps * total, capLeft, locked)`, where the cap counts refunds and open reserves.
    function _reserveFor(EscrowParams calldata p, uint256 kindBps, BreachBook storage book, uint256 locked)
        internal
        view
        returns (uint256 reserve)
    {
        uint256 total = _total(p);
        uint256 cap = p.terms.maxRefundBps * total / BPS;
        uint256 used = uint256(book.refunded) + book.reserved;
        uint256 capLeft = cap > used ? cap - used : 0;
        reserve = kindBps * total / BPS;
        if (reserve > capLeft) reserve = capLeft;
        if (reserve > locked) reserve = locked;
    }

    /// @inheritdoc IQualityEscrow
    function challengeBreach(uint256 escrowId, EscrowParams calldata p, uint256 breachId) external {
        _load(escrowId, p, Status.Active);
        _onlyCaller(p.provider);
        if (p.arbiter == address(0)) revert EscrowNoArbiter(escrowId);
        Breach storage b = _breach(escrowId, breachId, BreachState.Reported);
        uint256 endsAt = uint256(b.reportedAt) + p.terms.challengePeriod;
        if (block.timestamp > endsAt) revert EscrowWindowClosed(endsAt, block.timestamp);

        b.state = BreachState.Challenged;
        b.challengedAt = uint40(block.timestamp);
        emit BreachChallenged(escrowId, breachId);
    }

    /// @inheritdoc IQualityEscrow
    function resolveBreach(uint256 escrowId, EscrowParams calldata p, uint256 breachId, bool upheld) external {
        EscrowState storage e = _load(escrowId, p, Status.Active);
        _onlyCaller(p.arbiter);
        Breach storage b = _breach(escrowId, breachId, BreachState.Challenged);
        uint256 endsAt = uint256(b.challengedAt) + p.terms.arbitrationPeriod;
        if (block.timestamp > endsAt) revert EscrowWindowClosed(endsAt, block.timestamp);

        uint256 reserve = b.reserve;
        if (upheld) _settleBreach(e, b, escrowId, p, breachId, BreachState.Upheld, OUTCOME_UPHELD, reserve, 0);
        else _settleBreach(e, b, escrowId, p, breachId, BreachState.Rejected, OUTCOME_REJECTED, 0, reserve);
    }

    /// @inheritdoc IQualityEscrow
    function settleStaleBreach(uint256 escrowId, EscrowParams calldata p, uint256 breachId) external {
        EscrowState storage e = _load(escrowId, p, Status.Active);
        Breach storage b = _breach(escrowId, breachId, BreachState.Challenged);
        uint256 endsAt = uint256(b.challengedAt) + p.terms.arbitrationPeriod;
        if (block.timestamp <= endsAt) revert EscrowWindowOpen(endsAt, block.timestamp);

        uint256 reserve = b.reserve;
        uint256 toClient = reserve / 2;
        _settleBreach(
            e, b, escrowId, p, breachId, BreachState.StaleSplit, OUTCOME_STALE_SPLIT, toClient, reserve - toClient
        );
    }

    /// @inheritdoc IQualityEscrow
    function finalizeBreach(uint256 escrowId, EscrowParams calldata p, uint256 breachId) external {
        EscrowState storage e = _load(escrowId, p, Status.Active);
        Breach storage b = _breach(escrowId, breachId, BreachState.Reported);
        uint256 endsAt = uint256(b.reportedAt) + p.terms.challengePeriod;
        if (block.timestamp <= endsAt) revert EscrowWindowOpen(endsAt, block.timestamp);

        _settleBreach(e, b, escrowId, p, breachId, BreachState.Finalized, OUTCOME_FINALIZED, b.reserve, 0);
    }

    /// @dev Ends a report: `refund` is credited to the client; `release` goes back to `locked` while a
    /// milestone is unsettled, otherwise to the provider (there is nothing left for it to fund).
    function _settleBreach(
        EscrowState storage e,
        Breach storage b,
        uint256 escrowId,
        EscrowParams calldata p,
        uint256 breachId,
        BreachState outcome,
        uint8 outcomeCode,
        uint256 refund,
        uint256 release
    ) internal {
        BreachBook storage book = _books[escrowId];
        uint256 toProvider;
        b.state = outcome;
        book.reserved -= uint112(refund + release);
        if (refund != 0) {
            book.refunded += uint112(refund);
            credits[p.client][p.token] += refund;
        }
        if (release != 0) {
            if (e.nominal != 0) {
                e.locked += uint112(release);
            } else {
                toProvider = release;
                credits[p.provider][p.token] += release;
            }
        }
        _closeIfDone(e, escrowId);
        emit BreachSettled(escrowId, breachId, outcomeCode, refund, toProvider);
    }

    /* ------------------------------------------------------------- withdraw */

    /// @inheritdoc IQualityEscrow
    function withdraw(address token) external nonReentrant {
        uint256 amount = credits[msg.sender][token];
        if (amount == 0) revert EscrowNothingToWithdraw(msg.sender, token);

        credits[msg.sender][token] = 0;
        emit Withdrawn(msg.sender, token, amount);

        if (token == address(0)) {
            (bool ok,) = msg.sender.call{value: amount}("");
            if (!ok) revert EscrowEthTransferFailed(msg.sender, amount);
        } else {
            IERC20(token).safeTransfer(msg.sender, amount);
        }
    }

    /* ---------------------------------------------------------------- views */

    /// @inheritdoc IQualityEscrow
    function hashParams(EscrowParams calldata p) external pure returns (bytes32) {
        return keccak256(abi.encode(p));
    }

    /// @inheritdoc IQualityEscrow
    function getEscrow(uint256 escrowId) external view returns (EscrowView memory v) {
        EscrowState memory e = _escrows[escrowId];
        BreachBook memory book = _books[escrowId];
        v = EscrowView({
            status: e.status,
            locked: e.locked,
            nominal: e.nominal,
            reserved: book.reserved,
            refunded: book.refunded,
            milestoneCount: e.milestoneCount,
            settledCount: e.settledCount,
            breachCount: book.count
        });
    }

    /// @inheritdoc IQualityEscrow
    function getMilestone(uint256 escrowId, uint256 milestone)
        external
        view
        returns (MilestoneState state, uint64 since)
    {
        uint256 s;
        (state, s) = _milestone(escrowId, milestone);
        since = uint64(s);
    }

    /// @inheritdoc IQualityEscrow
    function getBreach(uint256 escrowId, uint256 breachId) external view returns (BreachView memory) {
        Breach memory b = _breaches[escrowId][breachId];
        return BreachView(b.state, b.kind, b.period, b.reportedAt, b.challengedAt, b.reserve);
    }

    /// @inheritdoc IQualityEscrow
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @inheritdoc IQualityEscrow
    function confirmationDigest(uint256 escrowId, uint256 milestone, uint8 rating, bytes32 commentHash, uint256 deadline)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(
            keccak256(abi.encode(CONFIRMATION_TYPEHASH, escrowId, milestone, rating, commentHash, deadline))
        );
    }

    /* ------------------------------------------------------------- internal */

    /// @dev Checks that `p` is the escrow's committed parameters and that it has `required` status.
    function _load(uint256 escrowId, EscrowParams calldata p, Status required)
        internal
        view
        returns (EscrowState storage e)
    {
        bytes32 stored = paramsHash[escrowId];
        if (stored == bytes32(0)) revert EscrowNotFound(escrowId);
        bytes32 actual = _hashCalldata(p);
        if (actual != stored) revert EscrowParamsMismatch(escrowId, stored, actual);
        e = _escrows[escrowId];
        if (e.status != required) revert EscrowInvalidStatus(escrowId, e.status, required);
    }

    /// @dev Equals `keccak256(abi.encode(p))` for the canonical encoding every ABI encoder produces,
    /// hashed straight from calldata instead of re-encoded in memory (about 2,400 gas less). Any other
    /// layout, dirty padding included, hashes differently and so cannot match a commitment, which is
    /// always made over the canonical encoding; a non-canonical array offset takes the slow path.
    function _hashCalldata(EscrowParams calldata p) internal pure returns (bytes32 h) {
        uint256 arrayOffset;
        uint256 length;
        assembly ("memory-safe") {
            arrayOffset := calldataload(add(p, PARAMS_ARRAY_OFFSET_POS))
            length := calldataload(add(p, PARAMS_HEAD_SIZE))
        }
        if (arrayOffset != PARAMS_HEAD_SIZE || length > MAX_MILESTONES) return keccak256(abi.encode(p));
        assembly ("memory-safe") {
            // abi.encode of one dynamic tuple: its offset (0x20), then the tuple itself.
            let size := add(PARAMS_HEAD_SIZE, shl(5, add(length, 1)))
            let ptr := mload(0x40)
            mstore(ptr, 0x20)
            calldatacopy(add(ptr, 0x20), p, size)
            h := keccak256(ptr, add(size, 0x20))
        }
    }

    function _onlyCaller(address required) internal view {
        if (msg.sender != required) revert EscrowUnauthorizedCaller(msg.sender, required);
    }

    function _checkMilestoneIndex(EscrowParams calldata p, uint256 milestone) internal pure {
        uint256 count = p.milestoneAmounts.length;
        if (milestone >= count) revert EscrowMilestoneOutOfRange(milestone, count);
    }

    function _total(EscrowParams calldata p) internal pure returns (uint256 total) {
        uint256 count = p.milestoneAmounts.length;
        for (uint256 i; i < count; ++i) {
            total += p.milestoneAmounts[i];
        }
    }

    function _milestone(uint256 escrowId, uint256 milestone)
        internal
        view
        returns (MilestoneState state, uint256 since)
    {
        uint256 packed = _milestoneWords[escrowId][milestone >> 2] >> ((milestone & 3) << 6);
        state = MilestoneState(uint8(packed));
        since = uint56(packed >> 8);
    }

    function _setMilestone(uint256 escrowId, uint256 milestone, MilestoneState state) internal {
        uint256 shift = (milestone & 3) << 6;
        mapping(uint256 => uint256) storage words = _milestoneWords[escrowId];
        uint256 word = words[milestone >> 2] & ~(uint256(type(uint64).max) << shift);
        words[milestone >> 2] = word | ((block.timestamp << 8 | uint256(state)) << shift);
    }

    function _breach(uint256 escrowId, uint256 breachId, BreachState required)
        internal
        view
        returns (Breach storage b)
    {
        b = _breaches[escrowId][breachId];
        BreachState state = b.state;
        if (state == BreachState.None) revert EscrowBreachNotFound(escrowId, breachId);
        if (state != required) revert EscrowInvalidBreachState(escrowId, breachId, state);
    }

    /// @dev Closed once nothing is unsettled and nothing reserved; after that nothing changes.
    function _closeIfDone(EscrowState storage e, uint256 escrowId) internal {
        if (e.nominal == 0 && _books[escrowId].reserved == 0) e.status = Status.Closed;
    }
}
