"""The oracle worker: the submitter (`backend/oracle/submitter.py`) fed by the evaluation. Each
pass first queues the evaluation's findings, then sends and follows them up; `run_forever` is
the one sender loop (`backend/outbox/sender.py`), holding the "oracle" ownership lock of the
oracle's account for its whole life."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from eth_account.signers.local import LocalAccount
from sqlalchemy.orm import Session

from backend.db.models import BreachSubmission
from backend.oracle.outbox import Finding, enqueue_reports
from backend.oracle.submitter import Submitter
from backend.outbox.sender import Hook, SendReport
from backend.services import Services

#: `evaluate(session, chain_id)`: the findings of the stored samples at the chain's time
Evaluate = Callable[[Session, int], Sequence[Finding]]


class Oracle(Submitter):
    """The submitter, with the evaluation's findings queued at the start of every pass."""

    def __init__(
        self,
        services: Services,
        account: LocalAccount,
        evaluate: Evaluate | None = None,
        *,
        hook: Hook[BreachSubmission] | None = None,
        confirmations: int | None = None,
        replace_after_blocks: int | None = None,
        max_fee_per_gas: int | None = None,
    ) -> None:
        super().__init__(
            services, account, hook=hook, confirmations=confirmations,
            replace_after_blocks=replace_after_blocks, max_fee_per_gas=max_fee_per_gas,
        )
        self.evaluate = evaluate

    def enqueue(self) -> int:
        """Queues the evaluation's findings (in one database transaction); how many are new."""
        if self.evaluate is None:
            return 0
        with self.session() as session, session.begin():
            findings = list(self.evaluate(session, self.chain_id))
            return enqueue_reports(session, self.chain_id, findings, self.address,
                                   self.clock.service_time())

    def prepare(self, report: SendReport) -> None:
        report.enqueued += self.enqueue()
        super().prepare(report)
