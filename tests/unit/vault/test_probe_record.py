"""This machine remembers, per location, whether the storage honoured conditional writes
when a writer last probed it, and warns when the answer changes: the writer lock's
protocol changes with it (format §10.1)."""

from __future__ import annotations

import json
from pathlib import Path

from popvault.vault.anchor import Anchor
from popvault.vault.backend import MemoryBackend
from popvault.vault.crypto import TEST_KDF
from popvault.vault.vault import Vault

PASS = b"probe record"


class Probed(MemoryBackend):
    """Object storage as the lock sees it: a probe answer, and no exclusive creation
    when it says no (a lease is taken then)."""

    def __init__(self) -> None:
        super().__init__()
        self.conditional_writes: bool | None = True

    @property
    def exclusive_create(self) -> bool:
        return bool(self.conditional_writes)


def test_the_answer_is_kept_and_a_change_is_said(tmp_path: Path) -> None:
    backend = Probed()
    state = tmp_path / "state"
    Vault.init(backend, PASS, kdf=TEST_KDF, state_dir=state).close()
    said: list[str] = []

    def write_once() -> None:
        Vault.open(backend, PASS, write=True, warn=said.append, state_dir=state).close()

    write_once()
    anchor = Anchor("x", "the vault", state)
    (record,) = (state / "locations").iterdir()
    body = json.loads(record.read_text())
    assert body["conditional_writes"] is True and body["location"] == "the vault"
    assert len(body["vault_id"]) == 32  # the vault id is kept beside it
    write_once()
    assert said == []  # the same answer: nothing to say
    backend.conditional_writes = False  # e.g. a gateway put in front of the server
    write_once()
    assert len(said) == 1 and "no longer honours conditional writes" in said[0]
    assert json.loads(record.read_text())["conditional_writes"] is False
    write_once()
    assert len(said) == 1
    backend.conditional_writes = True
    write_once()
    assert len(said) == 2 and "the vault honours conditional writes" in said[1]
    assert anchor.note_conditional_writes(True) is None


def test_storage_that_is_not_probed_records_nothing(tmp_path: Path) -> None:
    backend = MemoryBackend()
    state = tmp_path / "state"
    Vault.init(backend, PASS, kdf=TEST_KDF, state_dir=state).close()
    Vault.open(backend, PASS, write=True, state_dir=state).close()
    for record in (state / "locations").iterdir():
        assert "conditional_writes" not in json.loads(record.read_text())
