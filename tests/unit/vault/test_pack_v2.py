"""Pack version 2 and format version 2 (docs/format.md §4, §4.5, §6.1, §6.6, §6.8, §11).

* §6.8's worked example is recomputed from the text of the document, both by popvault's
  writer and by an independent reader built from the spec's description of the
  associated data with ``cryptography`` alone.
* Every byte of a version 2 pack matters: a flip anywhere fails the whole-pack parse and
  the windowed check, and a flip in what a normal read reads (header, length prefix,
  ciphertext) fails that read.
* Versions: a new vault is version 2 and writes ``PVPACK02``; a version 1 vault still
  reads and is written with ``PVPACK01``; ``upgrade`` moves it to 2 (a second upgrade is a
  no-op, ``--dry-run`` changes nothing); a ``PVPACK02`` pack in a version 1 vault is
  refused; a vault newer than popvault is refused with its message.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from unittest import mock

import pytest
import zstandard
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from popvault.errors import IntegrityError, PopvaultError
from popvault.vault.backend import LocalBackend, MemoryBackend
from popvault.vault.config import FORMAT_VERSION, read_vault_config, upgrade_config
from popvault.vault.crypto import MasterKeys, checksum_json, parse_checksum_json
from popvault.vault.pack import (
    HEADER_SIZE,
    BlobLocation,
    PackReader,
    PackScan,
    PackVersionError,
    PackWriter,
    pack_object_name,
)
from popvault.vault.reader import Reader
from popvault.vault.vault import Vault
from tests.support.vaults import PASSPHRASE, add_batch, create, open_ro, open_rw, text_message

FORMAT = Path(__file__).resolve().parents[3] / "docs" / "format.md"
VAULT_ID = "00112233445566778899aabbccddeeff"
KEYS = MasterKeys(bytes(range(32)), bytes(range(32, 64)))
SALT = bytes(range(0x40, 0x60))


def _section(title: str) -> str:
    text = FORMAT.read_text(encoding="utf-8")
    start = text.index(f"\n### {title}\n")
    end = text.index("\n## ", start + 1)
    nxt = text.find("\n### ", start + 1)
    return text[start : nxt if 0 < nxt < end else end]


def _hexdump(section: str) -> dict[int, int]:
    """offset -> byte of every hexdump line in ``section``."""
    out: dict[int, int] = {}
    for m in re.finditer(r"^([0-9a-f]{8})  ((?:[0-9a-f]{2} ){1,15}[0-9a-f]{2})", section, re.M):
        base = int(m.group(1), 16)
        for i, h in enumerate(m.group(2).split()):
            out[base + i] = int(h, 16)
    return out


def _suffix(section: str, name: str) -> bytes:
    """The bytes after ``"F"`` / ``"T"`` in the doc's FAD_0 / TAD lines."""
    m = re.search(rf"^{name}\s+= .*\n\s+((?:[0-9a-f]{{2}} ){{11}}[0-9a-f]{{2}})", section, re.M)
    assert m, f"{name} not found in §6.8"
    return bytes.fromhex(m.group(1).replace(" ", ""))


def _number(section: str, label: str) -> int:
    m = re.search(rf"{re.escape(label)}\s+= (\d+) = 0x([0-9a-f]+)", section)
    assert m, label
    assert int(m.group(1)) == int(m.group(2), 16)
    return int(m.group(1))


def _example_pack() -> tuple[str, bytes, list[BlobLocation]]:
    """§6.7's pack, written by popvault's version 2 writer with the example's salt."""
    with mock.patch("secrets.token_bytes", lambda _n: SALT):
        w = PackWriter(KEYS, VAULT_ID, 9, None, 2)
    blob = b"Hello\r\n"
    w.add_frame([(KEYS.keyed_id(blob), "txt", blob)])
    name, data, locs = w.finish()
    return name, bytes(data), locs


