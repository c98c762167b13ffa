"""The offline compiler toolchain: solc resolution, solc-js wrapper, artifacts."""

# Test names keep the spelling of what they are about (ESCROW_SOLC, KiB).

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backend.chain import compiler
from backend.chain.artifacts import ArtifactMissing, load_artifact
from backend.chain.compiler import (
    CompilationFailedError,
    SolcChoice,
    SolcNotFoundError,
    check_artifacts_fresh,
    compile_contracts,
    find_imports,
    resolve_solc,
)
from backend.paths import BUILD_DIR, CONTRACTS_DIR, REPO_ROOT, SOLCJS_WRAPPER

THING = """// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IThing} from "./interfaces/IThing.sol";
// import "./does/not/Exist.sol";

contract Thing is IThing {
    uint256 public pings;

    function ping() external returns (uint256) {
        pings += 1;
        return pings;
    }

    function recover(bytes32 digest, bytes calldata signature) external pure returns (address) {
        return ECDSA.recover(digest, signature);
    }
}
"""

ITHING = """// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

interface IThing {
    function ping() external returns (uint256);
}
"""

HELPER = """// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import "../Thing.sol";

contract ThingCaller {
    function callPing(Thing thing) external returns (uint256) {
        return thing.ping();
    }
}
"""


def write_throwaway_contracts(root: Path) -> Path:
    """A small source tree like contracts_sol/: returns its contracts folder."""
    contracts = root / "contracts"
    (contracts / "interfaces").mkdir(parents=True)
    (contracts / "test").mkdir()
    (contracts / "Thing.sol").write_text(THING)
    (contracts / "interfaces" / "IThing.sol").write_text(ITHING)
    (contracts / "test" / "ThingCaller.sol").write_text(HELPER)
    return contracts


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def solc() -> SolcChoice:
    return resolve_solc()


def test_committed_artifacts_match_a_fresh_compile(solc: SolcChoice) -> None:
    assert (CONTRACTS_DIR / "QualityEscrow.sol").is_file(), "contracts_sol/QualityEscrow.sol"
    fresh = compile_contracts(CONTRACTS_DIR, BUILD_DIR, choice=solc, write=False)
    assert "QualityEscrow" in fresh.artifacts
    stale = compiler.stale_artifacts(fresh, BUILD_DIR)
    assert stale == [], (
        f"contracts_sol/build is stale for {stale}: run `escrow compile` "
        "(python -m backend.chain.compiler) and commit contracts_sol/build/"
    )
    for name, artifact in fresh.artifacts.items():
        committed = json.loads((BUILD_DIR / f"{name}.json").read_text())
        assert committed["bytecode"] == artifact["bytecode"], name
        assert committed["deployedBytecode"] == artifact["deployedBytecode"], name
        assert committed["abi"] == artifact["abi"], name


