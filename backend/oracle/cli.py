"""The operator's side of measurements, as plain functions the `escrow` CLI wraps:
`escrow tokens issue ESCROW_ID`, `escrow tokens revoke (ESCROW_ID | --token T)` and
`escrow measurements import --escrow ID FILE.csv` (columns kpi,value,observed_at).

Each takes the settings (building the services: node and database) or ready `services`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from backend.config import Settings
from backend.errors import MalformedInputError, TooLargeError
from backend.oracle.measurements import (
    MAX_BATCH,
    SAMPLE_FIELDS,
    escrow_terms,
    find_escrow,
    ingest,
    issue_token,
    parse_samples,
    revoke_tokens,
)
from backend.services import Services, build_services

#: a CSV file of a full batch (10,000 rows) is far smaller
MAX_CSV_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ImportResult:
    escrow_id: int
    accepted: int
    duplicates: int


@contextmanager
def _services(settings: Settings, services: Services | None) -> Iterator[Services]:
    if services is not None:
        yield services
        return
    built = build_services(settings)
    try:
        yield built
    finally:
        built.engine.dispose()


def issue_token_command(
    settings: Settings, escrow_id: int, *, label: str | None = None,
    services: Services | None = None,
) -> str:
    """A new token for the escrow (to print once: only its sha256 is stored)."""
    with _services(settings, services) as s, s.sessions() as session, session.begin():
        return issue_token(session, s.chain_id, escrow_id, s.clock.service_time(), label)


def revoke_command(
    settings: Settings, *, escrow_id: int | None = None, token: str | None = None,
    services: Services | None = None,
) -> int:
    """Revokes every token of `escrow_id`, or the one `token`; returns how many were live."""
    with _services(settings, services) as s, s.sessions() as session, session.begin():
        return revoke_tokens(session, s.chain_id, s.clock.service_time(), escrow_id=escrow_id,
                             token=token)


def read_samples_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header holding kpi, value and observed_at (other columns
    are ignored); 400 if the header lacks one, 413 over `MAX_BATCH` rows."""
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise TooLargeError(f"CSV file {path}", size, MAX_CSV_BYTES)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [f for f in SAMPLE_FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise MalformedInputError(
                f"CSV file {path}", f"the header lacks {', '.join(missing)}"
            )
        rows: list[dict[str, str]] = []
        for row in reader:
            if not any((value or "").strip() for value in row.values()):
                continue  # a blank line
            rows.append({f: row[f] for f in SAMPLE_FIELDS})
            if len(rows) > MAX_BATCH:
                break  # parse_samples refuses the batch as too large
    return rows


def import_csv(
    settings: Settings, escrow_id: int, path: Path, *, services: Services | None = None
) -> ImportResult:
    """Imports a CSV file of samples with the checks of the API, all or nothing. Errors name
    the sample by its index (0 = the first line after the header)."""
    rows = read_samples_csv(path)
    with _services(settings, services) as s, s.sessions() as session, session.begin():
        escrow = find_escrow(session, s.chain_id, escrow_id)
        samples = parse_samples(rows)
        result = ingest(session, escrow, escrow_terms(session, escrow), samples,
                        s.clock.now_or_service_time())
    return ImportResult(escrow_id, result.accepted, result.duplicates)
