// SPDX-License-Identifier: MIT
pragma solidity >=0.8.4;

/// @title ConstantsLib
/// @notice The numbers of the Quality Escrow interface, named. Integrators may import this file
/// beside `interfaces/IQualityEscrow.sol`; the service mirrors them in `backend/chain/types.py`
/// (`BreachKind`, `BreachOutcome`, `SettledHow`, `BPS`, `MAX_MILESTONES`, `MAX_TOTAL`).

/* ------------------------------------------------------------------ limits */

/// @dev Basis points in a whole: 10 000 bps = 100 %.
uint256 constant BPS = 10_000;

/// @dev Most milestones an escrow may have.
uint256 constant MAX_MILESTONES = 64;

/// @dev The total of an escrow's milestones must stay below this (amounts are stored in 112 bits).
uint256 constant MAX_TOTAL = 2 ** 112;

/// @dev Ratings run from 1 to `MAX_RATING`; `releaseAfterTimeout` settles at this rating.
uint8 constant MAX_RATING = 5;

/* ---------------------------------------------------- breach kinds (`kind`) */

/// @dev Kind 1: a KPI below standard in one period; refunds `terms.breachRefundBps`.
uint8 constant BREACH_KPI_BELOW_STANDARD = 1;

/// @dev Kind 2: underperformance in consecutive periods; refunds `terms.streakRefundBps`.
uint8 constant BREACH_CONSECUTIVE_UNDERPERFORMANCE = 2;

/// @dev Kind 3: a major incident (outage, errors); refunds `terms.incidentRefundBps`.
uint8 constant BREACH_MAJOR_INCIDENT = 3;

/* ------------------------------------ breach outcomes (`BreachSettled.outcome`) */

/// @dev The challenge period passed unchallenged; the reserve is refunded to the client.
uint8 constant OUTCOME_FINALIZED = 1;

/// @dev The arbiter upheld a challenged report; the reserve is refunded to the client.
uint8 constant OUTCOME_UPHELD = 2;

/// @dev The arbiter rejected a challenged report; the reserve is released.
uint8 constant OUTCOME_REJECTED = 3;

/// @dev The arbiter did not decide in time; half the reserve refunded (rounded down), half released.
uint8 constant OUTCOME_STALE_SPLIT = 4;

/* ------------------------------- how a milestone settled (`MilestoneSettled.how`) */

/// @dev `confirm` by the client.
uint8 constant HOW_CONFIRMED = 1;

/// @dev `confirmWithSig`: the client's EIP-712 signature, relayed.
uint8 constant HOW_SIGNED = 2;

/// @dev `releaseAfterTimeout`: the review window passed undisputed (rating 5).
uint8 constant HOW_TIMEOUT = 3;

/// @dev `resolveDispute` by the arbiter (rating 0).
uint8 constant HOW_DISPUTE = 4;

/// @dev `settleStaleDispute`: 50/50 after the arbitration period (rating 0).
uint8 constant HOW_STALE_DISPUTE = 5;

/// @dev `reclaimExpired`: never delivered by the deadline, wholly to the client (rating 0).
uint8 constant HOW_RECLAIMED = 6;

/* --------------------------------------------- `EscrowZeroPeriod.which` */

/// @dev `terms.reviewPeriod` is zero.
uint8 constant PERIOD_REVIEW = 0;

/// @dev `terms.challengePeriod` is zero.
uint8 constant PERIOD_CHALLENGE = 1;

/// @dev `terms.arbitrationPeriod` is zero while the escrow has an arbiter.
uint8 constant PERIOD_ARBITRATION = 2;
