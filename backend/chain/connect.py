"""One factory for the three chains (`docs/interface.md`, configuration): in-process eth-tester,
the local Hardhat node, and any JSON-RPC network."""

from __future__ import annotations

from web3 import Web3
from web3.providers.rpc import HTTPProvider

from backend.errors import ConfigurationError

#: the URL that selects the in-process chain (eth-tester + py-evm)
IN_PROCESS = "tester://"
HARDHAT_CHAIN_ID = 31337


def connect(rpc_url: str, *, timeout: float = 30) -> Web3:
    """A Web3 for `rpc_url`: ``tester://`` for the in-process chain, or an http(s) URL."""
    if rpc_url in (IN_PROCESS, "tester", "eth-tester"):
        return in_process_chain()
    if rpc_url.startswith(("http://", "https://")):
        return Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    raise ConfigurationError(
        f"unsupported RPC URL {rpc_url!r}: use http(s)://host:port or {IN_PROCESS}"
    )


def in_process_chain() -> Web3:
    """A fresh in-process chain with ten funded, unlocked accounts. Needs `web3[tester]`."""
    try:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3.providers.eth_tester import EthereumTesterProvider
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "the in-process chain needs eth-tester: pip install 'web3[tester]'"
        ) from exc
    backend = PyEVMBackend()
    return Web3(EthereumTesterProvider(EthereumTester(backend)))


def is_dev_chain(w3: Web3) -> bool:
    return int(w3.eth.chain_id) == HARDHAT_CHAIN_ID or is_in_process(w3)


def is_in_process(w3: Web3) -> bool:
    return type(w3.provider).__name__ == "EthereumTesterProvider"
