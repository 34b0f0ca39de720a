"""Exit codes (docs/cli.md, DESIGN.md "Exit codes"): what cron and systemd act on.

Each case drives the real entry point and checks the code, a one-line
``popvault: error: ...`` on stderr (never a traceback) and, where it matters, that the
vault was left exactly as it was.
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import popvault.mailboxes.mbox as mbox_module
from popvault.vault.crypto import checksum_json
from popvault.vault.lock import process_start
from popvault.vault.pack import HEADER_SIZE
from tests.cli.helpers import (
    contents,
    env_of,
    first_error_line,
    ids_of,
    make_vault,
    messages,
    run,
    run_sub,
    simple_message,
    tree,
    write_maildir,
    write_mbox,
)


def assert_one_line_error(err: str, *, code_name: str = "") -> None:
    assert "Traceback" not in err, err
    assert err.startswith("popvault: error:"), err
    lines = err.splitlines()
    assert all(line.startswith("popvault: ") for line in lines), err
    assert len([line for line in lines if line.startswith("popvault: error:")]) == 1, err


# ------------------------------------------------------------------ 10: no vault


@pytest.mark.parametrize("kind", ["empty dir", "not a vault", "missing path", "a file"])
def test_no_vault_is_10(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    if kind == "empty dir":
        target.mkdir()
    elif kind == "not a vault":
        target.mkdir()
        (target / "notes.txt").write_text("hello\n")
        (target / "packs").mkdir()
    elif kind == "a file":
        target.write_text("not a vault\n")
    for args in (["list"], ["check"], ["import", str(tmp_path)]):
        res = run("--vault", target, *args)
        assert res.code == 10, str(res)
        assert_one_line_error(res.err)
        assert str(target) in first_error_line(res.err)
    if kind == "missing path":
        assert not target.exists(), "a read command must not create the vault directory"


def test_config_of_another_format_is_10(tmp_path: Path) -> None:
    target = tmp_path / "other"
    target.mkdir()
    (target / "config").write_bytes(checksum_json({"format": "restic", "version": 1}))
    res = run("--vault", target, "list")
    assert res.code == 10, str(res)
    assert "not a popvault vault" in res.err


# ------------------------------------------------------------------ 12: passphrase


def test_wrong_passphrase_is_12_in_process(vault: Path) -> None:
    res = run("--vault", vault, "list", env={"POPVAULT_PASSPHRASE": "wrong"})
    assert res.code == 12, str(res)
    assert_one_line_error(res.err)
    assert "passphrase" in first_error_line(res.err)


def test_wrong_passphrase_is_12_end_to_end(vault: Path, tmp_path: Path) -> None:
    res = run_sub("--vault", vault, "list", env=env_of(tmp_path, POPVAULT_PASSPHRASE="wrong"))
    assert res.code == 12, str(res)
    assert_one_line_error(res.err)
    assert res.out == b""


def test_no_passphrase_without_terminal_is_2(vault: Path, tmp_path: Path) -> None:
    env = env_of(tmp_path)
    env["POPVAULT_PASSPHRASE"] = ""
    res = run_sub("--vault", vault, "list", env=env)
    assert res.code == 2, str(res)
    assert_one_line_error(res.err)


# ------------------------------------------------------------------ 11: locks


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _write_lock(vault: Path, pid: int, *, host: str | None = None, start: str | None) -> None:
    info = {
        "host": host or socket.gethostname(),
        "pid": pid,
        "start": start,
        "time": time.time() - 60,
        "command": "popvault backup",
        "token": "00" * 8,
    }
    (vault / "lock").write_text(json.dumps(info))


def test_lock_of_live_process_is_11(
    vault: Path, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    start = process_start(sleeper.pid)
    assert start is not None
    _write_lock(vault, sleeper.pid, start=start)
    maildir = tmp_path / "md"
    write_maildir(maildir, [simple_message(1)])
    before = tree(vault)
    res = run("--vault", vault, "import", maildir)
    assert res.code == 11, str(res)
    assert_one_line_error(res.err)
    line = first_error_line(res.err)
    assert f"process {sleeper.pid}" in line and socket.gethostname() in line, line
    assert "popvault backup" in line
    assert tree(vault) == before, "a locked vault was changed"
    # readers do not need the lock
    res = run("--vault", vault, "list")
    assert res.code == 0, str(res)


def test_lock_of_another_host_is_never_broken(vault: Path, tmp_path: Path) -> None:
    _write_lock(vault, 1, host="elsewhere.example", start="1")
    maildir = tmp_path / "md"
    write_maildir(maildir, [simple_message(1)])
    res = run("--vault", vault, "import", maildir)
    assert res.code == 11, str(res)
    assert "elsewhere.example" in res.err
    assert (vault / "lock").exists()


def test_stale_lock_of_dead_process_is_broken_with_a_warning(vault: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    start = process_start(proc.pid)
    proc.wait()
    _write_lock(vault, proc.pid, start=start)
    maildir = tmp_path / "md"
    write_maildir(maildir, [simple_message(1), simple_message(2)])
    res = run("--vault", vault, "import", maildir)
    assert res.code == 0, str(res)
    assert f"popvault: warning: removed a stale lock of process {proc.pid}" in res.err
    assert not (vault / "lock").exists(), "the lock must be released after the run"
    assert len(ids_of(vault)) == 2


def test_lock_of_reused_pid_is_stale(vault: Path, tmp_path: Path) -> None:
    # A live pid whose start time differs: the locking process died and its pid was reused.
    _write_lock(vault, os.getpid(), start="1")
    maildir = tmp_path / "md"
    write_maildir(maildir, [simple_message(1)])
    res = run("--vault", vault, "import", maildir)
    assert res.code == 0, str(res)
    assert "removed a stale lock" in res.err


# ------------------------------------------------------------------ 2: usage


def test_bad_option_is_2(vault: Path) -> None:
    res = run("--vault", vault, "list", "--no-such-option")
    assert res.code == 2, str(res)
    assert "--no-such-option" in res.err
    assert "Traceback" not in res.err


def test_unknown_command_is_2() -> None:
    res = run("frobnicate")
    assert res.code == 2, str(res)


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_bad_date_is_2(vault: Path, option: str) -> None:
    res = run("--vault", vault, "list", option, "2020-13-45")
    assert res.code == 2, str(res)
    assert_one_line_error(res.err)
    assert option in first_error_line(res.err) and "2020-13-45" in first_error_line(res.err)


def test_unknown_export_format_is_2(vault: Path, tmp_path: Path) -> None:
    res = run("--vault", vault, "export", tmp_path / "out", "--format", "pst")
    assert res.code == 2, str(res)
    assert "pst" in res.err
    assert not (tmp_path / "out").exists()


def test_missing_config_is_2(vault: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    for args in (["--vault", str(vault), "list"], ["backup"]):
        res = run("--config", missing, *args)
        assert res.code == 2, str(res)
        assert_one_line_error(res.err)
        assert str(missing) in first_error_line(res.err)


def _config(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_config_unknown_key_names_file_line_and_key(vault: Path, tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        f'vault = "{vault}"\n\n[accounts.work]\nhost = "pop.example.org"\n'
        'user = "me"\nhots = "typo"\n',
    )
    for args in (["list"], ["backup"]):
        res = run("--config", cfg, *args)
        assert res.code == 2, str(res)
        assert_one_line_error(res.err)
        assert f"{cfg}:6" in res.err and "hots" in res.err, res.err


def test_config_unknown_top_level_key(vault: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path, f'vault = "{vault}"\nvualt = "x"\n')
    res = run("--config", cfg, "list")
    assert res.code == 2, str(res)
    assert f"{cfg}:2" in res.err and "vualt" in res.err


def test_config_wrong_type_is_2(vault: Path, tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        f'vault = "{vault}"\n[accounts.work]\nhost = "h"\nuser = "u"\nport = "995"\n',
    )
    res = run("--config", cfg, "backup")
    assert res.code == 2, str(res)
    assert_one_line_error(res.err)
    assert f"{cfg}:5" in res.err and "port" in res.err and "int" in res.err


def test_config_not_toml_is_2(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "vault = \n")
    res = run("--config", cfg, "list")
    assert res.code == 2, str(res)
    assert str(cfg) in res.err
    assert "Traceback" not in res.err


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_plaintext_password_in_readable_config_is_2(vault: Path, tmp_path: Path, mode: int) -> None:
    cfg = _config(
        tmp_path,
        f'vault = "{vault}"\n[accounts.work]\nhost = "h"\nuser = "u"\npassword = "hunter2"\n',
        mode,
    )
    res = run("--config", cfg, "backup")
    assert res.code == 2, str(res)
    assert_one_line_error(res.err)
    assert f"{cfg}:5" in res.err and "chmod 600" in res.err
    assert "hunter2" not in res.err + res.text


# ------------------------------------------------------------------ 20: integrity


def _import(vault: Path, source: Path, *extra: str) -> None:
    res = run("--vault", vault, "import", source, *extra)
    assert res.code == 0, str(res)


def _packs(vault: Path) -> set[Path]:
    return set((vault / "packs").rglob("*"))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.chmod(0o600)
    path.write_bytes(bytes(data))


@pytest.fixture
def damaged(vault: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes], dict[str, bytes]]:
    """A vault of two imports (one pack each) whose first pack has one flipped byte.

    Returns the vault, the first import's messages (id -> bytes) and the second's."""
    first = messages(6, seed=11)
    second = messages(5, seed=12)
    write_maildir(tmp_path / "a", first)
    _import(vault, tmp_path / "a")
    good_before = contents(vault)
    packs_a = {p for p in _packs(vault) if p.is_file()}
    assert len(packs_a) == 1
    write_maildir(tmp_path / "b", second)
    _import(vault, tmp_path / "b")
    all_good = contents(vault)
    assert len(all_good) == 11
    _flip(next(iter(packs_a)), HEADER_SIZE + 4 + 40)
    in_first = dict(good_before)
    in_second = {k: v for k, v in all_good.items() if k not in in_first}
    return vault, in_first, in_second


def test_check_read_data_finds_a_flipped_byte(
    damaged: tuple[Path, dict[str, bytes], dict[str, bytes]],
) -> None:
    vault, bad, good = damaged
    res = run("--vault", vault, "check")
    # the structure check need not read packs, but must not claim more than it knows
    assert res.code in (0, 20), str(res)
    res = run("--vault", vault, "check", "--read-data")
    assert res.code == 20, str(res)
    assert "popvault: error:" in res.err and "Traceback" not in res.err
    listed = res.text
    for mid in bad:
        assert mid in listed, f"damaged message {mid[:12]} not listed:\n{listed}"
    for mid in good:
        assert mid not in listed, f"intact message {mid[:12]} listed as damaged"


def test_show_of_damaged_message_is_20_and_prints_nothing(
    damaged: tuple[Path, dict[str, bytes], dict[str, bytes]],
) -> None:
    vault, bad, good = damaged
    res = run("--vault", vault, "show", next(iter(bad)))
    assert res.code == 20, str(res)
    assert res.out == b""
    mid, data = next(iter(good.items()))
    res = run("--vault", vault, "show", mid)
    assert res.code == 0 and res.out == data


def test_export_refuses_damaged_data(
    damaged: tuple[Path, dict[str, bytes], dict[str, bytes]], tmp_path: Path
) -> None:
    vault, bad, good = damaged
    out = tmp_path / "export"
    res = run("--vault", vault, "export", out, "--format", "eml")
    assert res.code == 20, str(res)
    assert "damaged" in res.err
    written = {p.read_bytes() for p in out.iterdir()}
    assert written == set(good.values())
    assert not written & set(bad.values())


# ------------------------------------------------------------------ versions, caches


def test_newer_format_version_is_refused_and_vault_untouched(vault: Path, tmp_path: Path) -> None:
    write_maildir(tmp_path / "md", [simple_message(1)])
    _import(vault, tmp_path / "md")
    body = json.loads((vault / "config").read_bytes())["body"]
    body["version"] = 3  # newer than any popvault reads (format §4)
    (vault / "config").chmod(0o600)
    (vault / "config").write_bytes(checksum_json(body))
    before = tree(vault)
    for args in (["list"], ["check", "--read-data"], ["import", str(tmp_path / "md")]):
        res = run("--vault", vault, *args)
        assert res.code == 1, str(res)
        assert_one_line_error(res.err)
        assert "version 3" in first_error_line(res.err) and "newer" in first_error_line(res.err)
        assert "upgrade" in res.err
        assert tree(vault) == before


def test_damaged_config_is_20(vault: Path) -> None:
    cfg = vault / "config"
    cfg.chmod(0o600)
    cfg.write_bytes(cfg.read_bytes().replace(b'"version": 2', b'"version": 3'))
    res = run("--vault", vault, "list")
    assert res.code == 20, str(res)
    assert "checksum" in res.err


def test_cache_of_another_vault_is_2(vault: Path, tmp_path: Path) -> None:
    other = make_vault(tmp_path / "other")
    assert run("--vault", other, "list").code == 0
    (other_cache,) = (tmp_path / "cache").glob("*.sqlite")
    res = run("--vault", vault, "--cache", other_cache, "list")
    assert res.code == 2, str(res)
    assert_one_line_error(res.err)
    assert "another vault" in res.err and str(other_cache) in res.err
    # the other vault's cache still works for the other vault
    assert run("--vault", other, "--cache", other_cache, "list").code == 0


# ------------------------------------------------------------------ import inputs


def test_truncated_mbox_imports_what_is_there(vault: Path, tmp_path: Path) -> None:
    msgs = [simple_message(i) for i in range(3)]
    lf = [m.replace(b"\r\n", b"\n") for m in msgs]
    box = tmp_path / "cut.mbox"
    write_mbox(box, lf)
    data = box.read_bytes()
    cut = len(data) - len(lf[2]) // 2 - 1  # half of the final message and its separator
    box.write_bytes(data[:cut])
    res = run("--vault", vault, "import", box)
    assert res.code == 0, str(res)
    got = set(contents(vault).values())
    partial = data[:cut][data[:cut].rindex(b"2018\n") + 5 :]
    assert got == {lf[0], lf[1], partial}
    assert lf[2].startswith(partial) and len(partial) < len(lf[2])
    assert "A final message cut off" in (mbox_module.__doc__ or ""), (
        "the truncation behaviour must stay documented"
    )


def test_mbox_without_from_line_is_1_and_vault_unchanged(vault: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.mbox"
    write_mbox(good, [simple_message(1).replace(b"\r\n", b"\n")])
    bad = tmp_path / "bad.mbox"
    bad.write_bytes(simple_message(2))
    before = tree(vault)
    res = run("--vault", vault, "import", good, bad)
    assert res.code == 1, str(res)
    assert_one_line_error(res.err)
    assert str(bad) in first_error_line(res.err) and "From " in first_error_line(res.err)
    assert tree(vault) == before
    assert ids_of(vault) == set()


def test_missing_source_is_2_and_vault_unchanged(vault: Path, tmp_path: Path) -> None:
    write_maildir(tmp_path / "md", [simple_message(1)])
    before = tree(vault)
    res = run("--vault", vault, "import", tmp_path / "md", tmp_path / "absent")
    assert res.code == 2, str(res)
    assert "absent" in res.err
    assert tree(vault) == before


def test_maildir_with_unreadable_files_is_3_and_imports_the_rest(
    vault: Path, tmp_path: Path
) -> None:
    md = tmp_path / "md"
    msgs = [simple_message(i) for i in range(4)]
    write_maildir(md, msgs)
    # As root nothing is unreadable by mode; these fail for anyone.
    (md / "cur" / "a-directory:2,S").mkdir()
    (md / "new" / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(md / "cur" / "fifo:2,")  # would block a reader that opens it
    res = run_sub("--vault", vault, "import", md, env=env_of(tmp_path), timeout=30)
    assert res.code == 3, str(res)
    assert "a-directory" in res.err and "dangling" in res.err and "fifo" in res.err
    assert "3 file(s) could not be read" in res.err
    assert set(contents(vault).values()) == set(msgs)


# ------------------------------------------------------------------ disk full


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"cannot mount a 2 MiB tmpfs for the disk-full test: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _incompressible(n: int, size: int) -> bytes:
    body = base64.encodebytes(random.Random(n).randbytes(size)).replace(b"\n", b"\r\n")
    return simple_message(n)[:-2] + b"\r\n" + body


def test_disk_full_is_1_and_earlier_commits_survive(tiny_fs: Path, tmp_path: Path) -> None:
    vault = make_vault(tiny_fs / "vault")
    small = [simple_message(i) for i in range(5)]
    write_maildir(tmp_path / "small", small)
    _import(vault, tmp_path / "small")
    big = [_incompressible(100 + i, 300_000) for i in range(10)]  # ~4 MiB base64
    write_maildir(tmp_path / "big", big)
    res = run("--vault", vault, "import", tmp_path / "big")
    assert res.code == 1, str(res)
    assert_one_line_error(res.err)
    assert "no space left" in first_error_line(res.err)
    assert not (vault / "lock").exists(), "the lock must be released after a failed run"
    assert set(contents(vault).values()) == set(small)
    res = run("--vault", vault, "check", "--read-data")
    assert res.code == 0, str(res)
    # once space is free again, a new run cleans up and succeeds
    res = run("--vault", vault, "import", tmp_path / "small")
    assert res.code == 0, str(res)
    assert set(contents(vault).values()) == set(small)


def test_fifos_among_sources_never_block_an_import(vault: Path, tmp_path: Path) -> None:
    # a FIFO as a source is refused (1) before anything is added
    fifo = tmp_path / "pipe.mbox"
    os.mkfifo(fifo)
    write_maildir(tmp_path / "md", [simple_message(1)])
    before = tree(vault)
    res = run_sub(
        "--vault", vault, "import", tmp_path / "md", fifo, env=env_of(tmp_path), timeout=30
    )
    assert res.code == 1, str(res)
    assert "not a regular file" in res.err and str(fifo) in res.err
    assert tree(vault) == before
    # a FIFO inside a folder of .eml files is reported (3); the rest is imported
    emls = tmp_path / "emls"
    emls.mkdir()
    (emls / "a.eml").write_bytes(simple_message(2))
    os.mkfifo(emls / "b.eml")
    (emls / "c.eml").write_bytes(simple_message(3))
    res = run_sub("--vault", vault, "import", emls, env=env_of(tmp_path), timeout=30)
    assert res.code == 3, str(res)
    assert "b.eml" in res.err
    assert set(contents(vault).values()) == {simple_message(2), simple_message(3)}
