"""`escrow compile`, `escrow chain`, `escrow deploy`: the contract and the local node."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from backend.cli.common import JsonFlag, app, console, get_settings


@app.command("compile")
def compile_cmd(
    check: Annotated[
        bool, typer.Option("--check", help="Only verify the committed artifacts are fresh.")
    ] = False,
) -> None:
    """Compile contracts_sol/ into contracts_sol/build/ (works offline through solc-js)."""
    from backend.chain.artifacts import load_artifact
    from backend.chain.codegen import render_revert_types, write_revert_types
    from backend.chain.compiler import check_artifacts_fresh, compile_contracts, resolve_solc
    from backend.paths import REPO_ROOT

    choice = resolve_solc()
    console.print(f"compiler: solc {choice.version} via {choice.source} ({choice.path})")
    revert_types = REPO_ROOT / "backend" / "chain" / "revert_types.py"
    if check:
        stale = check_artifacts_fresh()
        abi = load_artifact("QualityEscrow").abi
        if revert_types.read_text() != render_revert_types(abi):
            stale.append(str(revert_types.relative_to(REPO_ROOT)))
        if stale:
            console.print(f"[red]stale: {', '.join(stale)}[/red] (run `escrow compile`)")
            raise typer.Exit(1)
        console.print("[green]artifacts are fresh[/green]")
        return
    result = compile_contracts()
    load_artifact.cache_clear()
    changed = write_revert_types(load_artifact("QualityEscrow").abi, revert_types)
    console.print(f"wrote {len(result.artifacts)} artifacts to contracts_sol/build/")
    if changed:
        console.print("regenerated backend/chain/revert_types.py")


@app.command("chain")
def chain_cmd(
    port: Annotated[int, typer.Option(help="Port of the Hardhat node.")] = 8545,
) -> None:
    """Start the local Hardhat node (chain id 31337) and wait until it answers; Ctrl-C stops it."""
    import time

    from backend.chain.node import start_hardhat_node

    with start_hardhat_node(port) as node:
        console.print(f"Hardhat node answering at {node.url} (chain id 31337); Ctrl-C to stop")
        try:
            while node.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping")


@app.command("deploy")
def deploy_cmd(as_json: JsonFlag = False) -> None:
    """Deploy QualityEscrow to ESCROW_RPC_URL and write the deployment record serve reads."""
    from backend.chain.connect import connect
    from backend.chain.deploy import deploy_escrow, write_deployment
    from backend.chain.keys import deployer_account

    settings = get_settings()
    w3 = connect(settings.rpc_url)
    deployment = deploy_escrow(w3, deployer_account(w3, settings))
    path = write_deployment(settings.data_dir, deployment)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "address": deployment.address,
                    "chain_id": deployment.chain_id,
                    "block": deployment.block,
                    "tx_hash": deployment.tx_hash,
                }
            )
        )
    else:
        console.print(
            f"QualityEscrow deployed at {deployment.address} on chain {deployment.chain_id} "
            f"(block {deployment.block}); record: {path}"
        )
