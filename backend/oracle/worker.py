"""The oracle worker: queues the evaluation's findings, sends them, follows them up.

It must be the only process sending from the oracle account: `run_forever` holds the same
ownership lock as the confirmation relayer (backend/outbox/owner.py), keyed by the oracle's
account, for its whole life."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from eth_account.signers.local import LocalAccount
from sqlalchemy.orm import Session

from backend.oracle.outbox import Finding, enqueue_reports
from backend.oracle.submitter import Hook, SubmitReport, Submitter
from backend.outbox.owner import relayer_ownership
from backend.services import Services

logger = logging.getLogger(__name__)

Evaluate = Callable[[Session, int], Sequence[Finding]]


class Oracle:
    def __init__(
        self,
        services: Services,
        account: LocalAccount,
        evaluate: Evaluate | None = None,
        *,
        hook: Hook | None = None,
        confirmations: int | None = None,
    ) -> None:
        self.services = services
        self.account = account
        self.evaluate = evaluate
        self.submitter = Submitter(services, account, hook=hook, confirmations=confirmations)

    def enqueue(self) -> int:
        """Queues the evaluation's findings (in one database transaction)."""
        if self.evaluate is None:
            return 0
        with self.services.sessions() as session, session.begin():
            findings = list(self.evaluate(session, self.services.chain_id))
            return enqueue_reports(
                session, self.services.chain_id, findings, self.account.address,
                int(time.time()),
            )

    def run_once(self) -> SubmitReport:
        enqueued = self.enqueue()
        report = self.submitter.run_once()
        report.enqueued = enqueued
        return report

    def run_until_idle(self, *, max_passes: int = 20) -> SubmitReport:
        total = SubmitReport()
        for _ in range(max_passes):
            report = self.run_once()
            total.add(report)
            if not report.busy:
                break
        return total

    def run_forever(self, stop: threading.Event, *, interval: float = 5.0) -> None:
        """The worker loop; errors of one pass (node or database away) are logged and retried."""
        with relayer_ownership(self.services, self.account.address):
            logger.info("oracle %s started on chain %s", self.account.address,
                        self.services.chain_id)
            while not stop.is_set():
                try:
                    report = self.run_once()
                except Exception:
                    logger.exception("oracle pass failed; retrying")
                    report = SubmitReport()
                if not report.busy:
                    stop.wait(interval)
