"""What `escrow audit` runs: the verifier over the configured chain and (optionally) database."""

from __future__ import annotations

from collections.abc import Callable

from backend.audit.model import AuditReport
from backend.audit.verify import audit_all
from backend.chain.connect import connect
from backend.chain.deploy import read_deployment
from backend.chain.errors import from_node
from backend.config import Settings
from backend.services import build_services


def run_audit(
    settings: Settings,
    escrow_id: int | None,
    api_url: str | None,
    use_database: bool,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """The audit report; `NotFoundError` for an escrow without events, `NodeUnavailable` when
    the node does not answer (the command line prints either as one line, exit 2)."""
    return from_node(
        "audit", lambda: _run(settings, escrow_id, api_url, use_database, progress)
    )


def _run(
    settings: Settings,
    escrow_id: int | None,
    api_url: str | None,
    use_database: bool,
    progress: Callable[[int, int], None] | None,
) -> AuditReport:
    escrow_ids = None if escrow_id is None else [escrow_id]
    if not use_database:  # the chain alone: no database is opened, let alone created
        w3 = connect(settings.rpc_url)
        address, from_block = settings.contract_address, 0
        if address is None:
            deployment = read_deployment(settings.data_dir, int(w3.eth.chain_id))
            address, from_block = deployment.address, deployment.block
        return audit_all(
            w3, address, from_block=from_block, api_url=api_url,
            data_dir=settings.data_dir, escrow_ids=escrow_ids, progress=progress,
        )
    services = build_services(settings)
    try:
        with services.sessions() as session:
            return audit_all(
                services.w3,
                services.escrow.address,
                from_block=services.deployment_block,
                session=session,
                api_url=api_url,
                data_dir=settings.data_dir,
                escrow_ids=escrow_ids,
                progress=progress,
            )
    finally:
        services.engine.dispose()
