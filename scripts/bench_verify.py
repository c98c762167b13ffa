#!/usr/bin/env python3
"""Benchmark: confirmation verification per second on one core (target: at least 2,000/s).

Measures the pure CPU part of `POST .../confirmations` (no node, no database): build the review's
canonical JSON and its keccak256 (`commentHash`), the EIP-712 `Confirmation` typed data the API
hands out and its digest, then recover the signer from a canonical (low-s, v 27/28) signature
and compare it with the client. Inputs are pre-signed by distinct keys over distinct messages, so
nothing is served from a cache but the domain separator (one per contract, as in the service).

    .venv/bin/python scripts/bench_verify.py [--count 4000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account
from eth_keys import KeyAPI

from backend.chain.eip712 import Confirmation, recover_signer
from backend.confirmations.reviews import review_document

CHAIN_ID = 31337
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TARGET = 2_000


@dataclass(frozen=True)
class Sample:
    escrow_id: int
    milestone: int
    rating: int
    comment: str
    deadline: int
    client: str
    signature: bytes


def make_samples(count: int, keys: int = 64) -> list[Sample]:
    accounts = [Account.create() for _ in range(keys)]
    samples = []
    for i in range(count):
        account = accounts[i % keys]
        comment = f"milestone {i} delivered as agreed; rating {(i % 5) + 1}" if i % 2 else ""
        review = review_document(comment, [])
        confirmation = Confirmation(i + 1, i % 8, (i % 5) + 1, review.comment_hash, 2_000_000_000)
        digest = confirmation.digest(CHAIN_ID, CONTRACT)
        signature = bytes(account.unsafe_sign_hash(digest).signature)
        samples.append(
            Sample(i + 1, i % 8, (i % 5) + 1, comment, 2_000_000_000, account.address, signature)
        )
    return samples


def build(sample: Sample) -> bytes:
    """The typed-data half: review hash, typed data for the wallet, digest."""
    review = review_document(sample.comment, [])
    confirmation = Confirmation(
        sample.escrow_id, sample.milestone, sample.rating, review.comment_hash, sample.deadline
    )
    confirmation.typed_data(CHAIN_ID, CONTRACT)
    return confirmation.digest(CHAIN_ID, CONTRACT)


def verify(sample: Sample) -> None:
    """Both halves, as the API runs them for one confirmation."""
    digest = build(sample)
    if recover_signer(digest, sample.signature) != sample.client:
        raise AssertionError("recovered the wrong signer")


def rate(fn: Callable[[Sample], object], samples: list[Sample], rounds: int) -> list[float]:
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for sample in samples:
            fn(sample)
        results.append(len(samples) / (time.perf_counter() - start))
    return results


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to CPU {core}"
    return "not pinned (no sched_setaffinity)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=4_000, help="confirmations per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    pinned = pin_one_core()
    samples = make_samples(args.count)
    digests = [build(s) for s in samples]
    pairs = list(zip(digests, samples, strict=True))
    for sample in samples[:50]:  # warm-up and a correctness check
        verify(sample)

    full = rate(verify, samples, args.rounds)
    typed = rate(build, samples, args.rounds)
    recovery = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for digest, sample in pairs:
            recover_signer(digest, sample.signature)
        recovery.append(len(pairs) / (time.perf_counter() - start))

    report = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "ecc_backend": type(KeyAPI().backend).__name__,
        "core": pinned,
        "count": args.count,
        "rounds": args.rounds,
        "verifications_per_s": {"median": statistics.median(full), "best": max(full)},
        "typed_data_build_per_s": {"median": statistics.median(typed), "best": max(typed)},
        "signer_recovery_per_s": {"median": statistics.median(recovery), "best": max(recovery)},
        "target_per_s": TARGET,
        "met": statistics.median(full) >= TARGET,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"confirmation verification on one core ({pinned}; {report['ecc_backend']}, "
          f"Python {report['python']}), {args.count} confirmations x {args.rounds} rounds")
    for label, key in (
        ("typed data + signer recovery", "verifications_per_s"),
        ("  typed data build alone", "typed_data_build_per_s"),
        ("  signer recovery alone", "signer_recovery_per_s"),
    ):
        values = report[key]
        assert isinstance(values, dict)
        print(f"{label:32} median {values['median']:9,.0f}/s   best {values['best']:9,.0f}/s")
    verdict = "met" if report["met"] else "NOT met"
    print(f"target {TARGET:,}/s: {verdict}")


if __name__ == "__main__":
    main()
