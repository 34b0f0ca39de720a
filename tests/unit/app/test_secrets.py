"""The one secret resolver (app/secrets.py): each caller's sources, order, texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from popvault.app.config import AccountConfig
from popvault.app.secrets import (
    account_password,
    find_passphrase,
    from_command,
    from_env,
    from_prompt,
    one_off_password,
    resolve_secret,
)
from popvault.errors import UsageError

FAIL = "exit 3"  # a command that fails if it is ever run


def _file(tmp_path: Path, text: str, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_the_first_source_that_is_set_wins_and_later_ones_are_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PV_TEST_SECRET", "from-env")
    asked: list[str] = []

    def prompt() -> str:
        asked.append("asked")
        return "typed"

    found = resolve_secret(
        [
            from_command(None, "test", "unset command"),
            from_env("PV_TEST_SECRET", "the variable"),
            from_command(FAIL, "test", "a failing command"),
            from_prompt(prompt),
        ],
        UsageError("none"),
    )
    assert (found.value, found.source, found.prompted) == ("from-env", "the variable", False)
    assert asked == []


def test_no_source_set_raises_the_callers_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PV_TEST_SECRET", raising=False)
    missing = UsageError("no test secret", hint="set one")
    with pytest.raises(UsageError) as info:
        resolve_secret([from_env("PV_TEST_SECRET", "x"), from_prompt(None)], missing)
    assert info.value is missing


def test_passphrase_order_options_env_config_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POPVAULT_PASSPHRASE", "env-pass")
    option_file = _file(tmp_path, "file-pass\n", "opt")
    config_file = _file(tmp_path, "config-pass\n", "cfg")

    def prompt(confirm: bool) -> str:
        return "typed" + ("!" if confirm else "")

    def find(
        file: str | None = None,
        command: str | None = None,
        config_file: str | None = None,
        config_command: str | None = None,
    ) -> tuple[bytes, str, str | None, bool]:
        p = find_passphrase(
            file,
            command,
            prompt,
            confirm=True,
            config_file=config_file,
            config_command=config_command,
            config_path="/etc/pv.toml",
        )
        return p.value, p.source, p.file, p.prompted

    full = {"config_file": config_file, "config_command": "echo config-cmd"}
    assert find(file=option_file, command=FAIL, **full) == (
        b"file-pass",
        f"--passphrase-file {option_file}",
        option_file,
        False,
    )
    assert find(command="echo cmd-pass", **full) == (
        b"cmd-pass",
        "--passphrase-command",
        None,
        False,
    )
    assert find(**full)[:2] == (b"env-pass", "POPVAULT_PASSPHRASE")
    monkeypatch.delenv("POPVAULT_PASSPHRASE")
    assert find(**full) == (
        b"config-pass",
        f"passphrase_file {config_file} in /etc/pv.toml",
        config_file,
        False,
    )
    assert find(config_command="echo config-cmd")[:2] == (
        b"config-cmd",
        "passphrase_command in /etc/pv.toml",
    )
    assert find() == (b"typed!", "the prompt", None, True)


def test_no_passphrase_names_the_options_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POPVAULT_NEW_PASSPHRASE", raising=False)
    with pytest.raises(UsageError) as info:
        find_passphrase(
            None, None, None, env="POPVAULT_NEW_PASSPHRASE", option_prefix="--new-passphrase"
        )
    assert info.value.message == "no passphrase given"
    assert info.value.hint == (
        "use --new-passphrase-file, --new-passphrase-command or POPVAULT_NEW_PASSPHRASE"
    )


def test_an_empty_passphrase_names_its_source() -> None:
    with pytest.raises(UsageError) as info:
        find_passphrase(None, None, lambda _confirm: "")
    assert info.value.message == "the passphrase is empty (it came from the prompt)"


def _account(
    password_command: str | None = None,
    password_env: str | None = None,
    password_file: str | None = None,
    password: str | None = None,
) -> AccountConfig:
    return AccountConfig(
        name="isp",
        host="pop.example",
        user="me",
        password_command=password_command,
        password_env=password_env,
        password_file=password_file,
        password=password,
    )


def test_account_password_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PV_ISP_PASSWORD", "env-pw")
    file = _file(tmp_path, "file-pw\nsecond line\n")
    env, plain = "PV_ISP_PASSWORD", "plain"
    assert account_password(_account("echo cmd-pw", env, file, plain)) == "cmd-pw"
    assert account_password(_account(None, env, file, plain)) == "env-pw"
    assert account_password(_account(None, None, file, plain)) == "file-pw"
    assert account_password(_account(None, None, None, plain)) == "plain"


def test_account_password_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PV_ISP_PASSWORD", raising=False)
    with pytest.raises(UsageError) as info:
        account_password(_account(password_env="PV_ISP_PASSWORD", password="never used"))
    assert info.value.message == "account isp: environment variable PV_ISP_PASSWORD is not set"
    with pytest.raises(UsageError) as info:
        account_password(_account(password_command="exit 7"))
    assert info.value.message == "account isp: password command failed with exit code 7"
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UsageError) as info:
        account_password(_account(password_file="~/missing"))
    assert info.value.message == (
        f"cannot read secret file {tmp_path}/missing: No such file or directory"
    )
    with pytest.raises(UsageError) as info:
        account_password(_account())
    assert info.value.message == "account isp has no password source"
    assert info.value.hint == (
        "set password_command, password_env or password_file in its config section"
    )


def test_one_off_password_order(monkeypatch: pytest.MonkeyPatch) -> None:
    labels: list[str] = []

    def prompt(label: str) -> str:
        labels.append(label)
        return "typed"

    monkeypatch.setenv("POPVAULT_IMAP_PASSWORD", "imap-env")
    monkeypatch.delenv("POPVAULT_POP3_PASSWORD", raising=False)
    assert one_off_password("echo from-cmd", "IMAP", prompt) == "from-cmd"
    assert one_off_password(None, "IMAP", prompt) == "imap-env"
    assert one_off_password(None, "POP3", prompt) == "typed"
    assert labels == ["POP3 password"]
    with pytest.raises(UsageError) as info:
        one_off_password(None, "POP3", None)
    assert info.value.message == "no POP3 password"
    assert info.value.hint == "set POPVAULT_POP3_PASSWORD or use --password-command"
    with pytest.raises(UsageError) as info:
        one_off_password("printf ''", "IMAP", prompt)
    assert info.value.message == "IMAP password command printed nothing"
