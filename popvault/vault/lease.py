"""Writer leases: one writer at a time where exclusive creation cannot be trusted
(docs/format.md §10.1).

Some S3-compatible servers ignore ``If-None-Match: *`` and overwrite, so the ``lock``
object of §10 cannot keep two writers out there. A lease needs only puts, lists, gets
and deletes: every writer puts its own object ``locks/<32 hex>`` (never another's), then,
after a short settling pause, lists ``locks/`` again; of the live leases the one with
the smallest (``time``, name) holds the vault and every other writer withdraws its
lease and backs off. A lease is refreshed while its writer runs and is stale once its
``expires`` has passed (or at once when it is this host's and its process is gone);
stale leases are removed with a warning. A writer whose own lease disappeared (someone
judged it stale and broke it) has lost the vault: :meth:`Lease.check` then raises, and
the writer must not commit.

restic's lock files are the model; its users' complaints about stale locks are why a
lease expires by itself (its ``expires`` is written by its holder, refreshed every
``REFRESH`` seconds, ``STALE`` after the last refresh).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from popvault.errors import VaultLocked
from popvault.vault.backend import Backend, ObjectNotFound
from popvault.vault.lock import host_name, process_alive, process_start

PREFIX = "locks"
#: A lease's object name (:class:`Lease`); anything else under ``locks/`` is not one.
LEASE_NAME = re.compile(r"^locks/[0-9a-f]{32}\Z")
#: A lease not refreshed for this long is stale (seconds).
STALE = 30 * 60.0
#: How often a holder refreshes its lease.
REFRESH = 5 * 60.0
#: Pause between putting a lease and listing again (lets a racing writer's put show).
SETTLE = 1.0


@dataclass(frozen=True)
class LeaseInfo:
    """One lease object, as read."""

    name: str
    host: str
    pid: int
    start: str | None
    time: float
    expires: float
    command: str

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        return f"{self.command}, process {self.pid} on {self.host} since {since}"

    def stale(self, now: float) -> bool:
        if self.host == host_name() and not process_alive(self.pid, self.start):
            return True
        return now > self.expires


def _parse(name: str, data: bytes) -> LeaseInfo | None:
    try:
        d: Any = json.loads(data)
        expires = float(d["expires"])
        taken = float(d["time"])
        start = d.get("start")
        return LeaseInfo(
            name,
            str(d["host"]),
            int(d["pid"]),
            None if start is None else str(start),
            taken,
            expires,
            str(d.get("command", "popvault")),
        )
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def read_leases(backend: Backend) -> list[LeaseInfo | tuple[str, None]]:
    """Every lease object: parsed, or (name, None) when it cannot be read."""
    out: list[LeaseInfo | tuple[str, None]] = []
    for name in backend.list(PREFIX):
        if not LEASE_NAME.match(name):
            continue  # not a lease (not popvault's)
        try:
            info = _parse(name, backend.get(name))
        except ObjectNotFound:
            continue  # withdrawn meanwhile
        out.append(info if info is not None else (name, None))
    return out


class Lease:
    """A held lease: refreshed in a daemon thread until :meth:`release`."""

    def __init__(
        self,
        backend: Backend,
        command: str,
        *,
        stale: float = STALE,
        refresh: float = REFRESH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.name = f"{PREFIX}/{secrets.token_hex(16)}"
        self._stale = stale
        self._refresh = refresh
        self._clock = clock
        pid = os.getpid()
        self._body: dict[str, Any] = {
            "host": host_name(),
            "pid": pid,
            "start": process_start(pid),
            "time": clock(),
            "command": command,
        }
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def put(self) -> None:
        body = dict(self._body, expires=self._clock() + self._stale)
        self.backend.put(self.name, json.dumps(body).encode())

    @property
    def taken(self) -> float:
        return float(self._body["time"])

    def start_refreshing(self) -> None:
        self._thread = threading.Thread(target=self._run, name="popvault-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._refresh):
            self.refresh()

    def refresh(self) -> None:
        """Extend the lease; notes it lost when its object is gone (broken as stale)."""
        if self._lost is not None:
            return
        try:
            self.backend.get(self.name)
            self.put()
        except ObjectNotFound:
            self._lost = "its lease was removed by another writer (judged stale)"
        except Exception:  # storage trouble: tried again at the next refresh
            return

    def check(self) -> None:
        """Raise VaultLocked when this writer no longer holds the vault."""
        if self._lost is not None:
            raise VaultLocked(
                f"this writer lost the vault: {self._lost}",
                hint="nothing more is committed by it; run the command again",
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._lost is None:
            self.backend.delete(self.name)


def acquire_lease(
    backend: Backend,
    command: str,
    warn: Callable[[str], None],
    *,
    settle: float = SETTLE,
    stale: float = STALE,
    refresh: float = REFRESH,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Lease:
    """Take the vault by lease, or raise VaultLocked (exit 11) naming the holder."""
    _clear_stale(backend, warn, clock())
    _refuse_if_held(backend, None, clock())
    lease = Lease(backend, command, stale=stale, refresh=refresh, clock=clock)
    lease.put()
    sleep(settle)
    try:
        _refuse_if_held(backend, lease, clock())
    except BaseException:
        backend.delete(lease.name)
        raise
    lease.start_refreshing()
    return lease


def _clear_stale(backend: Backend, warn: Callable[[str], None], now: float) -> None:
    for info in read_leases(backend):
        if isinstance(info, LeaseInfo) and info.stale(now):
            warn(f"removed a stale writer lease of {info.describe()}")
            backend.delete(info.name)


def _refuse_if_held(backend: Backend, mine: Lease | None, now: float) -> None:
    """VaultLocked when a live lease other than ``mine`` comes before it (or exists at
    all, when ``mine`` is None). An unreadable lease counts as live: it may be a writer's
    put that is half visible; ``popvault unlock --force`` removes it."""
    for info in read_leases(backend):
        if isinstance(info, tuple):
            name = info[0]
            if mine is not None and name == mine.name:
                continue
            raise VaultLocked(
                f"the vault has a writer lease that cannot be read ({name})",
                hint="if no popvault writes to this vault, 'popvault unlock --force' removes it",
            )
        if (mine is not None and info.name == mine.name) or info.stale(now):
            continue
        if mine is None or (info.time, info.name) < (mine.taken, mine.name):
            raise VaultLocked(
                f"vault is locked by {info.describe()}",
                hint="wait for it to finish; a lease not refreshed for"
                f" {int(STALE // 60)} minutes is stale and removed by the next writer",
            )
