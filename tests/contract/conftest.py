"""What the contract tests share: the books check that runs after every scenario of a module
that asks for it (`pytestmark = pytest.mark.usefixtures("books_balance")`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.support_breach import check_all_books
from tests.support import EscrowEnv


@pytest.fixture
def books_balance(env: EscrowEnv) -> Iterator[None]:
    """After the test, each escrow's credits == total - locked - reserved, per token."""
    yield
    check_all_books(env)
