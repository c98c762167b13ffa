"""What `escrow audit` runs: the verifier over the configured chain and (optionally) database."""

from __future__ import annotations

from collections.abc import Callable

from backend.audit.model import AuditReport
from backend.audit.verify import audit_all
from backend.config import Settings
from backend.services import build_services


def run_audit(
    settings: Settings,
    escrow_id: int | None,
    api_url: str | None,
    use_database: bool,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    services = build_services(settings)
    try:
        with services.sessions() as session:
            return audit_all(
                services.w3,
                services.escrow.address,
                from_block=services.deployment_block,
                session=session if use_database else None,
                api_url=api_url,
                data_dir=settings.data_dir,
                escrow_ids=None if escrow_id is None else [escrow_id],
                progress=progress,
            )
    finally:
        services.engine.dispose()
