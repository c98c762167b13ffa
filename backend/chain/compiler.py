"""Compile ``contracts_sol/`` with solc 0.8.28 and write the committed artifacts.

The compiler is resolved in a fixed order and the choice is always reported
(see :func:`resolve_solc`):

1. ``ESCROW_SOLC``: a path to a solc binary (or anything that behaves like one);
2. solc 0.8.28 installed by py-solc-x (``~/.solcx`` or ``SOLCX_BINARY_PATH``);
3. the npm ``solc`` package (solc-js) pinned in ``hardhat_local/``, through
   ``hardhat_local/solcjs-wrapper``, which behaves like ``solc --standard-json`` and
   ``solc --version``.

Same version and same settings give the same bytecode whichever one is used.

Every source goes into the standard JSON input with its content: the ``.sol`` files under
``contracts_sol/`` and, followed import by import, every file they pull in from
``@openzeppelin/contracts`` (``hardhat_local/node_modules``). The compiler therefore never
reads the file system and no absolute path reaches the output. Source unit names are
relative to the repository root (``contracts_sol/QualityEscrow.sol``) or the npm package
path (``@openzeppelin/contracts/utils/cryptography/EIP712.sol``).

Artifacts (``contracts_sol/build/<ContractName>.json`` and ``manifest.json``) are
deterministic: sorted keys, two-space indent, a trailing newline, no paths, no timestamps.

Run ``python -m backend.chain.compiler`` to compile, ``... --check`` to verify that the
committed artifacts match a fresh compile.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import solcx
from packaging.version import Version
from solcx.exceptions import SolcError, SolcNotInstalled
from solcx.install import get_executable

from backend.errors import QualityEscrowError
from backend.paths import BUILD_DIR, CONTRACTS_DIR, HARDHAT_DIR, NODE_MODULES_DIR, SOLCJS_WRAPPER

logger = logging.getLogger(__name__)

#: The one compiler version the project uses.
SOLC_VERSION: Final = "0.8.28"

#: Compiler settings passed verbatim to solc (and recorded in every artifact).
SETTINGS: Final[dict[str, Any]] = {
    "evmVersion": "cancun",
    # The IR pipeline merges the writes to QualityEscrow's packed slots; the legacy one cost
    # about 2,400 gas more per creation and missed two of the gas targets in
    # docs/performance.md (section Gas).
    "viaIR": True,
    "optimizer": {"enabled": True, "runs": 200},
    "outputSelection": {
        "*": {
            "*": [
                "abi",
                "evm.bytecode.object",
                "evm.deployedBytecode.object",
                "evm.deployedBytecode.immutableReferences",
                "evm.methodIdentifiers",
                "metadata",
            ]
        }
    },
}

#: The manifest's file name inside the build folder.
MANIFEST_NAME: Final = "manifest.json"

SolcSource = Literal["ESCROW_SOLC", "py-solc-x", "solc-js"]


class CompilerError(QualityEscrowError):
    """Base class: the contracts could not be compiled."""


class SolcNotFoundError(CompilerError):
    """No usable solc 0.8.28 was found (or ``ESCROW_SOLC`` points to an unusable one)."""


class SourceResolutionError(CompilerError):
    """A Solidity import could not be resolved to a file."""


class CompilationFailedError(CompilerError):
    """solc reported errors; ``errors`` holds solc's error objects."""

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors: list[Mapping[str, Any]] = list(errors)


@dataclass(frozen=True)
class SolcChoice:
    """The compiler that was resolved, and where it came from."""

    path: Path
    version: str  # full, without the platform suffix: "0.8.28+commit.7893614a"
    source: SolcSource

    def describe(self) -> str:
        return f"solc {self.version} from {self.source} ({self.path})"


