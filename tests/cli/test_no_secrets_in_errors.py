"""No secret in any error (issue 10, finding 7), and no internal error for bad input.

A password in a URL, a token in a secret command's text, a command the shell cannot
parse, a vault ``config`` nested past the JSON parser's depth, a ``lock`` naming an
impossible process: each is a clear one-line ``popvault: error:`` with its documented
exit code, and never prints the secret.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from popvault.errors import shown_url
from tests.cli.helpers import make_vault, run

SECRET = "S3CRET-t0ken"


def _one_error(err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.startswith("popvault: error: "), err
    assert SECRET not in err, err


@pytest.mark.parametrize(
    "url",
    [
        f"pop3s://me:{SECRET}@pop.example.org:99999",  # also unparsable: a bad port
        f"pop3s://me:{SECRET}@pop.example.org",
        f"pop3://me@pop.example.org?tls=none&password={SECRET}",
        f"pop3s://me@pop.example.org/{SECRET}",
        f"pop3s//me:{SECRET}@pop.example.org",
    ],
)
def test_a_pop3_url_in_an_error_shows_no_secret(tmp_path: Path, url: str) -> None:
    vault = make_vault(tmp_path / "v")
    res = run("--vault", vault, "backup", "--url", url)
    assert res.code == 2, str(res)
    _one_error(res.err)


@pytest.mark.parametrize(
    "args",
    [
        ["restore", "--to", f"imaps://me@imap.example.org/INBOX?token={SECRET}"],
        ["restore", "--to", f"imaps://me:{SECRET}@imap.example.org/INBOX"],
        ["restore", "--to", f"me:{SECRET}@imap.example.org"],
        ["migrate", "--from", "pop3s://me@pop.example.org", "--to", f"x:{SECRET}@y"],
    ],
)
def test_an_imap_target_in_an_error_shows_no_secret(tmp_path: Path, args: list[str]) -> None:
    vault = make_vault(tmp_path / "v")
    res = run("--vault", vault, *args, env={"POPVAULT_IMAP_PASSWORD": "pw"})
    assert res.code == 2, str(res)
    _one_error(res.err)


@pytest.mark.parametrize("command", [f"TOKEN={SECRET} false", f"false {SECRET}", f"echo '{SECRET}"])
def test_a_failing_secret_command_is_not_echoed(tmp_path: Path, command: str) -> None:
    vault = make_vault(tmp_path / "v")
    res = run(
        "--vault", vault, "--passphrase-command", command, "list", env={"POPVAULT_PASSPHRASE": None}
    )
    assert res.code == 2, str(res)
    _one_error(res.err)
    assert "passphrase command failed with exit code" in res.err


def test_a_config_nested_past_the_parser_is_damage(tmp_path: Path) -> None:
    vault = make_vault(tmp_path / "v")
    deep = "[" * 100_000 + "]" * 100_000
    body = json.dumps({"body": "x", "sha256": "0"})[:-1] + f', "x": {deep}}}'
    (vault / "config").write_text(body)
    res = run("--vault", vault, "list")
    assert res.code == 20, str(res)
    _one_error(res.err)


def test_a_lock_of_an_impossible_process_is_stale(tmp_path: Path) -> None:
    import socket

    vault = make_vault(tmp_path / "v")
    lock = {
        "host": socket.gethostname(),
        "pid": 10**30,
        "start": None,
        "time": 0,
        "command": "x",
        "token": "t",
    }
    (vault / "lock").write_text(json.dumps(lock))
    res = run("--vault", vault, "import", "--force", str(tmp_path / "missing.eml"))
    assert "internal error" not in res.err, str(res)
    assert res.code == 2, str(res)  # the missing file; the lock did not stop it
    res = run("--vault", vault, "check")
    assert res.code == 0, str(res)


@given(st.text(min_size=1, max_size=20).filter(lambda t: not set(t) & set("/?#@:")))
def test_shown_url_keeps_scheme_and_host_only(password: str) -> None:
    assert shown_url(f"pop3s://me:{password}@host:995") == "pop3s://…@host:995"
    assert shown_url(f"imaps://me:{password}@host/INBOX") == "imaps://…@host"
    assert shown_url(f"pop3://me@host/?pw={password}") == "pop3://…@host"
    assert shown_url(f"imap://host/{password}") == "imap://host"
    assert shown_url(f"me:{password}@host") == "…"
