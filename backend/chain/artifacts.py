"""Read the committed compiler artifacts (``contracts_sol/build/<ContractName>.json``).

Artifacts are written by :mod:`backend.chain.compiler` (``escrow compile``). Loading is
cached per (name, folder): call :func:`clear_artifact_cache` after recompiling in-process.
The returned objects are shared; treat their ``abi`` lists as read-only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from backend.errors import QualityEscrowError
from backend.paths import BUILD_DIR


class ArtifactMissing(QualityEscrowError, FileNotFoundError):
    """The artifact file does not exist (the contracts were never compiled)."""


class ArtifactInvalidError(QualityEscrowError, ValueError):
    """The artifact file exists but is not a usable compiler artifact."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # creation code, "0x..." ("0x" for interfaces and abstract contracts)
    deployed_bytecode: str  # runtime code, "0x..."
    compiler_version: str  # "0.8.28+commit.7893614a"
    sources_hash: str
    source_name: str = ""  # "contracts_sol/QualityEscrow.sol"
    method_identifiers: dict[str, str] = field(default_factory=dict)  # signature -> selector
    #: (start, length) of every immutable the constructor writes into the runtime code
    immutable_ranges: tuple[tuple[int, int], ...] = ()

    @property
    def is_deployable(self) -> bool:
        return len(self.bytecode) > 2


def artifact_path(name: str, build_dir: Path | None = None) -> Path:
    return (build_dir or BUILD_DIR) / f"{name}.json"


@lru_cache(maxsize=64)
def load_artifact(name: str, build_dir: Path | None = None) -> Artifact:
    """The artifact of contract ``name`` from ``build_dir`` (default ``contracts_sol/build``)."""
    path = artifact_path(name, build_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactMissing(
            f"no compiled artifact for {name}: {path} does not exist; run `escrow compile` "
            "(or `python -m backend.chain.compiler`) to build contracts_sol/"
        ) from None
    try:
        data = json.loads(text)
        return Artifact(
            name=str(data["contractName"]),
            abi=list(data["abi"]),
            bytecode=str(data["bytecode"]),
            deployed_bytecode=str(data["deployedBytecode"]),
            compiler_version=str(data["compiler"]["version"]),
            sources_hash=str(data["sourcesHash"]),
            source_name=str(data.get("sourceName", "")),
            method_identifiers=dict(data.get("methodIdentifiers", {})),
            immutable_ranges=tuple(
                sorted(
                    (int(ref["start"]), int(ref["length"]))
                    for refs in data.get("deployedImmutableReferences", {}).values()
                    for ref in refs
                )
            ),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactInvalidError(
            f"{path} is not a valid artifact ({exc!r}); run `escrow compile` to rebuild it"
        ) from exc


def clear_artifact_cache() -> None:
    load_artifact.cache_clear()
