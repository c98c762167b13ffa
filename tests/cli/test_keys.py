"""`escrow keys new|import|list`: encrypted keystores in `<ESCROW_DATA_DIR>/keys/NAME.json`
(mode 0600) whose password comes from a file, ESCROW_KEYSTORE_PASSWORD or a hidden prompt asked
twice; a private key is read from a file or a hidden prompt, never from the command line."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account

from backend.config import Settings
from tests.cli.conftest import Invoke

KEY = "0x" + "42" * 32


def _password_file(tmp_path: Path, password: str = "correct horse") -> Path:
    path = tmp_path / "password.txt"
    path.write_text(password + "\n")
    return path


def test_keys_new_writes_an_encrypted_0600_keystore_and_prints_its_address(
    invoke: Invoke, cli_settings: Settings, tmp_path: Path
) -> None:
    result = invoke("keys", "new", "alice", "--password-file", _password_file(tmp_path),
                    "--json")

    assert result.exit_code == 0, result.stderr
    made = json.loads(result.stdout)
    path = Path(cli_settings.data_dir) / "keys" / "alice.json"
    assert made == {"name": "alice", "address": made["address"], "path": str(path)}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = Account.decrypt(json.loads(path.read_text()), "correct horse")
    assert Account.from_key(key).address == made["address"]


def test_keys_new_asks_the_password_twice_without_echoing_it(
    invoke: Invoke, cli_settings: Settings
) -> None:
    result = invoke("keys", "new", "bob", input="s3cret\ns3cret\n")

    assert result.exit_code == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    path = Path(cli_settings.data_dir) / "keys" / "bob.json"
    Account.decrypt(json.loads(path.read_text()), "s3cret")  # no error: that password
    assert "new keystore bob: 0x" in result.stdout


def test_keys_import_reads_the_key_from_a_file_and_list_shows_it(
    invoke: Invoke, cli_settings: Settings, tmp_path: Path
) -> None:
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY + "\n")
    cli_settings.keystore_password = "from the environment"

    result = invoke("keys", "import", "carol", "--private-key-file", key_file)

    assert result.exit_code == 0, result.stderr
    address = Account.from_key(KEY).address
    assert KEY[2:] not in result.stdout + result.stderr
    listed = invoke("keys", "list", "--json")
    assert json.loads(listed.stdout) == [{
        "name": "carol", "address": address,
        "path": str(Path(cli_settings.data_dir) / "keys" / "carol.json"),
    }]
    table = invoke("keys", "list").stdout
    assert "carol" in table and address in table


def test_keys_import_from_the_hidden_prompt(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("keys", "import", "dave", "--password-file", _password_file(tmp_path),
                    input=KEY + "\n")
    assert result.exit_code == 0, result.stderr
    assert Account.from_key(KEY).address in result.stdout
    assert KEY[2:] not in result.stdout + result.stderr


@pytest.mark.parametrize("name", ["../evil", "a/b", "x.json", ".hidden", ""])
def test_a_name_that_could_escape_the_keys_folder_is_refused(
    refused: Callable[..., str], name: str, tmp_path: Path
) -> None:
    line = refused("keys", "new", name, "--password-file", _password_file(tmp_path))
    assert line.startswith(f"error: bad key name {name!r}")


def test_an_existing_name_is_never_overwritten(
    invoke: Invoke, refused: Callable[..., str], cli_settings: Settings, tmp_path: Path
) -> None:
    password = _password_file(tmp_path)
    assert invoke("keys", "new", "erin", "--password-file", password).exit_code == 0
    path = Path(cli_settings.data_dir) / "keys" / "erin.json"
    before = path.read_bytes()

    line = refused("keys", "new", "erin", "--password-file", password)

    assert line == f"error: a keystore named 'erin' exists already: {path}"
    assert path.read_bytes() == before


@pytest.mark.parametrize("text", ["0x1234", "not a key", "0x" + "00" * 32])
def test_a_private_key_that_is_none_is_refused_without_repeating_it(
    refused: Callable[..., str], tmp_path: Path, text: str
) -> None:
    key_file = tmp_path / "key.txt"
    key_file.write_text(text)
    line = refused("keys", "import", "frank", "--private-key-file", key_file,
                   "--password-file", _password_file(tmp_path))
    assert line.startswith("error: not a private key")
    assert text not in line


def test_an_empty_password_is_refused(refused: Callable[..., str], tmp_path: Path) -> None:
    line = refused("keys", "new", "gina", "--password-file", _password_file(tmp_path, ""))
    assert line == "error: an empty password is refused for the new keystore gina"


def test_keys_list_of_an_empty_folder_says_how_to_make_one(invoke: Invoke) -> None:
    result = invoke("keys", "list")
    assert result.exit_code == 0
    assert "escrow keys new NAME" in result.stdout
    assert json.loads(invoke("keys", "list", "--json").stdout) == []
