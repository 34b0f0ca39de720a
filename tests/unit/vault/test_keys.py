"""Passphrases, key slots and key export (format §4.2-§4.4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from popvault.errors import IntegrityError, UsageError, WrongPassphrase
from popvault.vault import Vault, import_key_export
from popvault.vault.backend import LocalBackend, MemoryBackend
from popvault.vault.crypto import TEST_KDF
from tests.support.vaults import PASSPHRASE, build, create, open_ro, text_message


@pytest.fixture
def vault_dir(tmp_path: Path) -> tuple[Path, dict[bytes, bytes]]:
    root = tmp_path / "v"
    (ids,) = build(root, [[text_message(1), text_message(2)]])
    return root, ids


def _reads(root: Path, passphrase: bytes, ids: dict[bytes, bytes]) -> None:
    with open_ro(root, passphrase) as v:
        for mid, data in ids.items():
            assert v.read_message(mid) == data
        assert v.check(read_data=True).ok


def test_wrong_passphrase(vault_dir: tuple[Path, dict[bytes, bytes]]) -> None:
    root, _ids = vault_dir
    with pytest.raises(WrongPassphrase) as ei:
        Vault.open(root, b"not the passphrase")
    assert ei.value.exit_code == 12
    assert ei.value.hint
    with pytest.raises(WrongPassphrase):
        Vault.open(root, b"")
    with pytest.raises(WrongPassphrase):
        Vault.open(root, PASSPHRASE + b" ")


def test_wrong_passphrase_with_several_slots(vault_dir: tuple[Path, dict[bytes, bytes]]) -> None:
    root, ids = vault_dir
    with open_ro(root) as v:
        v.add_passphrase(b"second", TEST_KDF)
    with pytest.raises(WrongPassphrase):
        Vault.open(root, b"third")
    _reads(root, b"second", ids)
    _reads(root, PASSPHRASE, ids)


def test_change_passphrase(vault_dir: tuple[Path, dict[bytes, bytes]]) -> None:
    root, ids = vault_dir
    slots_before = LocalBackend(root).list("keys")
    with open_ro(root) as v:
        with pytest.raises(WrongPassphrase):
            v.change_passphrase(b"wrong old", b"new", TEST_KDF)
        assert LocalBackend(root).list("keys") == slots_before
        v.change_passphrase(PASSPHRASE, b"new passphrase", TEST_KDF)
    slots_after = LocalBackend(root).list("keys")
    assert len(slots_after) == 1 and slots_after != slots_before
    with pytest.raises(WrongPassphrase):
        Vault.open(root, PASSPHRASE)
    _reads(root, b"new passphrase", ids)


def test_export_delete_slots_import(vault_dir: tuple[Path, dict[bytes, bytes]]) -> None:
    root, ids = vault_dir
    with open_ro(root) as v:
        text = v.export_keys()
    assert "SECRET" in text
    backend = LocalBackend(root)
    for slot in backend.list("keys"):
        backend.delete(slot)
    with pytest.raises(IntegrityError) as ei:
        Vault.open(root, PASSPHRASE)
    assert ei.value.exit_code == 20
    import_key_export(root, text, b"recovered", TEST_KDF)
    assert len(backend.list("keys")) == 1
    _reads(root, b"recovered", ids)
    with pytest.raises(WrongPassphrase):
        Vault.open(root, PASSPHRASE)


def test_export_of_another_vault_refused(
    vault_dir: tuple[Path, dict[bytes, bytes]], tmp_path: Path
) -> None:
    root, _ids = vault_dir
    other = MemoryBackend()
    create(other)
    with open_ro(other) as v:
        foreign = v.export_keys()
    before = LocalBackend(root).list("keys")
    with pytest.raises(UsageError) as ei:
        import_key_export(root, foreign, b"x", TEST_KDF)
    assert ei.value.exit_code == 2
    assert "belongs to vault" in ei.value.message
    assert LocalBackend(root).list("keys") == before


def _typos(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    out = []
    for i, ln in enumerate(lines):
        key = ln.split(":", 1)[0]
        if key in ("enc", "mac", "vault", "check"):
            value_at = len(key) + 3
            c = ln[value_at]
            repl = "0" if c != "0" else "1"
            out.append(
                "".join([*lines[:i], ln[:value_at] + repl + ln[value_at + 1 :], *lines[i + 1 :]])
            )
            out.append("".join(lines[:i] + lines[i + 1 :]))  # line missing
    # a transposition inside the enc key
    enc = next(i for i, ln in enumerate(lines) if ln.startswith("enc:"))
    ln = lines[enc]
    j = next(k for k in range(5, len(ln) - 1) if ln[k] != ln[k + 1] and " " not in ln[k : k + 2])
    out.append("".join([*lines[:enc], ln[:j] + ln[j + 1] + ln[j] + ln[j + 2 :], *lines[enc + 1 :]]))
    out.append(text.replace("popvault key export v1", "popvault key export v2"))
    out.append(text.replace("enc: ", "enc: zz"))
    return out


def test_typo_in_export_detected(vault_dir: tuple[Path, dict[bytes, bytes]]) -> None:
    root, _ids = vault_dir
    with open_ro(root) as v:
        text = v.export_keys()
    before = LocalBackend(root).list("keys")
    typos = _typos(text)
    assert len(typos) >= 10
    for bad in typos:
        assert bad != text
        with pytest.raises(UsageError):
            import_key_export(root, bad, b"x", TEST_KDF)
    assert LocalBackend(root).list("keys") == before


def test_export_tolerates_spacing(vault_dir: tuple[Path, dict[bytes, bytes]]) -> None:
    """A hand-typed export with other spacing and blank lines still imports."""
    root, ids = vault_dir
    with open_ro(root) as v:
        text = v.export_keys()
    retyped = "\n".join("  " + ln.replace(" ", "  ") + "  \n" for ln in text.splitlines())
    retyped = retyped.replace("popvault  key  export  v1", "popvault key export v1")
    import_key_export(root, retyped, b"typed", TEST_KDF)
    _reads(root, b"typed", ids)


def test_init_refuses_non_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "file").write_bytes(b"x")
    with pytest.raises(UsageError):
        Vault.init(tmp_path / "v", PASSPHRASE, kdf=TEST_KDF)
    b = MemoryBackend()
    create(b)
    with pytest.raises(UsageError):
        Vault.init(b, PASSPHRASE, kdf=TEST_KDF)


def _forged(backend: MemoryBackend, iterations: int, lanes: int, memory_kib: int) -> str:
    """A copy of the vault's slot claiming other Argon2id costs, checksum recomputed (what
    anyone with write access can do), under a name that sorts first."""
    import json

    from popvault.vault.crypto import checksum_json

    genuine = next(n for n in backend.list("keys"))
    outer = json.loads(backend.objects[genuine])
    body = outer["body"]
    body["kdf"].update(iterations=iterations, lanes=lanes, memory_kib=memory_kib)
    name = "keys/" + "0" * 32
    backend.put(name, checksum_json(body))
    return name


@pytest.mark.parametrize(
    ("iterations", "lanes", "memory_kib"),
    [(11, 4, 65536), (3, 17, 65536), (3, 4, (1 << 20) + 1), (64, 64, 4 << 20)],
)
def test_a_slot_beyond_the_cost_caps_is_damaged_and_skipped(
    iterations: int, lanes: int, memory_kib: int
) -> None:
    import time

    backend = MemoryBackend()
    create(backend)
    _forged(backend, iterations, lanes, memory_kib)
    t0 = time.monotonic()
    with Vault.open(backend, PASSPHRASE) as v:  # the genuine slot opens
        assert v.vault_id
    assert time.monotonic() - t0 < 5
    with pytest.raises(WrongPassphrase):
        Vault.open(backend, b"not the passphrase")


def test_the_cheapest_slot_is_tried_first() -> None:
    """A forged slot at the caps (1 GiB, 10 passes: seconds of work) sorted first by name
    is tried after the genuine cheap one, so unlocking stays fast."""
    import time

    backend = MemoryBackend()
    create(backend)  # TEST_KDF: 8 KiB, 1 pass
    _forged(backend, 10, 16, 1 << 20)
    t0 = time.monotonic()
    with Vault.open(backend, PASSPHRASE):
        pass
    assert time.monotonic() - t0 < 1.0


def test_only_a_slot_beyond_the_caps_is_an_integrity_error() -> None:
    backend = MemoryBackend()
    create(backend)
    genuine = next(n for n in backend.list("keys"))
    _forged(backend, 65, 4, 65536)
    backend.delete(genuine)
    with pytest.raises(IntegrityError, match="outside the accepted range"):
        Vault.open(backend, PASSPHRASE)


def test_only_slot_names_are_key_slots() -> None:
    """Objects under keys/ not named by 32 hex digits are not slots (format §4.2): unlock
    ignores them, check reports them."""
    backend = MemoryBackend()
    create(backend)
    backend.put("keys/README", b"not a slot")
    with Vault.open(backend, PASSPHRASE) as v:
        rep = v.check()
    assert rep.problems == ["unexpected object keys/README in keys/"]


@pytest.mark.parametrize(("field", "size"), [("nonce", 11), ("nonce", 13), ("salt", 8)])
def test_a_slot_with_a_salt_or_nonce_of_the_wrong_size_is_damaged(field: str, size: int) -> None:
    """Base64 that decodes to the wrong length (format §1): a damaged slot, exit 20, not
    an internal error from the cipher."""
    import base64
    import json

    from popvault.vault.crypto import checksum_json

    backend = MemoryBackend()
    create(backend)
    genuine = next(n for n in backend.list("keys"))
    body = json.loads(backend.objects[genuine])["body"]
    value = base64.b64encode(bytes(size)).decode()
    if field == "nonce":
        body["nonce"] = value
    else:
        body["kdf"]["salt"] = value
    backend.put(genuine, checksum_json(body))
    with pytest.raises(IntegrityError, match="malformed"):
        Vault.open(backend, PASSPHRASE)
