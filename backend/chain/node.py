"""Start and stop a local Hardhat node (``hardhat_local/``) as a subprocess.

>>> with start_hardhat_node() as node:   # a free port on 127.0.0.1
...     web3 = Web3(Web3.HTTPProvider(node.url))

The node runs in its own process group so that :meth:`HardhatNode.stop` ends it and any
child it spawned. Its output goes to a log file whose tail is included in every error.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Final

from backend.chain.errors import HardhatNodeError
from backend.paths import HARDHAT_CLI, HARDHAT_DIR

HOST: Final = "127.0.0.1"
DEFAULT_START_TIMEOUT: Final = 60.0
LOG_TAIL_LINES: Final = 40


def find_free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on `host:port` now. Binds as Node.js (and so Hardhat) does,
    with SO_REUSEADDR: connections of an earlier run lingering in TIME_WAIT do not hold the port
    (RFC 9293 section 3.6.1), only a socket still bound or listening there does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _log_tail(log_path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    if log_path is None:
        return ""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.rstrip().splitlines()[-lines:])
    return f"\n--- last lines of {log_path} ---\n{tail}" if tail else f"\n({log_path} is empty)"


def rpc_chain_id(url: str, timeout: float = 5.0) -> int:
    """``eth_chainId`` of the node at ``url`` (raises ``OSError``/``ValueError`` on failure)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    return int(reply["result"], 16)


def wait_for_rpc(
    url: str,
    timeout: float = DEFAULT_START_TIMEOUT,
    *,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> int:
    """Poll ``url`` until ``eth_chainId`` answers; return the chain id.

    Fails early with :class:`HardhatNodeError` if ``process`` exits, and after ``timeout``
    seconds otherwise; the message includes the tail of ``log_path``.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    last_error: Exception | None = None
    while True:
        if process is not None and process.poll() is not None:
            raise HardhatNodeError(
                f"the Hardhat node exited with code {process.returncode} before answering at "
                f"{url}{_log_tail(log_path)}"
            )
        try:
            return rpc_chain_id(url, timeout=max(0.5, min(5.0, deadline - time.monotonic())))
        except (OSError, ValueError, KeyError, TypeError) as exc:  # not up yet
            last_error = exc
        if time.monotonic() >= deadline:
            raise HardhatNodeError(
                f"no JSON-RPC answer from {url} within {timeout:.0f} s "
                f"(last error: {last_error!r}){_log_tail(log_path)}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


class HardhatNode:
    """A running ``hardhat node``; stop it with :meth:`stop` or use it as a context manager."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        log_path: Path,
        *,
        owns_log: bool = False,
        chain_id: int | None = None,
    ) -> None:
        self.process = process
        self.port = port
        self.host = HOST
        self.url = f"http://{HOST}:{port}"
        self.ws_url = f"ws://{HOST}:{port}"
        self.log_path = log_path
        self.chain_id = chain_id
        self._owns_log = owns_log
        self._stopped = False

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"pid {self.process.pid}"
        return f"<HardhatNode {self.url} {state}>"

    @property
    def running(self) -> bool:
        return not self._stopped and self.process.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _log_tail(self.log_path, lines)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the node's process group; kill it if it has not exited in ``timeout`` s."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=timeout)
        # children left in the group (if any) go too
        self._signal_group(signal.SIGKILL)
        if self._owns_log:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> HardhatNode:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def hardhat_command(port: int, host: str = HOST) -> list[str]:
    """The command that runs ``hardhat node`` (what ``npx hardhat node`` runs, without npx)."""
    node = shutil.which("node")
    if node is None:
        raise HardhatNodeError("Node.js (`node`) is not on PATH: it is needed for Hardhat")
    if not HARDHAT_CLI.is_file():
        raise HardhatNodeError(f"Hardhat is not installed: run `npm ci` in {HARDHAT_DIR}")
    return [node, str(HARDHAT_CLI), "node", "--port", str(port), "--hostname", host]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # No interactive prompt (it is shown only on a TTY anyway) and no survey banners.
    env["HARDHAT_DISABLE_TELEMETRY_PROMPT"] = "true"
    env["HARDHAT_HIDE_SOLIDITY_SURVEY_MESSAGE"] = "true"
    env.pop("HARDHAT_NETWORK", None)  # always the built-in network of hardhat.config.js
    env.setdefault("NO_COLOR", "1")
    return env


def _spawn(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    command = hardhat_command(port)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=HARDHAT_DIR,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, ended as a whole by stop()
        )


def start_hardhat_node(
    port: int | None = None,
    *,
    log_path: Path | None = None,
    timeout: float = DEFAULT_START_TIMEOUT,
) -> HardhatNode:
    """Start ``hardhat node`` on 127.0.0.1 and wait until it answers JSON-RPC.

    ``port`` defaults to a free port (retried once on a lost race for it). The node's output
    goes to ``log_path`` (default: a temporary file, deleted on a clean stop).
    """
    if port is not None and not port_is_free(port):
        # Checked first: otherwise whatever already listens there could answer the poll.
        raise HardhatNodeError(f"cannot start a Hardhat node: {HOST}:{port} is already in use")
    hardhat_command(0)  # fail early, before any file is made, if node or Hardhat is missing
    owns_log = log_path is None
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="hardhat-node-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    else:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else 2
    for attempt in range(attempts):
        chosen = port if port is not None else find_free_port()
        process = _spawn(chosen, log_path)
        node = HardhatNode(process, chosen, log_path, owns_log=owns_log)
        atexit.register(node.stop)
        try:
            node.chain_id = wait_for_rpc(node.url, timeout, process=process, log_path=log_path)
        except HardhatNodeError:
            node._owns_log = False  # keep the log for the error message's reader
            node.stop()
            in_use = "EADDRINUSE" in _log_tail(log_path)
            if in_use and attempt + 1 < attempts:
                continue
            raise
        except BaseException:
            node.stop()
            raise
        return node
    raise AssertionError("unreachable")  # pragma: no cover
