"""`escrow keys new|import|list`: encrypted JSON keystores (eth-account's Web3 Secret Storage,
scrypt) in `<ESCROW_DATA_DIR>/keys/<name>.json`, file mode 0600, that the role commands unlock
with `--from NAME`. A private key is read from a hidden prompt or a file, never from the command
line; a password from `--password-file`, `ESCROW_KEYSTORE_PASSWORD` or a hidden prompt."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from backend.cli.common import JsonFlag, app, console, echo_json, get_settings
from backend.config import Settings
from backend.errors import ConfigurationError

keys_app = typer.Typer(help="Encrypted keystores the role commands sign with (--from NAME).",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")

#: scrypt work factor of new keystores; None: eth-account's default (n = 2^18). Tests lower it.
KEYSTORE_ITERATIONS: int | None = None
#: the order of secp256k1: a private key is an integer from 1 to n - 1
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_PRIVATE_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")

PasswordFile = Annotated[
    Path | None,
    typer.Option("--password-file", help="Read the keystore password from this file's first "
                 "line (else ESCROW_KEYSTORE_PASSWORD, else a hidden prompt).",
                 show_default=False),
]


def read_password(
    settings: Settings, password_file: Path | None, *, what: str, confirm: bool = False
) -> str:
    """The keystore password: the first line of `password_file`, else
    `ESCROW_KEYSTORE_PASSWORD`, else a hidden prompt (asked twice when `confirm`, for a new
    keystore). `ConfigurationError` for an unreadable file or an empty password."""
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"cannot read the password file {password_file}: {exc}"
            ) from exc
        password = lines[0] if lines else ""
    elif settings.keystore_password is not None:
        password = settings.keystore_password
    else:
        password = str(typer.prompt(f"Password for {what}", hide_input=True,
                                    confirmation_prompt=confirm, err=True))
    if not password:
        raise ConfigurationError(f"an empty password is refused for {what}")
    return password


def _write_keystore(settings: Settings, name: str, key: bytes, password: str) -> dict[str, Any]:
    """Encrypts `key` into `<data dir>/keys/<name>.json` (created 0600, never overwritten)."""
    from eth_account import Account

    from backend.client.wallet import keystore_path

    path = keystore_path(settings, name)
    if path.exists():
        raise ConfigurationError(f"a keystore named {name!r} exists already: {path}")
    encrypted = Account.encrypt(key, password, iterations=KEYSTORE_ITERATIONS)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigurationError(f"a keystore named {name!r} exists already: {path}") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot write the keystore {path}: {exc}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(encrypted, out)
    address = Account.from_key(key).address
    return {"name": name, "address": address, "path": str(path)}


def _report(entry: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        echo_json(entry)
        return
    console.print(f"{verb} keystore [bold]{entry['name']}[/]: {entry['address']}",
                  highlight=False)
    console.print(f"  {entry['path']} (use it with --from {entry['name']})", highlight=False)


@keys_app.command("new")
def keys_new(
    name: Annotated[str, typer.Argument(help="The keystore's name: letters, digits, . _ -")],
    password_file: PasswordFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Makes a new account in an encrypted keystore and prints its address."""
    from eth_account import Account

    from backend.client.wallet import keystore_path

    settings = get_settings()
    path = keystore_path(settings, name)  # a bad name is refused before any prompt
    if path.exists():
        raise ConfigurationError(f"a keystore named {name!r} exists already: {path}")
    password = read_password(settings, password_file, what=f"the new keystore {name}",
                             confirm=True)
    _report(_write_keystore(settings, name, bytes(Account.create().key), password), as_json,
            "new")


@keys_app.command("import")
def keys_import(
    name: Annotated[str, typer.Argument(help="The keystore's name: letters, digits, . _ -")],
    private_key_file: Annotated[
        Path | None,
        typer.Option("--private-key-file", help="Read the private key (64 hex digits) from "
                     "this file (else a hidden prompt); never give it on the command line.",
                     show_default=False),
    ] = None,
    password_file: PasswordFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Encrypts an existing private key into a keystore and prints its address."""
    from backend.client.wallet import keystore_path

    settings = get_settings()
    path = keystore_path(settings, name)
    if path.exists():
        raise ConfigurationError(f"a keystore named {name!r} exists already: {path}")
    if private_key_file is not None:
        try:
            text = private_key_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"cannot read the private key file {private_key_file}: {exc}"
            ) from exc
    else:
        text = str(typer.prompt("Private key (hex)", hide_input=True, err=True)).strip()
    if not _PRIVATE_KEY.match(text):  # the key itself is never repeated in a message
        raise ConfigurationError("not a private key: expected 64 hex digits (0x optional)")
    key = bytes.fromhex(text.removeprefix("0x"))
    if not 0 < int.from_bytes(key, "big") < SECP256K1_N:
        raise ConfigurationError("not a private key: out of the secp256k1 range")
    password = read_password(settings, password_file, what=f"the keystore {name}",
                             confirm=True)
    _report(_write_keystore(settings, name, key, password), as_json, "imported")


@keys_app.command("list")
def keys_list(as_json: JsonFlag = False) -> None:
    """Every keystore of `<ESCROW_DATA_DIR>/keys`: name, address, path."""
    from rich.table import Table

    from backend.client.wallet import address_of_keystore, keys_dir

    folder = keys_dir(get_settings())
    entries = [
        {"name": path.stem, "address": address_of_keystore(path), "path": str(path)}
        for path in sorted(folder.glob("*.json"))
    ] if folder.is_dir() else []
    if as_json:
        echo_json(entries)
        return
    if not entries:
        console.print(f"no keystores in {folder} (make one with `escrow keys new NAME`)",
                      highlight=False)
        return
    table = Table("name", "address", "path", box=None, pad_edge=False)
    for entry in entries:
        table.add_row(entry["name"], entry["address"] or "(unreadable)", entry["path"])
    console.print(table)
