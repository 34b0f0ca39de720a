"""The writer lock: one writer per vault at a time (docs/format.md §10).

The lock is the object ``lock``, created exclusively, holding JSON with host, pid, the
process start time (from /proc, to survive pid reuse) and when it was taken. A lock held
by a process that no longer runs on this host is stale: it is broken and the caller is
told. A lock of a live process, or of another host, raises VaultLocked (exit 11).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from popvault.errors import VaultLocked
from popvault.vault.backend import Backend, ObjectNotFound

LOCK_NAME = "lock"
#: Overrides the host name written into locks and leases and compared with them: two
#: "hosts" on one machine in tests, or a container whose host name changes every run.
HOSTNAME_ENV = "POPVAULT_HOSTNAME"


def host_name() -> str:
    """This host's name as locks and leases record it (``POPVAULT_HOSTNAME`` if set)."""
    return os.environ.get(HOSTNAME_ENV) or socket.gethostname()


def process_start(pid: int) -> str | None:
    """Field 22 (``starttime``) of ``/proc/<pid>/stat``, or None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # field 22 (starttime) counted after the parenthesised command name
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def process_alive(pid: int, start: str | None) -> bool:
    """Whether ``pid`` runs on this host and is the process that wrote ``start``."""
    if not 0 < pid < 1 << 22:  # beyond Linux's pid_max: no such process can hold it
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = process_start(pid)
    return start is None or now is None or now == start


class Held(Protocol):
    """What a writer holds: the ``lock`` object, or a lease (format §10.1)."""

    def check(self) -> None:
        """Raise VaultLocked when the writer no longer holds the vault."""

    def release(self) -> None:
        """Give the vault up."""


@dataclass
class Lock:
    backend: Backend
    token: str

    def check(self) -> None:
        """The ``lock`` object is held until released: nothing to check."""

    def release(self) -> None:
        try:
            data = json.loads(self.backend.get(LOCK_NAME))
        except Exception:
            return
        if data.get("token") == self.token:
            self.backend.delete(LOCK_NAME)


def acquire(backend: Backend, command: str, warn: Callable[[str], None]) -> Held:
    """Take the writer lock or raise VaultLocked; breaks stale locks (and says so).

    A backend whose exclusive creation cannot be trusted (``exclusive_create`` false:
    a server that ignores conditional writes) gets a lease instead (format §10.1)."""
    if not getattr(backend, "exclusive_create", True):
        from popvault.vault.lease import acquire_lease

        return acquire_lease(backend, command, warn)
    pid = os.getpid()
    info = {
        "host": host_name(),
        "pid": pid,
        "start": process_start(pid),
        "time": time.time(),
        "command": command,
        "token": os.urandom(8).hex(),
    }
    for _ in range(3):
        if backend.create_exclusive(LOCK_NAME, json.dumps(info).encode()):
            return Lock(backend, str(info["token"]))
        try:
            held = json.loads(backend.get(LOCK_NAME))
            h_host, h_pid = str(held["host"]), int(held["pid"])
            h_start = held.get("start")
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(held["time"])))
        except Exception:
            if not backend.exists(LOCK_NAME):
                continue
            raise VaultLocked(
                "vault lock is unreadable",
                hint="if no popvault runs on this vault, 'popvault unlock --force' removes it",
            ) from None
        if h_host == info["host"] and not process_alive(h_pid, h_start):
            warn(f"removed a stale lock of process {h_pid} on {h_host} (no longer running)")
            backend.delete(LOCK_NAME)
            continue
        raise VaultLocked(
            f"vault is locked by process {h_pid} on {h_host} since {since}"
            f" ({held.get('command', '?')})",
            hint=(
                "wait for it to finish"
                if h_host == info["host"]
                else "a lock of another host is never broken automatically; if no popvault"
                " runs there on this vault (e.g. the vault was copied), run 'popvault"
                " unlock --force'"
            ),
        )
    raise VaultLocked("could not take the vault lock", hint="try again")


def running_writer(backend: Backend) -> str | None:
    """Who holds the writer lock, when that writer may still be running:
    ``"popvault backup, process 4242 on myhost since 2024-05-01 10:00:00"``.

    None when there is no lock, it is unreadable, or it is stale (its process no longer
    runs on this host). A lock of another host counts as running: it cannot be told."""
    try:
        held = json.loads(backend.get(LOCK_NAME))
        host, pid = str(held["host"]), int(held["pid"])
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(held["time"])))
    except Exception:
        return None
    if host == host_name() and not process_alive(pid, held.get("start")):
        return None
    return f"{held.get('command', 'popvault')}, process {pid} on {host} since {since}"


def break_lock(backend: Backend, *, force: bool = False) -> list[str]:
    """``popvault unlock``: remove the writer lock and writer leases (format §10,
    §10.1) that no writer can be holding; returns what was removed.

    A lock or lease of a process that no longer runs on this host, or a stale lease, is
    removed; one of a live process on this host never is (VaultLocked: stop that process
    instead); one of another host, or one that cannot be read, only with ``force`` (this
    host cannot tell whether that writer still runs: the caller must know). Nothing is
    removed when something is refused."""
    from popvault.vault.lease import PREFIX

    doomed: list[tuple[str, str]] = []
    now = time.time()
    for name in [LOCK_NAME, *backend.list(PREFIX)]:
        try:
            raw = backend.get(name)
        except ObjectNotFound:
            continue
        doomed.append((name, _judge(raw, force, now if name != LOCK_NAME else None)))
    for name, _who in doomed:
        backend.delete(name)
    return [who for _name, who in doomed]


def _judge(raw: bytes, force: bool, now: float | None) -> str:
    """Who holds a lock (or, with ``now``, a lease), when it may be removed; VaultLocked
    when it may not. A lease past its ``expires`` is stale: removed without ``force``."""
    try:
        held = json.loads(raw)
        host, pid = str(held["host"]), int(held["pid"])
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(held["time"])))
        who = f"{held.get('command', 'popvault')}, process {pid} on {host} since {since}"
        stale = now is not None and float(held["expires"]) < now
    except Exception:
        if not force:
            raise VaultLocked(
                "the vault lock cannot be read",
                hint="if no popvault runs on this vault, 'popvault unlock --force' removes it",
            ) from None
        return "an unreadable lock"
    if host == host_name():
        if process_alive(pid, held.get("start")):
            raise VaultLocked(
                f"the vault is locked by a running writer ({who})",
                hint="wait for it to finish, or stop that process; its lock goes with it",
            )
    elif not force and not stale:
        raise VaultLocked(
            f"the vault is locked by {who}",
            hint=f"this host cannot tell whether that writer still runs; if no popvault runs"
            f" on {host} on this vault (e.g. the vault was copied), run 'popvault unlock"
            " --force'",
        )
    return f"{who} (stale)" if stale else who
