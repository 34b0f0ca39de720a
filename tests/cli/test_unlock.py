"""``popvault unlock``: a lock is removed only when no writer can hold it (format §10)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from popvault.vault.lock import process_start
from tests.cli.helpers import run


def _lock(vault: Path, *, host: str | None = None, pid: int = 4_194_305) -> None:
    """A lock as a writer writes it (pid beyond pid_max: a process that cannot run)."""
    body = {
        "host": host or socket.gethostname(),
        "pid": pid,
        "start": process_start(pid),
        "time": time.time() - 3600,
        "command": "popvault backup",
        "token": "0123456789abcdef",
    }
    (vault / "lock").write_text(json.dumps(body))


def test_not_locked(vault: Path) -> None:
    res = run("--vault", vault, "unlock")
    assert res.code == 0 and "not locked" in res.err, str(res)


def test_a_dead_writers_lock_is_removed(vault: Path) -> None:
    _lock(vault)
    res = run("--vault", vault, "unlock")
    assert res.code == 0 and "removed the lock of popvault backup, process 4194305" in res.err
    assert not (vault / "lock").exists()


def test_a_running_writers_lock_is_never_removed(vault: Path) -> None:
    _lock(vault, pid=os.getpid())
    for args in (["unlock"], ["unlock", "--force"]):
        res = run("--vault", vault, *args)
        assert res.code == 11 and "running writer" in res.err, str(res)
        assert (vault / "lock").exists()


def test_another_hosts_lock_needs_force(vault: Path) -> None:
    _lock(vault, host="elsewhere.example", pid=42)
    res = run("--vault", vault, "unlock")
    assert res.code == 11 and "elsewhere.example" in res.err and "--force" in res.err, str(res)
    assert (vault / "lock").exists()
    msg = vault.parent / "m.eml"
    msg.write_bytes(b"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n")
    res = run("--vault", vault, "import", msg)  # writers never break it either
    assert res.code == 11 and (vault / "lock").exists(), str(res)
    res = run("--vault", vault, "unlock", "--force")
    assert res.code == 0 and "process 42 on elsewhere.example" in res.err, str(res)
    assert not (vault / "lock").exists()


def test_an_unreadable_lock_needs_force(vault: Path) -> None:
    (vault / "lock").write_bytes(b"\xff\xfe not json")
    res = run("--vault", vault, "unlock")
    assert res.code == 11 and "cannot be read" in res.err, str(res)
    res = run("--vault", vault, "unlock", "--force")
    assert res.code == 0 and not (vault / "lock").exists(), str(res)
    # and the vault takes writers again
    msg = vault.parent / "m.eml"
    msg.write_bytes(b"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n")
    res = run("--vault", vault, "import", msg)
    assert res.code == 0, str(res)