def test_solcjs_wrapper_handles_output_larger_than_64KiB() -> None:
    functions = "\n".join(
        f"    function f{i}(uint256 x) external pure returns (uint256) {{ return x * {i + 1}; }}"
        for i in range(120)
    )
    header = "// SPDX-License-Identifier: MIT\npragma solidity 0.8.28;\n"
    source = f"{header}contract Big {{\n{functions}\n}}\n"
    request = {
        "language": "Solidity",
        "sources": {"Big.sol": {"content": source}},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "outputSelection": {"*": {"*": ["*"], "": ["ast"]}},
        },
    }
    run = subprocess.run(
        [str(SOLCJS_WRAPPER), "--standard-json"],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert len(run.stdout) > 64 * 1024
    assert run.stdout.startswith(b"{"), run.stdout[:200]  # no ">>> Cannot retry..." line
    output = json.loads(run.stdout)
    assert not [e for e in output.get("errors", []) if e["severity"] == "error"]
    assert len(output["contracts"]["Big.sol"]["Big"]["abi"]) == 120


def test_solcjs_wrapper_prints_its_version_like_native_solc() -> None:
    run = subprocess.run(
        [str(SOLCJS_WRAPPER), "--version"], capture_output=True, text=True, check=True
    )
    assert run.stdout.startswith("solc, the solidity compiler commandline interface\nVersion: ")
    assert "0.8.28+commit.7893614a" in run.stdout


def test_resolve_solc_prefers_ESCROW_SOLC(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESCROW_SOLC", str(SOLCJS_WRAPPER))
    choice = resolve_solc()
    assert choice.source == "ESCROW_SOLC"
    assert choice.path == SOLCJS_WRAPPER.resolve()
    assert choice.version == "0.8.28+commit.7893614a"
    assert "ESCROW_SOLC" in choice.describe()


def test_resolve_solc_rejects_missing_ESCROW_SOLC_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-solc"
    monkeypatch.setenv("ESCROW_SOLC", str(missing))
    with pytest.raises(SolcNotFoundError, match=r"ESCROW_SOLC=.*no-such-solc.*no such file"):
        resolve_solc()


def test_resolve_solc_rejects_an_ESCROW_SOLC_of_another_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "solc"
    fake.write_text(
        "#!/bin/sh\necho 'solc, the solidity compiler commandline interface'\n"
        "echo 'Version: 0.8.20+commit.a1b79de6.Linux.g++'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("ESCROW_SOLC", str(fake))
    with pytest.raises(SolcNotFoundError, match=r"0\.8\.20.*needs solc 0\.8\.28"):
        resolve_solc()


def test_resolve_solc_falls_back_to_solcjs_without_a_py_solc_x_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ESCROW_SOLC", raising=False)
    monkeypatch.setenv("SOLCX_BINARY_PATH", str(tmp_path))  # an empty py-solc-x folder
    choice = resolve_solc()
    assert choice.source == "solc-js"
    assert choice.path == SOLCJS_WRAPPER


def test_find_imports_reads_every_import_form_and_skips_comments() -> None:
    source = (
        'import "./a.sol";\n// import "./commented.sol";\n/* import "./block.sol"; */\n'
        'import {X, Y as Z} from "@openzeppelin/contracts/x.sol";\n'
        "import * as Q from '../q.sol';\nimport \"r.sol\" as R;\n"
        "contract C { string s = \"import 'z.sol';\"; }\n"
    )
    assert find_imports(source) == ["./a.sol", "@openzeppelin/contracts/x.sol", "../q.sol", "r.sol"]


def test_compile_is_deterministic(solc: SolcChoice, tmp_path: Path) -> None:
    # Two copies of the same tree in different places, compiled into different folders.
    first = compile_contracts(
        write_throwaway_contracts(tmp_path / "a"), tmp_path / "a" / "build", choice=solc
    )
    second = compile_contracts(
        write_throwaway_contracts(tmp_path / "b"), tmp_path / "b" / "build", choice=solc
    )
    assert first.files == second.files
    built_a = tree_bytes(tmp_path / "a" / "build")
    built_b = tree_bytes(tmp_path / "b" / "build")
    assert built_a == built_b
    assert set(built_a) == {"Thing.json", "IThing.json", "ThingCaller.json", "manifest.json"}
    for name, data in built_a.items():
        text = data.decode()
        assert text.endswith("}\n"), name
        assert str(tmp_path) not in text and str(REPO_ROOT) not in text, name
    # Recompiling unchanged sources rewrites nothing.
    again = compile_contracts(tmp_path / "a" / "contracts", tmp_path / "a" / "build", choice=solc)
    assert again.written == []
    assert tree_bytes(tmp_path / "a" / "build") == built_a


def test_compile_includes_openzeppelin_imports_and_writes_usable_artifacts(
    solc: SolcChoice, tmp_path: Path
) -> None:
    build = tmp_path / "build"
    result = compile_contracts(write_throwaway_contracts(tmp_path), build, choice=solc)
    manifest = json.loads((build / "manifest.json").read_text())
    assert "@openzeppelin/contracts/utils/cryptography/ECDSA.sol" in manifest["sources"]
    assert "contracts/interfaces/IThing.sol" in manifest["sources"]
    assert manifest["contracts"]["ThingCaller"] == "contracts/test/ThingCaller.sol"
    assert manifest["compiler"] == {"source": solc.source, "version": "0.8.28+commit.7893614a"}
    assert manifest["settings"]["evmVersion"] == "cancun"
    assert manifest["sourcesHash"] == result.sources_hash

    load_artifact.cache_clear()
    thing = load_artifact("Thing", build)
    assert thing.bytecode.startswith("0x6080") and thing.deployed_bytecode.startswith("0x6080")
    assert {entry.get("name") for entry in thing.abi} >= {"ping", "recover", "pings"}
    assert thing.compiler_version == "0.8.28+commit.7893614a"
    assert thing.sources_hash == result.sources_hash
    assert load_artifact("IThing", build).bytecode == "0x"  # interfaces have no code


def test_check_artifacts_fresh_names_a_contract_whose_source_changed(
    solc: SolcChoice, tmp_path: Path
) -> None:
    contracts = write_throwaway_contracts(tmp_path)
    build = tmp_path / "build"
    compile_contracts(contracts, build, choice=solc)
    assert check_artifacts_fresh(contracts, build, choice=solc) == []
    (contracts / "Thing.sol").write_text(THING.replace("pings += 1;", "pings += 2;"))
    (build / "IThing.json").unlink()
    # ThingCaller imports Thing.sol: its metadata hash, so its bytecode, changes too.
    assert check_artifacts_fresh(contracts, build, choice=solc) == [
        "IThing",
        "Thing",
        "ThingCaller",
        "manifest.json",
    ]


def test_compile_errors_are_reported_with_their_source_location(
    solc: SolcChoice, tmp_path: Path
) -> None:
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "Bad.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity 0.8.28;\n"
        "contract Bad { function f() external { undefinedThing(); } }\n"
    )
    with pytest.raises(CompilationFailedError, match=r"contracts/Bad\.sol:3") as failure:
        compile_contracts(contracts, tmp_path / "build", choice=solc)
    assert failure.value.errors and failure.value.errors[0]["severity"] == "error"
    assert not (tmp_path / "build").exists()


def test_an_unresolvable_import_is_reported_with_its_importer(tmp_path: Path) -> None:
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "A.sol").write_text('pragma solidity 0.8.28;\nimport "./Missing.sol";\n')
    with pytest.raises(compiler.SourceResolutionError, match=r"contracts/A\.sol.*Missing\.sol"):
        compiler.collect_sources(contracts, tmp_path / "build")


def test_load_artifact_names_the_missing_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ArtifactMissing, match=r"NoSuchContract\.json.*escrow compile"):
        load_artifact("NoSuchContract", tmp_path)


def test_compiler_command_line_reports_the_compiler_it_used(tmp_path: Path) -> None:
    contracts = write_throwaway_contracts(tmp_path)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.chain.compiler",
            "--contracts-dir",
            str(contracts),
            "--build-dir",
            str(tmp_path / "build"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "using solc 0.8.28+commit.7893614a from" in run.stderr
    assert "compiled 3 contracts" in run.stdout