def test_section_6_8_matches_popvaults_writer() -> None:
    doc = _section("6.8 Example (pack version 2)")
    name, data, locs = _example_pack()
    dump = _hexdump(doc)
    assert len(dump) >= 0x50
    assert {off: data[off] for off in dump} == dump
    size = int(re.search(r"The pack is (\d+) bytes", doc).group(1))  # type: ignore[union-attr]
    assert len(data) == size
    assert re.search(r"its name is\s+`([0-9a-f]{64})`", doc).group(1) == name  # type: ignore[union-attr]
    assert f"packs/{name[:2]}/{name[:8]}…{name[-4:]}" in doc
    start, clen = _number(doc, "start_0"), _number(doc, "len(ct_0)")
    tstart, tlen = _number(doc, "tstart"), _number(doc, "len(trailer_ct)")
    assert (locs[0].frame_offset, locs[0].frame_length) == (start, clen)
    assert struct.unpack(">I", data[start - 4 : start])[0] == clen
    assert struct.unpack(">I", data[-4:])[0] == tlen
    assert len(data) - 4 - tlen == tstart
    assert _suffix(doc, "FAD_0") == struct.pack(">QI", start, clen)
    assert _suffix(doc, "TAD") == struct.pack(">QI", tstart, tlen)


def test_section_6_8_opens_with_the_spec_alone() -> None:
    """An independent reader: HKDF, the associated data as §6.1/§6.8 spell it, and the
    bytes of the hexdump decrypt to §6.7's ``plain_0``; the trailer to §6.7's JSON."""
    doc = _section("6.8 Example (pack version 2)")
    v1 = _section("6.7 Example")
    dump = _hexdump(doc)
    head = bytes(dump[i] for i in range(HEADER_SIZE))
    assert head[:8] == b"PVPACK02" and head[8:] == SALT
    assert f'"{VAULT_ID}"' in doc
    k = HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=b"popvault-pack-v1").derive(
        KEYS.enc
    )
    k_doc = re.search(r"K\s+= HKDF.*\n\s+= ([0-9a-f]{64})", v1).group(1)  # type: ignore[union-attr]
    assert k.hex() == k_doc
    start, clen = _number(doc, "start_0"), _number(doc, "len(ct_0)")
    ct = bytes(dump[i] for i in range(start, start + clen))
    fad = b"PVPACK02" + VAULT_ID.encode() + SALT + b"F" + _suffix(doc, "FAD_0")
    assert len(fad) == 85
    plain_doc = re.search(r"plain_0 = ((?:[0-9a-f]{2} )+)", v1).group(1)  # type: ignore[union-attr]
    plain = ChaCha20Poly1305(k).decrypt(b"\x00" * 12, ct, fad)
    assert plain == bytes.fromhex(plain_doc.replace(" ", ""))
    # the trailer (not in the hexdump in full): popvault's bytes, the spec's TAD
    _name, data, _locs = _example_pack()
    tstart, tlen = _number(doc, "tstart"), _number(doc, "len(trailer_ct)")
    tad = b"PVPACK02" + VAULT_ID.encode() + SALT + b"T" + _suffix(doc, "TAD")
    tplain = ChaCha20Poly1305(k).decrypt(b"\xff" * 12, data[tstart : tstart + tlen], tad)
    trailer = json.loads(zstandard.ZstdDecompressor().decompress(tplain))
    json_doc = re.search(r"^(\{\"version\": 1, \"frames\".*\})$", v1, re.M).group(1)  # type: ignore[union-attr]
    assert trailer == json.loads(json_doc)
    # and the version 1 associated data does not open it
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
        ChaCha20Poly1305(k).decrypt(b"\x00" * 12, ct, fad[:73])


# ---------------------------------------------------------------- every byte matters


def _pack(version: int) -> tuple[str, bytes, list[BlobLocation], MemoryBackend]:
    w = PackWriter(KEYS, VAULT_ID, 3, None, version)
    for f in range(3):
        blobs = [bytes([65 + f]) * (50 + 10 * i) + b"%d" % i for i in range(3)]
        w.add_frame([(KEYS.keyed_id(b), "txt", b) for b in blobs])
    name, data, locs = w.finish()
    backend = MemoryBackend()
    backend.put(pack_object_name(name), data)
    return name, bytes(data), locs, backend


