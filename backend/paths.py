"""Where things live in the repository: the one place that knows the layout.

Every path is absolute and derived from this file's location (``backend/paths.py``), so it
works from any working directory as long as the package is used from its checkout (an
editable install, as the project's setup does).
"""

from __future__ import annotations

from pathlib import Path

#: The repository root (the folder holding ``pyproject.toml``).
REPO_ROOT: Path = Path(__file__).resolve().parents[1]

#: Solidity sources: ``contracts_sol/*.sol``, ``interfaces/`` and ``test/`` below it.
CONTRACTS_DIR: Path = REPO_ROOT / "contracts_sol"

#: Committed compiler artifacts, one ``<ContractName>.json`` each plus ``manifest.json``.
BUILD_DIR: Path = CONTRACTS_DIR / "build"

#: The Node side: Hardhat 2 local network, npm ``solc`` (solc-js), OpenZeppelin Contracts.
HARDHAT_DIR: Path = REPO_ROOT / "hardhat_local"

#: ``node_modules`` installed by ``npm ci`` in :data:`HARDHAT_DIR`.
NODE_MODULES_DIR: Path = HARDHAT_DIR / "node_modules"

#: The executable that makes solc-js behave like ``solc --standard-json`` / ``solc --version``.
SOLCJS_WRAPPER: Path = HARDHAT_DIR / "solcjs-wrapper"

#: Hardhat's CLI entry point (what ``npx hardhat`` runs).
HARDHAT_CLI: Path = NODE_MODULES_DIR / "hardhat" / "internal" / "cli" / "bootstrap.js"
