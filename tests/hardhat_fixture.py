"""pytest plugin: one real Hardhat node per test session (``pytest_plugins``).

The ``hardhat_node`` fixture starts ``hardhat node`` on a free 127.0.0.1 port the first
time a test asks for it, and always stops it at the end of the session. Without
``hardhat_local/node_modules`` (no ``npm ci`` yet) the tests that need it are skipped on a
developer's machine, but fail under CI (env ``CI`` set), where a skip would hide a broken
setup.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from backend.chain.node import HardhatNode, start_hardhat_node
from backend.paths import HARDHAT_CLI, HARDHAT_DIR


def _missing_prerequisite() -> str | None:
    if shutil.which("node") is None:
        return "Node.js (`node`) is not on PATH"
    if not HARDHAT_CLI.is_file():
        return f"Hardhat is not installed: run `npm ci` in {HARDHAT_DIR}"
    return None


@pytest.fixture(scope="session")
def hardhat_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HardhatNode]:
    """A running Hardhat node (chain id 31337, the well-known dev accounts), session-wide."""
    missing = _missing_prerequisite()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the Hardhat node: {missing}", pytrace=False)
        pytest.skip(f"no Hardhat node: {missing}")
    log_path = tmp_path_factory.mktemp("hardhat") / "node.log"
    node = start_hardhat_node(log_path=log_path)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def spare_hardhat_node(
    hardhat_node: HardhatNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HardhatNode]:
    """A second Hardhat node, free to be reset (`hardhat_reset`) by the tests that restart a
    chain; the session's node must keep its deployment."""
    node = start_hardhat_node(log_path=tmp_path_factory.mktemp("spare") / "node.log")
    try:
        yield node
    finally:
        node.stop()
