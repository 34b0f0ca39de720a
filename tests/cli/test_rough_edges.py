"""The rough edges a new user hits (issue 14), each pinned by a test that failed before:
import refusing what is not mail, one passphrase order and its sources named, init and
missing folders, quiet broken pipes, bare ``popvault``, prompt errors in our format,
export to a missing folder, ``check`` beside a running writer, ``key passwd`` and the
passphrase file, the POP3 certificate hint, mbox re-import without duplicates, and the
README's first commands."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from popvault.demo.server import ScriptedPop3Server
from popvault.mailboxes.eml import looks_like_message
from popvault.vault.vault import SourceInfo, Vault
from tests.cli.helpers import (
    PASSPHRASE,
    REPO,
    Result,
    contents,
    ids_of,
    list_json,
    make_vault,
    messages,
    run,
    simple_message,
    write_eml_dir,
    write_maildir,
)
from tests.support.generate import adversarial, big_message
from tests.unit.pop3.certs import make_cert

NO_PASSPHRASE: dict[str, str | None] = {"POPVAULT_PASSPHRASE": None}
CONFIG_TOML = b"""vault = "~/mail.vault"
passphrase_command = "pass show popvault/vault"

[accounts.isp]
host = "pop.example.net"
user = "me@example.net"
password = "hunter2"
"""


def _ok(*args: str | os.PathLike[str], env: dict[str, str | None] | None = None) -> Result:
    res = run(*args, env=env)
    assert res.code == 0, str(res)
    return res


# ------------------------------------------------------------------ 1. import: only mail


def test_import_refuses_a_file_that_is_not_mail_and_force_takes_it(
    vault: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(CONFIG_TOML)
    # refused before the vault is even opened: no passphrase is needed to hear it
    res = run("--vault", vault, "import", config, env=NO_PASSPHRASE)
    assert res.code == 1, str(res)
    lines = res.err.splitlines()
    assert lines[0].startswith(f"popvault: error: {config} is neither a mailbox nor"), res.err
    for expected in ("an mbox", "'From '", "a Maildir", "cur/", "a folder of .eml files"):
        assert expected in lines[0], res.err
    assert lines[1].startswith("popvault: hint:") and "--force" in lines[1], res.err
    assert list_json(vault) == []
    res = _ok("--vault", vault, "import", "--force", config)
    assert "1 new" in res.err
    assert list(contents(vault).values()) == [CONFIG_TOML]


def test_import_takes_messages_of_any_name_and_refuses_folders_without_mail(
    vault: Path, tmp_path: Path
) -> None:
    lf = tmp_path / "saved-from-a-mail-program.txt"
    lf.write_bytes(b"Return-Path: <a@example.org>\nSubject: hi\n\nbody\n")
    crlf = tmp_path / "message"
    crlf.write_bytes(simple_message(1))
    res = _ok("--vault", vault, "import", lf, crlf)
    assert "2 new" in res.err
    empty = tmp_path / "documents"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("not mail\n")
    res = run("--vault", vault, "import", empty)
    assert res.code == 1, str(res)
    assert "neither a Maildir (no cur/ or new/) nor a folder of .eml files" in res.err
    # a folder of .eml files is taken as its names say, other files are not read
    emls = tmp_path / "emls"
    write_eml_dir(emls, [simple_message(2), b"odd, but named .eml\n"])
    (emls / "readme.txt").write_text("ignored\n")
    res = _ok("--vault", vault, "import", emls)
    assert "imported 2 messages" in res.err


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(simple_message(1), True, id="crlf-message"),
        pytest.param(b"From: a@example.org\nSubject: x\n\n", True, id="lf-no-body"),
        pytest.param(
            b"Received: from x\r\n\tby y; Mon, 1 Jan 2018 12:00:00 +0000\r\nDate: now\r\n\r\nb",
            True,
            id="folded-field",
        ),
        pytest.param(b"Subject : obsolete blank\n\nbody\n", True, id="obsolete-blank"),
        pytest.param(b"From: a@example.org\nSubject: no empty line\n", True, id="headers-only"),
        pytest.param(CONFIG_TOML, False, id="toml"),
        pytest.param(b"name: popvault\nversion: 1\n\nno usual field\n", False, id="yaml"),
        pytest.param(b"\nFrom: a@example.org\n\nbody\n", False, id="empty-first-line"),
        pytest.param(b" folded: of nothing\nFrom: a\n\n", False, id="continuation-first"),
        pytest.param(b"Subject: x\nthis line is no field\n\n", False, id="not-a-field"),
        pytest.param(b"", False, id="empty"),
        pytest.param(dict(adversarial())["not-rfc5322"], False, id="png"),
        pytest.param(b"X-Big: " + b"y" * (300 << 10) + b"\nFrom: a\n\n", False, id="huge-line"),
    ],
)
def test_looks_like_message(data: bytes, expected: bool) -> None:
    assert looks_like_message(data[: 256 * 1024]) is expected


# ------------------------------------------------------------------ 2. passphrase sources


def _config(tmp_path: Path, vault: Path, **keys: str) -> Path:
    path = tmp_path / "config.toml"
    lines = [f'vault = "{vault}"', *(f'{k} = "{v}"' for k, v in keys.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_environment_wins_over_the_config_and_the_hint_names_it(
    vault: Path, tmp_path: Path
) -> None:
    good = tmp_path / "good"
    good.write_text(PASSPHRASE + "\n")
    cfg = _config(tmp_path, vault, passphrase_file=str(good))
    res = run("--config", cfg, "list", env={"POPVAULT_PASSPHRASE": "wrong"})
    assert res.code == 12, str(res)
    assert "popvault: hint: the passphrase came from POPVAULT_PASSPHRASE" in res.err
    # without the environment variable, the config's file is used for its own vault,
    # whether it comes from the config or is named on the command line
    _ok("--config", cfg, "list", env=NO_PASSPHRASE)
    _ok("--config", cfg, "--vault", tmp_path / "." / vault.name, "list", env=NO_PASSPHRASE)
    # and the hint names the config's file when that one is wrong
    bad = tmp_path / "bad"
    bad.write_text("wrong\n")
    cfg = _config(tmp_path, vault, passphrase_file=str(bad))
    res = run("--config", cfg, "list", env=NO_PASSPHRASE)
    assert res.code == 12, str(res)
    assert f"the passphrase came from passphrase_file {bad} in {cfg}" in res.err
    res = run("--passphrase-file", good, "--config", cfg, "list", env=NO_PASSPHRASE)
    assert res.code == 0, str(res)
    res = run(
        "--passphrase-command",
        "echo wrong",
        "--config",
        cfg,
        "list",
        env={"POPVAULT_PASSPHRASE": PASSPHRASE},
    )
    assert res.code == 12 and "came from --passphrase-command" in res.err, str(res)


def test_the_config_passphrase_is_only_for_the_config_vault(vault: Path, tmp_path: Path) -> None:
    other = make_vault(tmp_path / "other")
    good = tmp_path / "good"
    good.write_text(PASSPHRASE + "\n")
    cfg = _config(tmp_path, vault, passphrase_command=f"cat {good}")
    res = run("--config", cfg, "--vault", other, "list", env=NO_PASSPHRASE)
    assert res.code == 2, str(res)
    assert "popvault: error: no passphrase given" in res.err
    assert "passphrase_command in" in res.err and "only for the vault" in res.err
    _ok("--config", cfg, "list", env=NO_PASSPHRASE)
    # a config without 'vault =' names no vault: its passphrase serves the one given
    # (cron jobs with --vault and such a config keep working)
    lone = tmp_path / "lone.toml"
    lone.write_text(f'passphrase_command = "cat {good}"\n')
    _ok("--config", lone, "--vault", vault, "list", env=NO_PASSPHRASE)
    _ok("--config", lone, "--vault", other, "list", env=NO_PASSPHRASE)


def test_samples_and_docs_state_the_one_passphrase_order() -> None:
    def prose(path: str) -> str:
        lines = (REPO / path).read_text(encoding="utf-8").splitlines()
        return " ".join(line.lstrip("#").strip() for line in lines)

    sample = prose("samples/config.toml")
    assert "wins over" not in sample
    assert "used only for the vault above (not for another --vault)" in sample
    assert "POPVAULT_PASSPHRASE are not given: those win over this file" in sample
    cli = prose("docs/cli.md")
    assert "3. the environment variable `POPVAULT_PASSPHRASE`; 4. `passphrase_file`" in cli
    assert "are only for the vault its `vault =` names" in cli
    assert "The file's passphrase source is only for its own vault" in prose("docs/config.md")


# ------------------------------------------------------------------ a terminal


PROMPT = re.compile(rb"(Vault passphrase|Repeat for confirmation|New passphrase): $")
_CHILD = (
    "import fcntl, runpy, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"  # the terminal getpass opens as /dev/tty
    "sys.argv = ['popvault', *sys.argv[1:]]\n"
    "runpy.run_module('popvault', run_name='__main__')\n"
)


def run_on_terminal(
    args: Sequence[str | os.PathLike[str]], answers: Sequence[str], timeout: float = 90
) -> tuple[int, str]:
    """Run popvault on a terminal of its own (stdin, stderr, controlling terminal),
    typing one answer at each prompt ("\\x04" is Ctrl-D); returns the exit code and all
    the terminal showed."""
    import pty

    env = {k: v for k, v in os.environ.items() if k != "POPVAULT_PASSPHRASE"}
    env["PYTHONPATH"] = str(REPO)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *[os.fspath(a) for a in args]],
        stdin=follower,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=env,
        start_new_session=True,
    )
    os.close(follower)
    out = b""
    answered = 0
    todo = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child is gone
                break
            if not chunk:
                break
            out += chunk
            if todo and PROMPT.search(out[answered:]):
                answer = todo.pop(0)
                os.write(leader, answer.encode() + (b"" if answer == "\x04" else b"\n"))
                answered = len(out)
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return code, out.decode("utf-8", "replace").replace("\r\n", "\n")


def test_a_wrong_passphrase_at_the_prompt_is_asked_again(vault: Path) -> None:
    code, shown = run_on_terminal(["--vault", vault, "list"], ["wrong", "also wrong", PASSPHRASE])
    assert code == 0, shown
    assert shown.count("Vault passphrase:") == 3, shown
    assert shown.count("popvault: warning: wrong passphrase; try again") == 2, shown
    code, shown = run_on_terminal(["--vault", vault, "list"], ["a", "b", "c", PASSPHRASE])
    assert code == 12, shown
    assert shown.count("Vault passphrase:") == 3, shown
    assert "popvault: error: wrong passphrase" in shown
    assert "popvault: hint: 3 passphrases typed at the prompt were wrong" in shown


def test_prompt_errors_are_popvault_errors(tmp_path: Path) -> None:
    path = tmp_path / "new"
    code, shown = run_on_terminal(
        ["--vault", path, "init"], ["one", "two", "three", "four", "five", "six"]
    )
    assert code == 2, shown
    assert shown.count("popvault: warning: the two entries do not match; try again") == 2
    assert "popvault: error: the two entries of the vault passphrase did not match" in shown
    assert "popvault: hint:" in shown and "Error:" not in shown, shown
    assert not path.exists()
    code, shown = run_on_terminal(["--vault", path, "init"], ["\x04"])
    assert code == 2, shown
    assert "popvault: error: no vault passphrase entered: the input ended" in shown, shown
    assert "Abort" not in shown and "Error:" not in shown, shown
    # and the happy path, for contrast
    code, shown = run_on_terminal(["--vault", path, "init"], ["s3cret pass", "s3cret pass"])
    assert code == 0 and "created vault" in shown, shown


# ------------------------------------------------------------------ 3. init and parents


def test_init_refuses_a_missing_parent_unless_told(tmp_path: Path) -> None:
    path = tmp_path / "media" / "usb-disk" / "mail.vault"
    res = run("--vault", path, "init")
    assert res.code == 2, str(res)
    assert res.err.splitlines()[0] == (
        f"popvault: error: cannot create the vault {path}: its parent folder"
        f" {path.parent} does not exist"
    )
    assert "popvault: hint:" in res.err and "--parents" in res.err
    assert not (tmp_path / "media").exists()
    res = _ok("--vault", path, "init", "--parents")
    assert "created vault" in res.err and (path / "config").is_file()


# ------------------------------------------------------------------ 4. broken pipes


def _piped_into_head(args: Sequence[str | os.PathLike[str]], head: Sequence[str]) -> Result:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    producer = subprocess.Popen(
        [sys.executable, "-m", "popvault", *[os.fspath(a) for a in args]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert producer.stdout is not None and producer.stderr is not None
    consumer = subprocess.Popen(["head", *head], stdin=producer.stdout, stdout=subprocess.PIPE)
    producer.stdout.close()  # only head reads it now
    shown, _ = consumer.communicate(timeout=120)
    err = producer.stderr.read()
    producer.stderr.close()
    return Result(producer.wait(timeout=120), shown, err.decode("utf-8", "replace"))


def test_output_into_a_pipe_closed_early_is_quiet(vault: Path, tmp_path: Path) -> None:
    # more than a pipe holds (64 KiB), so popvault is still writing when head exits
    write_maildir(tmp_path / "md", [simple_message(i) for i in range(1200)])
    big = simple_message(0).replace(b"body 0", b"x" * (2 << 20))
    (tmp_path / "big.eml").write_bytes(big)
    _ok("--vault", vault, "import", tmp_path / "md", tmp_path / "big.eml")
    big_id = next(r["id"] for r in list_json(vault) if r["size"] == len(big))
    for args, head in [
        (["list"], ["-1"]),
        (["list", "--json"], ["-c", "10"]),
        (["show", big_id], ["-c", "10"]),
    ]:
        res = _piped_into_head(["--vault", vault, *args], head)
        assert (res.code, res.err) == (0, ""), (args, str(res))
        assert res.out, args


# ------------------------------------------------------------------ 5. bare popvault


def test_bare_popvault_and_bare_groups_show_help() -> None:
    for args in ([], ["key"], ["index"]):
        res = run(*args)
        assert res.code == 0, str(res)
        assert res.err == "", str(res)
        assert res.text.startswith(" ".join(["Usage: popvault", *args])), str(res)
        assert "Commands:" in res.text


# ------------------------------------------------------------------ 7. export to a missing folder


def test_export_to_a_missing_folder_names_the_users_path(
    filled_vault: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "not-mounted" / "mail.mbox"
    for args in (["export", dest, "--format", "mbox"], ["restore", "--to", f"mbox:{dest}"]):
        res = run("--vault", filled_vault, *args)
        assert res.code == 2, str(res)
        assert res.err.splitlines()[0] == (
            f"popvault: error: cannot write the mbox {dest}: the folder {dest.parent}"
            " does not exist"
        ), str(res)
        assert ".tmp" not in res.err and "popvault: hint:" in res.err
    res = run("--vault", filled_vault, "export", tmp_path, "--format", "mbox")
    assert res.code == 1 and f"cannot write the mbox {tmp_path}: Is a directory" in res.err
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture
def filled_vault(vault: Path, tmp_path: Path) -> Path:
    write_maildir(tmp_path / "filled-md", [simple_message(i) for i in range(3)])
    _ok("--vault", vault, "import", tmp_path / "filled-md")
    return vault


# ------------------------------------------------------------------ 8. check beside a writer


def test_check_beside_a_running_writer_does_not_call_its_packs_leftovers(
    filled_vault: Path, tmp_path: Path
) -> None:
    writer = Vault.open(
        filled_vault,
        PASSPHRASE.encode(),
        write=True,
        command="popvault backup",
        cache_dir=tmp_path / "writer-cache",
    )
    try:
        # messages until a pack is full: it is written long before the commit (by a
        # thread: a pack being written is a temporary dot-file until it is complete)
        def packs() -> set[str]:
            return {
                p.name
                for p in (filled_vault / "packs").rglob("*")
                if p.is_file() and not p.name.startswith(".")
            }

        committed = packs()
        for seed in range(20):
            w = writer.new_message()
            for chunk in big_message(4 << 20, seed=seed):
                w.write(chunk)
            w.finish(SourceInfo(account="acct", source=f"test:{seed}"))
            if packs() != committed:
                break
        uncommitted = packs() - committed
        assert uncommitted
        res = run("--vault", filled_vault, "check")
        assert res.code == 0, str(res)
        assert "a writer is running (popvault backup, process" in res.err, str(res)
        assert f"process {os.getpid()} on" in res.err
        assert "not problems" in res.err and "interrupted run" not in res.err, str(res)
        assert committed | uncommitted <= packs()  # check removed nothing
    finally:
        writer.close()  # without a commit: now its packs are leftovers indeed
    res = run("--vault", filled_vault, "check")
    assert res.code == 0, str(res)
    assert "left by an interrupted run" in res.err and "writer is running" not in res.err


# ------------------------------------------------------------------ 9. key passwd


def test_key_passwd_warns_that_the_passphrase_file_is_stale(vault: Path, tmp_path: Path) -> None:
    file = tmp_path / "passphrase"
    file.write_text(PASSPHRASE + "\n")
    res = run(
        "--vault",
        vault,
        "--passphrase-file",
        file,
        "key",
        "passwd",
        env={"POPVAULT_NEW_PASSPHRASE": "second", "POPVAULT_PASSPHRASE": None},
    )
    assert res.code == 0, str(res)
    assert f"popvault: warning: {file} still holds the old passphrase" in res.err, str(res)
    # the config's file, for the config's vault
    file.write_text("second\n")
    cfg = _config(tmp_path, vault, passphrase_file=str(file))
    res = run(
        "--config", cfg, "key", "passwd", env={"POPVAULT_NEW_PASSPHRASE": "third", **NO_PASSPHRASE}
    )
    assert res.code == 0, str(res)
    assert f"popvault: warning: {file} still holds the old passphrase" in res.err, str(res)
    res = run(
        "--vault",
        vault,
        "key",
        "passwd",
        env={"POPVAULT_PASSPHRASE": "third", "POPVAULT_NEW_PASSPHRASE": "4th"},
    )
    assert res.code == 0, str(res)
    assert "POPVAULT_PASSPHRASE still gives the old passphrase" in res.err, str(res)


# ------------------------------------------------------------------ 10. POP3 certificate hint


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_pop3_certificate_error_has_a_hint(vault: Path, tmp_path: Path, mode: str) -> None:
    cert = make_cert(tmp_path)
    with ScriptedPop3Server(
        [("u1", simple_message(1))],
        user="alice",
        password="pw",
        tls=mode,  # type: ignore[arg-type]
        ssl_context=cert.server_context(),
    ) as srv:
        scheme = "pop3s" if mode == "implicit" else "pop3"
        url = f"{scheme}://alice@127.0.0.1:{srv.port}"
        res = run("--vault", vault, "backup", "--url", url, env={"POPVAULT_POP3_PASSWORD": "pw"})
        assert res.code == 1, str(res)
        lines = res.err.splitlines()
        assert lines[0].startswith("popvault: error: account alice@127.0.0.1:"), str(res)
        assert "certificate refused" in lines[0]
        assert lines[1].startswith("popvault: hint:"), str(res)
        for word in ("tls_ca_file", "tls_fingerprint", "--tls-ca-file", "--tls-fingerprint"):
            assert word in lines[1], str(res)
        # and the hint is right: with the CA, the same backup works
        res = run(
            "--vault",
            vault,
            "backup",
            "--url",
            url,
            "--tls-ca-file",
            cert.cert_file,
            env={"POPVAULT_POP3_PASSWORD": "pw"},
        )
        assert res.code == 0, str(res)


# ------------------------------------------------------------------ 11. mbox re-import


REIMPORT = {
    "crlf": simple_message(1),
    "crlf-from-lines": b"From: a@example.org\r\nSubject: f\r\n\r\nFrom here\r\n>From there\r\n",
    "crlf-no-final-newline": b"From: a@example.org\r\nSubject: nf\r\n\r\nno final newline",
    "crlf-trailing-blank-lines": b"From: c@example.org\r\nSubject: b\r\n\r\nbody\r\n\r\n\r\n",
    "crlf-lone-cr": b"From: d@example.org\r\nSubject: cr\r\n\r\nend with CR\r\r\nx\rx\r\n",
    "lf": b"From: b@example.org\nSubject: lf\n\nbody\nFrom me\n",
    "lf-no-final-newline": b"From: b@example.org\nSubject: lf nf\n\nbody",
    "empty-body": b"From: e@example.org\r\nSubject: empty\r\n\r\n",
}
MIXED = b"From: m@example.org\r\nSubject: mixed\r\n\r\ncrlf\r\nlf\nend\r\n"


def test_reimporting_an_mbox_export_adds_nothing(vault: Path, tmp_path: Path) -> None:
    pop3 = [(k, m) for k, m in REIMPORT.items() if m.startswith(b"From: ") and b"\r\n" in m]
    local = [m for k, m in REIMPORT.items() if k.startswith("lf")] + messages(5, seed=4)
    with ScriptedPop3Server([*pop3, ("mixed", MIXED)], user="alice", password="pw") as srv:
        url = f"pop3://alice@127.0.0.1:{srv.port}?tls=none"
        res = run("--vault", vault, "backup", "--url", url, env={"POPVAULT_POP3_PASSWORD": "pw"})
        assert res.code == 0, str(res)
    write_maildir(tmp_path / "md", local)
    _ok("--vault", vault, "import", tmp_path / "md")
    before = contents(vault)
    assert len(before) == len(REIMPORT) + 1 + 5
    for name, extra in [("lf.mbox", []), ("crlf.mbox", ["--crlf"])]:
        mbox = tmp_path / name
        _ok("--vault", vault, "export", mbox, "--format", "mbox", *extra)
        res = _ok("--vault", vault, "import", mbox)
        if extra:
            assert f"0 new, {len(before) + 1} already in the vault" in res.err, str(res)
        else:
            # the one documented exception: CRLF and bare LF mixed in one message
            assert f"1 new, {len(before) - 1} already in the vault" in res.err, str(res)
            new = set(contents(vault).items()) - set(before.items())
            assert new == {(next(iter(ids_of(vault) - set(before))), MIXED.replace(b"\r\n", b"\n"))}
    after = contents(vault)
    assert {k: after[k] for k in before} == before  # the bytes of each message unchanged
    # every re-imported message is known under its mbox sources too
    sources = {r["id"]: r["sources"] for r in list_json(vault)}
    for mid, data in before.items():
        mboxes = {s.split("#")[0] for s in sources[mid] if s.startswith("mbox:")}
        expected = {"crlf.mbox"} if data == MIXED else {"lf.mbox", "crlf.mbox"}
        assert mboxes == {f"mbox:{tmp_path / n}" for n in expected}, sources[mid]


def test_reimporting_a_large_message_from_an_mbox_export_adds_nothing(
    vault: Path, tmp_path: Path
) -> None:
    big = b"".join(big_message(17 << 20, seed=3))  # over 16 MiB: streamed, not held whole
    write_maildir(tmp_path / "md", [big])
    _ok("--vault", vault, "import", tmp_path / "md")
    _ok("--vault", vault, "export", tmp_path / "out.mbox", "--format", "mbox")
    res = _ok("--vault", vault, "import", tmp_path / "out.mbox")
    assert "0 new, 1 already in the vault" in res.err, str(res)
    # into an empty vault, the bytes are the file's as always (LF)
    fresh = make_vault(tmp_path / "fresh")
    _ok("--vault", fresh, "import", tmp_path / "out.mbox")
    assert list(contents(fresh).values()) == [big.replace(b"\r\n", b"\n")]


# ------------------------------------------------------------------ 12. README


def test_readme_first_screen_sets_up_in_two_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2, commands
    first, second = commands
    assert first.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -e .")
    assert "popvault demo" in first
    assert "bash .ci/run" in second
    head = readme[: readme.index("## Everyday use")]
    assert "root" in head and "apt-get" in head and re.search(r"\d+ minutes", head)
    assert "externally-managed-environment" in head


def _mbox(path: Path, msgs: list[bytes]) -> None:
    from popvault.mailboxes.mbox import MboxWriter

    with MboxWriter(path) as w:
        for m in msgs:
            w.add(m)


def test_new_mail_in_an_mbox_is_not_hashed_in_other_forms(
    vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-import check costs new mail (a Message-ID the vault does not know) one
    look-up, not two more passes over its bytes; a re-import still goes through it."""
    from popvault.app import importer

    calls: list[int] = []
    real = importer._form_ids

    def counting(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(importer, "_form_ids", counting)
    old = [m.replace(b"\r\n", b"\n") for m in messages(6, seed=21)]
    _mbox(tmp_path / "old.mbox", old)
    _ok("--vault", vault, "import", tmp_path / "old.mbox")
    new = [m.replace(b"\r\n", b"\n") for m in messages(8, seed=22)]
    assert all(b"\nMessage-ID: " in m or b"\nMessage-Id: " in m for m in new)
    _mbox(tmp_path / "new.mbox", new)
    res = _ok("--vault", vault, "import", tmp_path / "new.mbox")
    assert "8 new" in res.err, str(res)
    assert calls == []
    _ok("--vault", vault, "export", tmp_path / "out.mbox", "--format", "mbox")
    res = _ok("--vault", vault, "import", tmp_path / "out.mbox")
    assert "0 new" in res.err and len(calls) == 0, str(res)  # LF as stored: found as read
