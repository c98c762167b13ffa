"""The `escrow` command line (`docs/interface.md`, section 5): one module per group of
commands, all registered on the one Typer app of `common.py`."""

from __future__ import annotations

from backend.cli import contract, data, demo, keys, roles, stack, status, workers  # noqa: F401  (registers commands)
from backend.cli.common import EXIT_REFUSED, app, console

__all__ = ["EXIT_REFUSED", "app", "console"]

if __name__ == "__main__":  # pragma: no cover
    app()
