"""Schemathesis over the app's own OpenAPI document: for every operation,
requests generated from the document (valid and invalid) get no 5xx, only status codes the
operation declares, the declared content type, and a body that matches the declared schema.

In process (`from_asgi`, Starlette's test client) on the in-process chain and SQLite, with one
escrow created, so the escrow routes see a real one as well as unknown ids. Bounded and
reproducible: `EXAMPLES` examples per operation, derandomized (the same examples on every run).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from backend.notify import egress
from tests.api.support import Api, api_on
from tests.fake_dns import FakeDns
from tests.support import EscrowEnv

#: generated examples per operation (36 operations)
EXAMPLES = 20
CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def live_api(
    env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Api]:
    """The API on SQLite with one active escrow (id 1); webhook URLs are never looked up in a
    real DNS (`tests/fake_dns.py`)."""
    monkeypatch.setattr(egress, "system_resolve", FakeDns().resolve)
    with api_on(env, f"sqlite:///{tmp_path / 'escrow.db'}", tmp_path) as api:
        env.create_active()
        api.index()
        yield api


def check_operation(operation: Any, mode: GenerationMode, calls: Counter[str]) -> None:
    """`EXAMPLES` derandomized requests of `mode` to `operation`, each validated by `CHECKS`;
    raises the first failure (shrunk by Hypothesis)."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    )
    def run(case: Case[Any]) -> None:
        calls[mode.value] += 1
        case.call_and_validate(checks=CHECKS)

    run()


def test_every_operation_answers_within_its_declared_schema(live_api: Api) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", live_api.app)
    failures: dict[str, str] = {}
    skipped: list[str] = []
    calls: Counter[str] = Counter()
    operations = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself is valid OpenAPI
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                check_operation(operation, mode, calls)
            except Unsatisfiable:  # nothing to generate: no parameter or body can be made invalid
                skipped.append(f"{operation.label} ({mode})")
            except Exception as exc:  # one operation's failure; the others still run
                failures[f"{operation.label} ({mode})"] = str(exc)[:2000]
    elapsed = time.monotonic() - started
    print(f"schemathesis: {operations} operations, {dict(calls)} calls, {len(skipped)} "
          f"operation-modes with nothing to generate, {elapsed:.1f} s")
    assert operations >= 33
    assert not failures, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
