"""Writer leases (format §10.1): one writer at a time with puts, lists and deletes only,
for storage that ignores exclusive creation."""

from __future__ import annotations

import json
import threading
import time

import pytest

from popvault.errors import VaultLocked
from popvault.vault.backend import MemoryBackend
from popvault.vault.lease import PREFIX, Lease, acquire_lease, read_leases
from popvault.vault.records import SourceInfo


def _foreign(
    backend: MemoryBackend, name: str, *, expires: float, host: str = "far.example"
) -> None:
    body = {
        "host": host,
        "pid": 4242,
        "start": None,
        "time": time.time() - 60,
        "expires": expires,
        "command": "popvault backup",
    }
    backend.put(f"{PREFIX}/{name}", json.dumps(body).encode())


def test_one_writer_then_the_next() -> None:
    backend = MemoryBackend()
    first = acquire_lease(backend, "popvault backup", print, settle=0)
    with pytest.raises(VaultLocked, match="popvault backup, process"):
        acquire_lease(backend, "popvault import", print, settle=0)
    assert len(read_leases(backend)) == 1  # the refused writer withdrew nothing of others
    first.release()
    assert read_leases(backend) == []
    acquire_lease(backend, "popvault import", print, settle=0).release()


@pytest.mark.parametrize("round_", range(15))
def test_writers_racing_get_exactly_one_winner(round_: int) -> None:
    backend = MemoryBackend()
    won: list[Lease] = []
    refused: list[str] = []
    start = threading.Barrier(3)

    def writer() -> None:
        start.wait()
        try:
            won.append(acquire_lease(backend, "popvault backup", print, settle=0.05))
        except VaultLocked as exc:
            refused.append(exc.message)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1, (won, refused)
    assert len(refused) == 2
    assert [getattr(i, "name", None) for i in read_leases(backend)] == [won[0].name]
    won[0].release()


def test_a_stale_lease_of_another_host_is_removed_with_a_warning() -> None:
    backend = MemoryBackend()
    _foreign(backend, "a" * 32, expires=time.time() - 1)
    warnings: list[str] = []
    lease = acquire_lease(backend, "popvault backup", warnings.append, settle=0)
    assert warnings and "stale writer lease" in warnings[0] and "far.example" in warnings[0]
    lease.release()


def test_a_live_lease_of_another_host_is_respected() -> None:
    backend = MemoryBackend()
    _foreign(backend, "b" * 32, expires=time.time() + 600)
    with pytest.raises(VaultLocked, match=r"far\.example"):
        acquire_lease(backend, "popvault backup", print, settle=0)


def test_a_dead_process_of_this_host_holds_nothing() -> None:
    import socket

    backend = MemoryBackend()
    body = {
        "host": socket.gethostname(),
        "pid": 4_194_305,  # beyond pid_max: cannot run
        "start": None,
        "time": time.time(),
        "expires": time.time() + 600,
        "command": "popvault backup",
    }
    backend.put(f"{PREFIX}/{'c' * 32}", json.dumps(body).encode())
    acquire_lease(backend, "popvault backup", print, settle=0).release()


def test_an_unreadable_lease_counts_as_held() -> None:
    backend = MemoryBackend()
    backend.put(f"{PREFIX}/{'d' * 32}", b"\xff{")
    with pytest.raises(VaultLocked, match="cannot be read"):
        acquire_lease(backend, "popvault backup", print, settle=0)


def test_refresh_extends_and_a_broken_lease_is_noticed() -> None:
    backend = MemoryBackend()
    now = [1000.0]
    lease = acquire_lease(
        backend, "popvault backup", print, settle=0, stale=60, refresh=3600, clock=lambda: now[0]
    )
    first = json.loads(backend.get(lease.name))["expires"]
    now[0] += 30
    lease.refresh()
    assert json.loads(backend.get(lease.name))["expires"] == first + 30
    lease.check()  # still held
    backend.delete(lease.name)  # another writer judged it stale and broke it
    lease.refresh()
    with pytest.raises(VaultLocked, match="lost the vault"):
        lease.check()
    lease.release()


class IgnoresConditionalWrites(MemoryBackend):
    """A server that ignores ``If-None-Match: *``: an exclusive create overwrites."""

    exclusive_create = False

    def create_exclusive(self, name: str, data: bytes) -> bool:
        self.put(name, data)
        return True


def test_a_vault_on_storage_without_exclusive_creation_has_one_writer() -> None:
    from popvault.vault.vault import Vault
    from tests.support.vaults import PASSPHRASE, create

    backend = IgnoresConditionalWrites()
    create(backend)
    # the lock object would let both in on this storage: the lease keeps the second out
    first = Vault.open(backend, PASSPHRASE, write=True)
    assert [n for n in backend.list(PREFIX)] and not backend.exists("lock")
    with pytest.raises(VaultLocked, match="locked by popvault, process"):
        Vault.open(backend, PASSPHRASE, write=True)
    first.close()
    assert backend.list(PREFIX) == []
    Vault.open(backend, PASSPHRASE, write=True).close()


def test_unlock_removes_stale_leases_and_asks_force_for_live_foreign_ones() -> None:
    from popvault.vault.lock import break_lock

    backend = MemoryBackend()
    _foreign(backend, "e" * 32, expires=time.time() - 5)
    assert [w.endswith("(stale)") for w in break_lock(backend)] == [True]
    _foreign(backend, "f" * 32, expires=time.time() + 600)
    with pytest.raises(VaultLocked, match=r"far\.example"):
        break_lock(backend)
    assert len(backend.list(PREFIX)) == 1
    assert len(break_lock(backend, force=True)) == 1
    assert backend.list(PREFIX) == []


def test_a_writer_whose_lease_was_broken_commits_nothing() -> None:
    from popvault.vault.vault import Vault
    from tests.support.vaults import PASSPHRASE, create, text_message

    backend = IgnoresConditionalWrites()
    create(backend)
    v = Vault.open(backend, PASSPHRASE, write=True)
    lease = v._lock
    assert isinstance(lease, Lease)
    for name in backend.list(PREFIX):  # another writer judged it stale and broke it
        backend.delete(name)
    lease.refresh()
    with pytest.raises(VaultLocked, match="lost the vault"):
        v.add_message(text_message(1), SourceInfo("acct", "test", uidl="u1"))
    assert backend.list("commits") == []
    v.close()


def test_only_lease_names_are_leases() -> None:
    """Leases are locks/<32 hex>. Another object under locks/ (not popvault's: listings
    already skip dot-names such as the conditional-write probe) is no lease, so it
    cannot lock every writer out as an unreadable one."""
    backend = MemoryBackend()
    backend.put(f"{PREFIX}/README", b"not a lease")
    backend.put(f"{PREFIX}/{'a' * 31}", b"{}")
    assert read_leases(backend) == []
    lease = acquire_lease(backend, "popvault backup", print, settle=0)
    lease.release()