def _classes(data: bytes, locs: list[BlobLocation]) -> dict[str, list[int]]:
    tlen = struct.unpack(">I", data[-4:])[0]
    tstart = len(data) - 4 - tlen
    frames = sorted({(loc.frame_offset, loc.frame_length) for loc in locs})
    out = {"magic": list(range(8)), "salt": list(range(8, HEADER_SIZE))}
    for i, (start, n) in enumerate(frames):
        out[f"frame {i} length"] = list(range(start - 4, start))
        out[f"frame {i} ciphertext"] = list(range(start, start + n))
    out["trailer"] = list(range(tstart, len(data) - 4))
    out["trailer length"] = list(range(len(data) - 4, len(data)))
    assert sorted(b for v in out.values() for b in v) == list(range(len(data)))
    return out


def _parse_fails(name: str, data: bytes) -> bool:
    try:
        r = PackReader(KEYS, VAULT_ID, name, data[:HEADER_SIZE])
        frames, _ = r.parse(data)
        list(r.iter_frames(data, frames))
    except IntegrityError:
        return True
    return False


def _scan_fails(name: str, data: bytes) -> bool:
    try:
        r = PackReader(KEYS, VAULT_ID, name, data[:HEADER_SIZE])
        scan = PackScan(r, len(data), lambda off, n: data[off : off + n])
        list(scan.payloads())
        return scan.digest() != name
    except IntegrityError:
        return True


def _normal_read_fails(backend: MemoryBackend, loc: BlobLocation) -> bool:
    reader = Reader(backend, KEYS, VAULT_ID, lambda _b: None)
    try:
        reader.read_blob(loc.blob_id, loc=loc, use_cache=False)
    except IntegrityError:
        return True
    return False


@pytest.mark.parametrize("mask", [0x01, 0x80])
def test_every_byte_of_a_v2_pack_is_authenticated(mask: int) -> None:
    name, data, locs, backend = _pack(2)
    obj = pack_object_name(name)
    assert data[:8] == b"PVPACK02"
    for loc in locs:  # intact: every blob reads
        assert not _normal_read_fails(backend, loc)
    for what, offsets in _classes(data, locs).items():
        for off in offsets:
            bad = data[:off] + bytes([data[off] ^ mask]) + data[off + 1 :]
            backend.put(obj, bad)
            # the whole-pack parse (index rebuild, adoption) fails on any byte, even
            # without the pack's name (v1 packs pass some of these)
            assert _parse_fails(name, bad), f"{what} @{off}: parse"
            assert _scan_fails(name, bad), f"{what} @{off}: check"
            # the normal read of a blob fails when it reads the byte
            for loc in locs:
                read = set(range(HEADER_SIZE)) | set(
                    range(loc.frame_offset - 4, loc.frame_offset + loc.frame_length)
                )
                if off in read:
                    assert _normal_read_fails(backend, loc), f"{what} @{off}: read {loc.frame}"
                else:
                    assert not _normal_read_fails(backend, loc), f"{what} @{off}"
        backend.put(obj, data)


def test_v1_pack_lengths_are_not_authenticated_but_v2_ones_are() -> None:
    """Why version 2 exists: with a v1 pack, an altered frame length prefix still parses
    when the trailer is rebuilt to match (nothing binds the two); in v2 the AD does."""
    for version, authenticated in ((1, False), (2, True)):
        name, data, locs, _backend = _pack(version)
        start, n = locs[0].frame_offset, locs[0].frame_length
        r = PackReader(KEYS, VAULT_ID, name, data[:HEADER_SIZE])
        # the frame opens at its place with its length; elsewhere only in v1
        r.frame(0, start, data[start : start + n])
        moved = start + 100
        if authenticated:
            with pytest.raises(IntegrityError):
                r.frame(0, moved, data[start : start + n])
        else:
            r.frame(0, moved, data[start : start + n])


