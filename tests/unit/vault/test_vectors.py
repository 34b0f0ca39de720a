"""Golden vectors: the committed vaults in tests/vectors/v1 and v2 stay readable.

``v1`` (format version 1, ``PVPACK01`` packs) was made once by
``tests/vectors/make_vectors.py``, ``v2`` (format version 2, ``PVPACK02`` packs, the same
messages) by ``tests/vectors/make_vectors_v2.py``; neither is ever regenerated here. The
tests read a copy (opening read-only must not write into the vault; the index cache goes
to POPVAULT_CACHE_DIR) and check every message against ``expected.json``.
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

ROOT = Path(__file__).resolve().parents[2] / "vectors"
#: Each golden vault, its format version and the magic of its packs.
GOLDEN = {"v1": (1, b"PVPACK01"), "v2": (2, b"PVPACK02")}


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(params=sorted(GOLDEN))
def golden(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def expected(golden: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ROOT / golden / "expected.json").read_text())
    return doc


@pytest.fixture
def copy(tmp_path: Path, golden: str) -> Path:
    dst = tmp_path / golden
    shutil.copytree(ROOT / golden, dst)
    return dst


def test_vectors_present(expected: dict[str, Any], golden: str) -> None:
    version, magic = GOLDEN[golden]
    assert expected["format_version"] == version
    assert len(expected["messages"]) == 6
    assert len(list((ROOT / golden / "commits").iterdir())) == expected["commits"]
    config = json.loads((ROOT / golden / "config").read_text())
    assert config["body"]["version"] == version
    packs = [p for p in (ROOT / golden / "packs").rglob("*") if p.is_file()]
    assert packs and {p.read_bytes()[:8] for p in packs} == {magic}


def test_both_golden_vaults_hold_the_same_messages() -> None:
    docs = [json.loads((ROOT / g / "expected.json").read_text()) for g in sorted(GOLDEN)]
    digests = [sorted(d["messages"].values()) for d in docs]
    assert digests[0] == digests[1]  # same bytes (ids differ: each vault has its keys)


def test_golden_vault_reads(
    copy: Path, expected: dict[str, Any], cache_dir: Path, golden: str
) -> None:
    before = _tree(copy)
    original = _tree(ROOT / golden)
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
        assert any(
            p[0] == "b" for r in v.messages() for p in v.message(r.id).pieces
        )  # attachment split
    assert _tree(copy) == before  # opening read-only wrote nothing into the vault
    assert _tree(ROOT / golden) == original
    assert list(cache_dir.glob("*.sqlite"))


def test_golden_vault_rebuilds_from_packs(copy: Path, expected: dict[str, Any]) -> None:
    with Vault.open(copy, expected["passphrase"].encode(), sync=False) as v:
        v.rebuild_cache(from_packs=True)
        assert {r.id.hex() for r in v.messages()} == set(expected["messages"])


def test_golden_vault_wrong_passphrase(copy: Path) -> None:
    with pytest.raises(WrongPassphrase):
        Vault.open(copy, b"popvault-golden!")
