"""Measurement ingestion benchmark: full batches (10,000 samples) through
`backend.oracle.measurements`
(`parse_samples` + `ingest`: checks, deduplication against stored samples, bulk insert, commit),
on SQLite and on a throwaway PostgreSQL database. Prints samples per second for new samples and for
a batch posted again (all duplicates). A benchmark, not a test.

    .venv/bin/python scripts/bench_measurements.py [--db sqlite|postgresql|both] [--batches 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text

from backend.canonical import terms_hash
from backend.db.models import EscrowRow
from backend.db.session import make_engine, migrate, session_factory
from backend.oracle.measurements import MAX_BATCH, ingest, parse_samples
from backend.oracle.terms import parse_terms

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DOC = {"version": 1, "title": "bench", "period_seconds": 86400,
       "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9},
                {"id": "p95_latency_ms", "aggregate": "p95", "op": "<=", "threshold": 300}]}
ADDRESS = "0x" + "11" * 20


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"qe_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(kind: str, batches: int) -> None:
    with database(kind) as url:
        engine = make_engine(url)
        migrate(engine)
        sessions = session_factory(engine)
        start = int(time.time()) - batches * MAX_BATCH
        with sessions() as session, session.begin():
            session.add(EscrowRow(
                chain_id=1, escrow_id=1, client=ADDRESS, provider=ADDRESS, token=ADDRESS,
                oracle=ADDRESS, arbiter=ADDRESS, terms_hash="0x" + terms_hash(DOC).hex(),
                params={}, status="active", total="0", locked="0", reserved="0", refunded="0",
                created_block=1, created_tx="0x" + "00" * 32, created_at=start,
                accepted_at=start, updated_block=1,
            ))
        terms = parse_terms(DOC)
        raw = [
            [{"kpi": "uptime_pct" if i % 2 else "p95_latency_ms", "value": 99.0 + i % 7,
              "observed_at": start + b * MAX_BATCH + i} for i in range(MAX_BATCH)]
            for b in range(batches)
        ]
        for label, repeat in (("new", raw), ("duplicates", raw[: max(1, batches // 4)])):
            began = time.perf_counter()
            for items in repeat:
                with sessions() as session, session.begin():
                    escrow = session.get(EscrowRow, (1, 1))
                    assert escrow is not None
                    ingest(session, escrow, terms, parse_samples(items), int(time.time()))
            elapsed = time.perf_counter() - began
            count = len(repeat) * MAX_BATCH
            print(f"{kind:10s} {label:10s} {count:>8,} samples in {elapsed:6.2f} s: "
                  f"{count / elapsed:>9,.0f} samples/s ({elapsed / len(repeat) * 1000:.0f} ms "
                  "per 10,000-sample batch)")
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    for kind in kinds:
        run(kind, args.batches)


if __name__ == "__main__":
    main()
