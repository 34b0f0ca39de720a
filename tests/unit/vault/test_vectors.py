"""Golden vectors: the committed version-1 vault in tests/vectors/v1 stays readable.

The vault was made once by ``tests/vectors/make_vectors.py`` and is never regenerated
here. The test reads a copy (opening read-only must not write into the vault; the index
cache goes to POPVAULT_CACHE_DIR) and checks every message against ``expected.json``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from popvault.errors import WrongPassphrase
from popvault.vault.vault import Vault
from tests.support.vaults import cache_accounts

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "v1"


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def expected() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / "expected.json").read_text())
    return doc


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    dst = tmp_path / "v1"
    shutil.copytree(VECTORS, dst)
    return dst


def test_vectors_present(expected: dict[str, Any]) -> None:
    assert expected["format_version"] == 1
    assert len(expected["messages"]) == 6
    assert len(list((VECTORS / "commits").iterdir())) == expected["commits"]


def test_golden_vault_reads(copy: Path, expected: dict[str, Any], cache_dir: Path) -> None:
    before = _tree(copy)
    original = _tree(VECTORS)
    passphrase = expected["passphrase"].encode()
    with Vault.open(copy, passphrase) as v:
        ids = {r.id.hex() for r in v.messages()}
        assert ids == set(expected["messages"])
        for hexid, digest in expected["messages"].items():
            data = v.read_message(bytes.fromhex(hexid))
            assert hashlib.sha256(data).hexdigest() == digest
            v.verify_messages([bytes.fromhex(hexid)])
        assert len(v.commit_names()) == expected["commits"]
        rep = v.check(read_data=True)
        assert rep.ok, rep.problems
        assert rep.messages == len(expected["messages"])
        assert sorted(cache_accounts(v)) == ["alice", "bob"]
        shared = [r for r in v.messages() if r.accounts == ["alice", "bob"]]
        assert len(shared) == 1
        assert any(p[0] == "b" for r in v.messages() for p in r.pieces)  # attachment split
    assert _tree(copy) == before  # opening read-only wrote nothing into the vault
    assert _tree(VECTORS) == original
    assert list(cache_dir.glob("*.sqlite"))


def test_golden_vault_rebuilds_from_packs(copy: Path, expected: dict[str, Any]) -> None:
    with Vault.open(copy, expected["passphrase"].encode(), sync=False) as v:
        v.rebuild_cache(from_packs=True)
        assert {r.id.hex() for r in v.messages()} == set(expected["messages"])


def test_golden_vault_wrong_passphrase(copy: Path) -> None:
    with pytest.raises(WrongPassphrase):
        Vault.open(copy, b"popvault-golden!")