@dataclass(frozen=True)
class CompileResult:
    """What :func:`compile_contracts` produced."""

    choice: SolcChoice
    sources_hash: str
    #: file name in the build folder -> its exact text (artifacts and ``manifest.json``)
    files: dict[str, str]
    #: contract name -> artifact object (as written to ``<name>.json``)
    artifacts: dict[str, dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: file names written (changed or new) and removed, when the result was written
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- compiler


def _version_of(binary: Path) -> str:
    try:
        full = solcx.wrapper.get_solc_version(binary, with_commit_hash=True)
    except (OSError, SolcError, ValueError) as exc:  # not runnable, or no version printed
        raise SolcNotFoundError(f"could not run {binary} --version: {exc}") from exc
    return str(full)


def _require_version(binary: Path, version: str, source: SolcSource) -> None:
    if Version(version).base_version != SOLC_VERSION:
        raise SolcNotFoundError(
            f"{source}: {binary} is solc {version}, but this project needs solc {SOLC_VERSION}"
        )


def _from_env(value: str) -> SolcChoice:
    candidate = Path(value).expanduser()
    if os.sep not in value and not candidate.exists():
        found = shutil.which(value)  # a bare command name, such as "solc"
        candidate = Path(found) if found else candidate
    if not candidate.is_file():
        raise SolcNotFoundError(
            f"ESCROW_SOLC={value!r}: no such file. Point ESCROW_SOLC at a solc {SOLC_VERSION} "
            "binary, or unset it to use py-solc-x's solc or the solc-js wrapper "
            f"({SOLCJS_WRAPPER})"
        )
    if not os.access(candidate, os.X_OK):
        raise SolcNotFoundError(f"ESCROW_SOLC={value!r}: {candidate} is not executable")
    path = candidate.resolve()
    version = _version_of(path)
    _require_version(path, version, "ESCROW_SOLC")
    return SolcChoice(path=path, version=version, source="ESCROW_SOLC")


def _from_solcx() -> SolcChoice | None:
    try:
        installed = solcx.get_installed_solc_versions()
    except OSError:  # e.g. no writable home for ~/.solcx
        return None
    if Version(SOLC_VERSION) not in installed:
        return None
    try:
        path = Path(get_executable(SOLC_VERSION))
    except SolcNotInstalled:
        return None
    version = _version_of(path)
    _require_version(path, version, "py-solc-x")
    return SolcChoice(path=path, version=version, source="py-solc-x")


def _from_solcjs() -> SolcChoice:
    soljson = NODE_MODULES_DIR / "solc" / "soljson.js"
    if shutil.which("node") is None:
        raise SolcNotFoundError(
            "no solc found: ESCROW_SOLC is not set, py-solc-x has no solc "
            f"{SOLC_VERSION}, and Node.js (`node`) is not on PATH for the solc-js wrapper"
        )
    if not soljson.is_file() or not SOLCJS_WRAPPER.is_file():
        raise SolcNotFoundError(
            "no solc found: ESCROW_SOLC is not set, py-solc-x has no solc "
            f"{SOLC_VERSION}, and the npm solc package is not installed: run `npm ci` in "
            f"{HARDHAT_DIR}"
        )
    version = _version_of(SOLCJS_WRAPPER)
    _require_version(SOLCJS_WRAPPER, version, "solc-js")
    return SolcChoice(path=SOLCJS_WRAPPER, version=version, source="solc-js")


def resolve_solc() -> SolcChoice:
    """Find solc 0.8.28: ``ESCROW_SOLC``, then py-solc-x's install, then solc-js.

    Raises :class:`SolcNotFoundError` with what to do when none is usable. ``ESCROW_SOLC``, when
    set, must work: it is never silently passed over.
    """
    env = os.environ.get("ESCROW_SOLC", "").strip()
    choice = _from_env(env) if env else (_from_solcx() or _from_solcjs())
    logger.info("using %s", choice.describe())
    return choice


# --------------------------------------------------------------------------- sources

# An import is a top-level statement: at the start of the file or after a `;` or `}`.
_IMPORT_RE = re.compile(r"(?:\A|(?<=[;}]))\s*import\b[^;\"']*([\"'])(?P<path>.+?)\1[^;]*;")


def _strip_comments(text: str) -> str:
    """Blank out ``//`` and ``/* */`` comments, leaving string literals alone."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":
            j = i + 1
            while j < n and text[j] != ch and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def find_imports(source: str) -> list[str]:
    """The import paths of a Solidity source, in order (commented-out imports ignored)."""
    return [m.group("path") for m in _IMPORT_RE.finditer(_strip_comments(source))]


def resolve_import_name(importer: str, path: str) -> str:
    """The source unit name an import refers to, as solc computes it."""
    if path.startswith(("./", "../")):
        name = posixpath.normpath(posixpath.join(posixpath.dirname(importer), path))
        if name.startswith("../") or name == "..":
            raise SourceResolutionError(f"{importer}: import {path!r} leaves the source tree")
        return name
    return path


def _locate(name: str, source_root: Path) -> Path | None:
    """The file behind a source unit name: the source tree first, then node_modules."""
    if posixpath.isabs(name) or ".." in name.split("/"):
        return None
    roots = [NODE_MODULES_DIR] if name.startswith("@") else [source_root, NODE_MODULES_DIR]
    for root in roots:
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None


def _read(path: Path) -> str:
    # Bytes as they are on disk (no newline translation): the content is hashed into the
    # bytecode's metadata, so it must be exactly what is committed.
    return path.read_bytes().decode("utf-8")


def _own_source_files(contracts_dir: Path, build_dir: Path) -> list[Path]:
    build = build_dir.resolve()
    files = []
    for path in sorted(contracts_dir.resolve().rglob("*.sol")):
        if build in path.parents or "node_modules" in path.parts:
            continue
        files.append(path)
    return files


def collect_sources(
    contracts_dir: Path = CONTRACTS_DIR, build_dir: Path = BUILD_DIR
) -> tuple[dict[str, str], list[str]]:
    """All sources to compile, and which of them are the project's own.

    Returns ``(sources, own)``: ``sources`` maps every source unit name (own files and,
    recursively, everything they import) to its content; ``own`` lists the names of the
    ``.sol`` files under ``contracts_dir``. Names are relative to ``contracts_dir``'s parent.
    """
    contracts_dir = contracts_dir.resolve()
    source_root = contracts_dir.parent
    own = [
        p.relative_to(source_root).as_posix() for p in _own_source_files(contracts_dir, build_dir)
    ]
    if not own:
        raise CompilerError(f"no Solidity sources (*.sol) found under {contracts_dir}")
    sources: dict[str, str] = {}
    pending: list[tuple[str, Path, str | None]] = [(name, source_root / name, None) for name in own]
    while pending:
        name, path, importer = pending.pop()
        if name in sources:
            continue
        try:
            content = _read(path)
        except (OSError, UnicodeDecodeError) as exc:
            where = f" (imported by {importer})" if importer else ""
            raise SourceResolutionError(f"cannot read {name}{where}: {exc}") from exc
        sources[name] = content
        for imported in find_imports(content):
            target = resolve_import_name(name, imported)
            if target in sources:
                continue
            located = _locate(target, source_root)
            if located is None:
                raise SourceResolutionError(
                    f"{name}: cannot resolve import {imported!r} (as {target!r}); looked in "
                    f"{source_root} and {NODE_MODULES_DIR} (run `npm ci` in {HARDHAT_DIR} "
                    "if @openzeppelin is missing)"
                )
            pending.append((target, located, name))
    return dict(sorted(sources.items())), own


def sources_hash(sources: Mapping[str, str]) -> str:
    """sha256 over the sorted ``(name, content)`` pairs of all input sources.

    Defined as the hex sha256 of the compact JSON array ``[[name, content], ...]`` sorted by
    name (UTF-8, ``ensure_ascii=False``), so anyone can recompute it from the sources.
    """
    pairs = sorted(sources.items())
    encoded = json.dumps(pairs, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()


def standard_input(sources: Mapping[str, str]) -> dict[str, Any]:
    """The solc standard JSON input for these sources with :data:`SETTINGS`."""
    return {
        "language": "Solidity",
        "sources": {name: {"content": content} for name, content in sorted(sources.items())},
        "settings": SETTINGS,
    }


# --------------------------------------------------------------------------- compile


def _run_solc(input_json: dict[str, Any], choice: SolcChoice) -> dict[str, Any]:
    try:
        output: dict[str, Any] = solcx.compile_standard(
            input_json, solc_binary=choice.path, allow_empty=True
        )
    except SolcError as exc:
        if exc.error_dict:
            raise CompilationFailedError(
                f"compilation failed with {choice.describe()}:\n{exc.message}",
                list(exc.error_dict),
            ) from None
        stderr = (exc.stderr_data or "").strip()[-4000:]
        raise CompilerError(
            f"{choice.describe()} failed (exit code {exc.return_code}): {exc.message}\n{stderr}"
        ) from None
    except json.JSONDecodeError as exc:
        raise CompilerError(f"{choice.describe()} did not print valid JSON: {exc}") from exc
    return output


def _dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2) + "\n"


def _hex(obj: str) -> str:
    return "0x" + obj


def _build(
    output: Mapping[str, Any],
    sources: Mapping[str, str],
    own: Iterable[str],
    choice: SolcChoice,
    digest: str,
) -> dict[str, dict[str, Any]]:
    compiler = {"source": choice.source, "version": choice.version}
    artifacts: dict[str, dict[str, Any]] = {}
    compiled = output.get("contracts", {})
    for source_name in sorted(own):
        for contract_name, data in sorted(compiled.get(source_name, {}).items()):
            if contract_name in artifacts:
                other = artifacts[contract_name]["sourceName"]
                raise CompilerError(
                    f"two contracts are named {contract_name}: in {other} and {source_name}; "
                    "artifact file names must be unique"
                )
            evm = data.get("evm", {})
            artifacts[contract_name] = {
                "abi": data.get("abi", []),
                "bytecode": _hex(evm.get("bytecode", {}).get("object", "")),
                "compiler": compiler,
                "contractName": contract_name,
                "deployedBytecode": _hex(evm.get("deployedBytecode", {}).get("object", "")),
                # where the constructor writes immutables into the runtime code (the auditor
                # masks exactly these bytes when comparing with the deployed code)
                "deployedImmutableReferences": evm.get("deployedBytecode", {}).get(
                    "immutableReferences", {}
                ),
                "metadata": data.get("metadata", ""),
                "methodIdentifiers": evm.get("methodIdentifiers", {}),
                "settings": SETTINGS,
                "sourceName": source_name,
                "sourcesHash": digest,
            }
    return artifacts


def _manifest(
    artifacts: Mapping[str, Mapping[str, Any]],
    sources: Mapping[str, str],
    choice: SolcChoice,
    digest: str,
) -> dict[str, Any]:
    return {
        "compiler": {"source": choice.source, "version": choice.version},
        "contracts": {name: art["sourceName"] for name, art in sorted(artifacts.items())},
        "settings": SETTINGS,
        "sources": {
            name: hashlib.sha256(content.encode("utf-8")).hexdigest()
            for name, content in sorted(sources.items())
        },
        "sourcesHash": digest,
    }


def _is_our_artifact(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "sourcesHash" in data


def _write(build_dir: Path, files: Mapping[str, str]) -> tuple[list[str], list[str]]:
    build_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for name, text in sorted(files.items()):
        target = build_dir / name
        data = text.encode("utf-8")
        if target.is_file() and target.read_bytes() == data:
            continue  # unchanged: keep the file (and its mtime) as it is
        tmp = target.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        written.append(name)
    removed: list[str] = []
    for old in sorted(build_dir.glob("*.json")):
        if old.name not in files and _is_our_artifact(old):
            old.unlink()
            removed.append(old.name)
    return written, removed


def compile_contracts(
    contracts_dir: Path = CONTRACTS_DIR,
    build_dir: Path = BUILD_DIR,
    *,
    choice: SolcChoice | None = None,
    write: bool = True,
) -> CompileResult:
    """Compile every ``.sol`` file under ``contracts_dir``; write artifacts to ``build_dir``.

    ``choice`` defaults to :func:`resolve_solc`. With ``write=False`` nothing is written and
    the result carries the files' text (used by :func:`check_artifacts_fresh`). Artifacts
    whose content did not change are left untouched; stale artifacts of contracts that no
    longer exist are removed.
    """
    started = time.perf_counter()
    choice = choice or resolve_solc()
    sources, own = collect_sources(contracts_dir, build_dir)
    digest = sources_hash(sources)
    output = _run_solc(standard_input(sources), choice)
    warnings: list[str] = []
    for err in output.get("errors", []):
        if err.get("severity") == "error":
            continue
        text = str(err.get("formattedMessage") or err.get("message")).strip()
        where = str(err.get("sourceLocation", {}).get("file", ""))
        if where in own or not where:
            warnings.append(text)
            logger.warning("solc: %s", text)
        else:  # e.g. OpenZeppelin's own notice about transient storage: not ours to fix
            logger.debug("solc (%s): %s", where, text)
    artifacts = _build(output, sources, own, choice, digest)
    files = {f"{name}.json": _dump(art) for name, art in artifacts.items()}
    files[MANIFEST_NAME] = _dump(_manifest(artifacts, sources, choice, digest))
    written: list[str] = []
    removed: list[str] = []
    if write:
        written, removed = _write(build_dir, files)
    seconds = time.perf_counter() - started
    logger.info(
        "compiled %d sources into %d contracts with %s in %.1f s",
        len(sources),
        len(artifacts),
        choice.describe(),
        seconds,
    )
    return CompileResult(
        choice=choice,
        sources_hash=digest,
        files=files,
        artifacts=artifacts,
        warnings=warnings,
        seconds=seconds,
        written=written,
        removed=removed,
    )


_COMPARED_KEYS: Final = ("abi", "bytecode", "deployedBytecode")


def stale_artifacts(result: CompileResult, build_dir: Path = BUILD_DIR) -> list[str]:
    """Names of contracts whose committed artifact differs from ``result`` (or is missing).

    Compares abi, bytecode and deployedBytecode; lists committed artifacts of contracts that
    no longer exist, and ``manifest.json`` when its sources hash or contract list differs.
    """
    stale: list[str] = []
    for name, fresh in sorted(result.artifacts.items()):
        path = build_dir / f"{name}.json"
        try:
            committed = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stale.append(name)
            continue
        if any(committed.get(key) != fresh[key] for key in _COMPARED_KEYS):
            stale.append(name)
    if build_dir.is_dir():
        for old in sorted(build_dir.glob("*.json")):
            orphan = old.name != MANIFEST_NAME and old.stem not in result.artifacts
            if orphan and _is_our_artifact(old):
                stale.append(old.stem)
    try:
        manifest = json.loads((build_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    fresh_manifest = json.loads(result.files[MANIFEST_NAME])
    if not isinstance(manifest, dict) or any(
        manifest.get(key) != fresh_manifest[key] for key in ("contracts", "sourcesHash")
    ):
        stale.append(MANIFEST_NAME)
    return stale


def check_artifacts_fresh(
    contracts_dir: Path = CONTRACTS_DIR,
    build_dir: Path = BUILD_DIR,
    *,
    choice: SolcChoice | None = None,
) -> list[str]:
    """Recompile in memory and return the names of stale or missing artifacts ([] if fresh)."""
    result = compile_contracts(contracts_dir, build_dir, choice=choice, write=False)
    return stale_artifacts(result, build_dir)


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m backend.chain.compiler",
        description="Compile contracts_sol/ into contracts_sol/build/ (solc 0.8.28).",
    )
    parser.add_argument("--check", action="store_true", help="only check the artifacts")
    parser.add_argument("--contracts-dir", type=Path, default=CONTRACTS_DIR)
    parser.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        choice = resolve_solc()
        if args.check:
            stale = check_artifacts_fresh(args.contracts_dir, args.build_dir, choice=choice)
            if stale:
                print(f"stale artifacts: {', '.join(stale)} (run `escrow compile`)")
                return 1
            print("artifacts are up to date")
            return 0
        result = compile_contracts(args.contracts_dir, args.build_dir, choice=choice)
    except CompilerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"compiled {len(result.artifacts)} contracts in {result.seconds:.1f} s "
        f"(sources {result.sources_hash[:12]}); written: {', '.join(result.written) or 'none'}"
        + (f"; removed: {', '.join(result.removed)}" if result.removed else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