def test_a_frame_length_prefix_that_lies_fails_the_normal_read() -> None:
    for version in (1, 2):
        name, data, locs, backend = _pack(version)
        start = locs[0].frame_offset
        bad = data[: start - 4] + struct.pack(">I", locs[0].frame_length + 1) + data[start:]
        backend.put(pack_object_name(name), bad)
        with pytest.raises(IntegrityError, match="damaged length"):
            Reader(backend, KEYS, VAULT_ID, lambda _b: None).read_blob(
                locs[0].blob_id, loc=locs[0], use_cache=False
            )


def test_pack_scan_holds_one_frame_at_a_time() -> None:
    name, data, _locs, _backend = _pack(2)
    reads: list[tuple[int, int]] = []

    def fetch(off: int, n: int) -> bytes:
        reads.append((off, n))
        return data[off : off + n]

    seen: list[int] = []
    scan = PackScan(
        PackReader(KEYS, VAULT_ID, name, data[:HEADER_SIZE]), len(data), fetch, seen.append
    )
    assert [i for i, _ in scan.payloads()] == [0, 1, 2]
    assert scan.digest() == name == hashlib.sha256(data).hexdigest()
    assert sum(seen) == len(data)
    frames = [(start - 4, n + 4) for start, n in scan.frames]
    assert reads == [(len(data) - 4, 4), (scan.tstart, len(data) - 4 - scan.tstart), *frames]
    assert sum(n for _, n in reads) + HEADER_SIZE == len(data)  # every byte read once


# ---------------------------------------------------------------- versions


def _config(root: Path) -> dict[str, object]:
    return parse_checksum_json((root / "config").read_bytes(), "config")


def _set_version(root: Path, version: int) -> None:
    body = _config(root)
    body["version"] = version
    (root / "config").chmod(0o600)
    (root / "config").write_bytes(checksum_json(body))


def _magics(root: Path) -> set[bytes]:
    return {p.read_bytes()[:8] for p in (root / "packs").rglob("*") if p.is_file()}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_new_vault_is_version_2_and_writes_v2_packs(tmp_path: Path) -> None:
    root = tmp_path / "v"
    create(root)
    assert FORMAT_VERSION == 2
    assert _config(root)["version"] == 2
    with open_rw(root) as v:
        ids = list(add_batch(v, [text_message(i) for i in range(5)]))
        v.commit()
    assert _magics(root) == {b"PVPACK02"}
    with open_ro(root) as v:
        assert v.check(read_data=True).ok
        for mid in ids:
            v.verify_messages([mid])


def _v1_vault(root: Path) -> list[bytes]:
    """A version 1 vault holding five messages in PVPACK01 packs."""
    create(root)
    _set_version(root, 1)
    with open_rw(root) as v:
        ids = list(add_batch(v, [text_message(i) for i in range(5)]))
        v.commit()
    return ids


def test_a_v1_vault_reads_and_is_written_with_v1_packs(tmp_path: Path) -> None:
    root = tmp_path / "v"
    ids = _v1_vault(root)
    with open_rw(root) as v:
        ids += list(add_batch(v, [text_message(i) for i in range(5, 8)]))
        v.commit()
    assert _config(root)["version"] == 1
    assert _magics(root) == {b"PVPACK01"}
    with open_ro(root) as v:
        assert v.check(read_data=True).ok
        assert len(list(v.messages())) == 8
        for mid in ids:
            v.verify_messages([mid])
        v.rebuild_cache(from_packs=True)
        assert len(list(v.messages())) == 8


