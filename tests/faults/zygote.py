"""A parent of service processes that has already imported the service (about 3 s of imports on a
CI runner), so the SIGKILL suite can start `escrow serve` thirty times without paying them thirty
times: each child is forked from it and runs the real command line (`backend.cli.app`) in a
process of its own, which the test then kills with SIGKILL.

Run as `python -m tests.faults.zygote` with the service's `ESCROW_*` environment. It reads one
command per line on stdin and answers one line on stdout:

- `start <log> <arg>...`: forks a child that runs `escrow <arg>...` with its stdout and stderr in
  the file `<log>`; answers the child's pid;
- `reap <pid>`: waits for that child to end; answers its exit code, or minus the signal that
  ended it (as `subprocess.Popen.returncode`).

End of input ends it. `ESCROW_FAULT_SENDER_INTERVAL` (seconds, default 0.2) is the children's
pause between two passes of the relayer and the oracle (1 s and 5 s in production), as
tests/web/support.py's `quick_live_service` sets it in-process.

Forking after the imports is safe here because nothing is started before the fork: no thread, no
engine, no connection (settings are read in the child: `get_settings` is not called here).
"""

from __future__ import annotations

import os
import sys


def _preload() -> None:
    """Imports what `escrow serve` imports, without starting anything."""
    import uvicorn  # noqa: F401

    import backend.api.app
    import backend.cli
    import backend.services
    import backend.workers  # noqa: F401


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the zygote ends (pytest killed, say), so no service
    outlives the test run (`prctl(PR_SET_PDEATHSIG)`)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def _child(log: str, args: list[str]) -> None:
    """In the forked child: output to `log`, then `escrow <args>`; never returns."""
    code = 1
    try:
        _die_with_parent()
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.close(null)
        from backend.confirmations.relayer import Relayer
        from backend.oracle.worker import Oracle

        interval = float(os.environ.get("ESCROW_FAULT_SENDER_INTERVAL", "0.2"))
        Relayer.interval = interval
        Oracle.interval = interval
        from backend.cli import app

        sys.argv = ["escrow", *args]
        try:
            app()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # a crash of the command: its traceback is in the log
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main() -> None:
    _preload()
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "start":
            pid = os.fork()
            if pid == 0:
                _child(words[1], words[2:])
            print(pid, flush=True)
        elif words[0] == "reap":
            _, status = os.waitpid(int(words[1]), 0)
            print(os.waitstatus_to_exitcode(status), flush=True)
        else:
            print(f"unknown command {words[0]!r}", flush=True)


if __name__ == "__main__":
    main()