def test_upgrade_moves_a_v1_vault_to_2_once(tmp_path: Path) -> None:
    root = tmp_path / "v"
    ids = _v1_vault(root)
    before = _tree(root)
    dry = upgrade_config(root, dry_run=True)
    assert (dry.before, dry.after, dry.changed) == (1, 2, False)
    assert _tree(root) == before
    res = upgrade_config(root)
    assert (res.before, res.after, res.changed) == (1, 2, True)
    body = _config(root)
    assert body["version"] == 2 and body["id"] == dry.vault_id and body["format"]
    assert not (root / "lock").exists()
    again = upgrade_config(root)
    assert (again.before, again.changed) == (2, False)
    after = _tree(root)
    assert upgrade_config(root, dry_run=True).changed is False
    assert _tree(root) == after
    # old packs still read, new packs are v2, everything checks
    with open_rw(root) as v:
        ids += list(add_batch(v, [text_message(i) for i in range(5, 8)]))
        v.commit()
    assert _magics(root) == {b"PVPACK01", b"PVPACK02"}
    with open_ro(root) as v:
        rep = v.check(read_data=True)
        assert rep.ok, rep.problems
        for mid in ids:
            v.verify_messages([mid])


def test_upgrade_keeps_unknown_config_keys_and_waits_for_the_lock(tmp_path: Path) -> None:
    root = tmp_path / "v"
    create(root)
    body = _config(root)
    body["version"] = 1
    body["future"] = {"x": 1}
    (root / "config").chmod(0o600)
    (root / "config").write_bytes(checksum_json(body))
    with open_rw(root):  # a writer holds the lock
        from popvault.errors import VaultLocked

        with pytest.raises(VaultLocked):
            upgrade_config(root)
        assert _config(root)["version"] == 1
    upgrade_config(root)
    assert _config(root) == {**body, "version": 2}


def test_a_v2_pack_in_a_v1_vault_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "v"
    create(root)
    with open_rw(root) as v:
        ids = list(add_batch(v, [text_message(i) for i in range(3)]))
        v.commit()
    _set_version(root, 1)  # as if config were put back from an older copy
    with open_ro(root, cache_dir=tmp_path / "c1") as v:
        with pytest.raises(PackVersionError) as ei:
            v.read_message(ids[0])
        assert ei.value.exit_code == 20
        assert "version 2 pack" in ei.value.message and "popvault upgrade" in str(ei.value.hint)
        rep = v.check(read_data=True)
        assert not rep.ok
        assert set(ids) <= rep.affected
    assert upgrade_config(root).changed
    with open_ro(root, cache_dir=tmp_path / "c2") as v:
        assert v.check(read_data=True).ok


def test_a_reader_opened_before_an_upgrade_reads_the_new_packs(tmp_path: Path) -> None:
    root = tmp_path / "v"
    _v1_vault(root)
    with open_ro(root, cache_dir=tmp_path / "reader") as old:
        upgrade_config(root)
        with open_rw(root, cache_dir=tmp_path / "writer") as v:
            new = add_batch(v, [text_message(i) for i in range(10, 12)])
            v.commit()
        old.sync_cache()
        for mid in new:
            old.verify_messages([mid])


def test_a_vault_newer_than_popvault_is_refused_with_its_message(tmp_path: Path) -> None:
    root = tmp_path / "v"
    create(root)
    _set_version(root, FORMAT_VERSION + 1)
    before = _tree(root)
    for call in (
        lambda: Vault.open(root, PASSPHRASE),
        lambda: upgrade_config(root),
        lambda: read_vault_config(LocalBackend(root), "v"),
    ):
        with pytest.raises(PopvaultError) as ei:
            call()
        assert ei.value.exit_code == 1
        assert ei.value.message == (
            "vault format version 3 is newer than this popvault supports (2)"
        )
        assert ei.value.hint == "upgrade popvault to read this vault; it was not changed"
    assert _tree(root) == before


def test_cli_upgrade(tmp_path: Path) -> None:
    from tests.cli.helpers import make_vault, run

    root = make_vault(tmp_path / "v")
    _set_version(root, 1)
    res = run("--vault", root, "upgrade", "--dry-run")
    assert res.code == 0, str(res)
    assert "would upgrade" in res.err and _config(root)["version"] == 1
    res = run("--vault", root, "upgrade")
    assert res.code == 0, str(res)
    assert "from format version 1 to 2" in res.err and _config(root)["version"] == 2
    res = run("--vault", root, "upgrade")
    assert res.code == 0 and "nothing to do" in res.err
    assert run("--vault", tmp_path / "none", "upgrade").code == 10
