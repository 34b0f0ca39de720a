"""The worked examples of docs/format.md, recomputed with popvault's code.

Every input and every stated output is parsed out of the markdown itself (the example's
code blocks and the sentence that introduces it), so the test fails as soon as the spec
and the code disagree, whichever of them changed. Covered: §4.2 (default and maximal
Argon2id costs), §4.4 (key export), §5.3 (a sealed commit record, byte for byte) and
§6.7 (a one-blob pack, byte for byte, its trailer, size and name). The pack's trailer
ciphertext depends on the zstd library's output; the bytes the spec shows are those of
the zstandard library popvault pins, so a zstd upgrade that changes them shows here.
"""

from __future__ import annotations

import inspect
import json
import re
import struct
from pathlib import Path
from typing import Any, cast
from unittest import mock

import zstandard
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from popvault.vault import crypto, pack
from popvault.vault.crypto import (
    MAX_ITERATIONS,
    MAX_LANES,
    MAX_MEMORY_KIB,
    KdfParams,
    MasterKeys,
    export_keys,
    import_keys,
    open_object,
    seal_object,
)

SPEC = (Path(__file__).resolve().parents[3] / "docs" / "format.md").read_text()


def section(number: str) -> str:
    """The text of section ``number`` (e.g. "6.7") up to the next heading."""
    m = re.search(rf"^#{{2,3}} {re.escape(number)}\.? .*?$(.*?)(?=^#{{2,3}} )", SPEC, re.M | re.S)
    assert m, f"no section {number} in docs/format.md"
    return m.group(1)


def blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)


def byte_range(text: str) -> bytes:
    """``40 41 … 5f`` -> the bytes 0x40 to 0x5f."""
    m = re.fullmatch(r"([0-9a-f]{2}) ([0-9a-f]{2}) … ([0-9a-f]{2})", text.strip())
    assert m, text
    first, second, last = (int(g, 16) for g in m.groups())
    assert second == first + 1
    return bytes(range(first, last + 1))


def hexdump(block: str) -> dict[int, bytes]:
    """The lines ``OFFSET  xx xx …   comment`` of a dump (others skipped)."""
    out: dict[int, bytes] = {}
    for line in block.splitlines():
        m = re.match(r"^([0-9a-f]{8})  ((?:[0-9a-f]{2} ?)+?)(?:\s{2,}|$)", line)
        if m:
            out[int(m.group(1), 16)] = bytes.fromhex(m.group(2))
    assert out, block
    return out


def assert_dump(dump: dict[int, bytes], data: bytes) -> None:
    for offset, expected in dump.items():
        assert data[offset : offset + len(expected)] == expected, f"at {offset:#x}"


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


# --- §4.2, §4.4 -----------------------------------------------------------------------


def test_key_slot_defaults_and_caps() -> None:
    text = section("4.2")
    slot = json.loads(blocks(text)[0])
    assert slot["kdf"]["name"] == "argon2id" and slot["aead"] == "chacha20-poly1305"
    default = KdfParams()
    assert slot["kdf"]["iterations"] == default.iterations
    assert slot["kdf"]["lanes"] == default.lanes
    assert slot["kdf"]["memory_kib"] == default.memory_kib
    m = re.search(r"`iterations` (\d+), `lanes` (\d+), `memory_kib` (\d+)", text)
    assert m and tuple(map(int, m.groups())) == (3, 4, 65536)
    assert (default.iterations, default.lanes, default.memory_kib) == (3, 4, 65536)
    caps = re.search(
        r"1 ≤ `iterations` ≤ (\d+), 1 ≤ `lanes` ≤ (\d+), (\d+) × `lanes` ≤ `memory_kib` ≤ "
        r"1 GiB\s+\(([\d,]+)\)",
        text,
    )
    assert caps, "the cost limits sentence of §4.2"
    iterations, lanes, per_lane, memory = caps.groups()
    assert (int(iterations), int(lanes), int(memory.replace(",", ""))) == (
        MAX_ITERATIONS,
        MAX_LANES,
        MAX_MEMORY_KIB,
    )
    assert MAX_MEMORY_KIB == 1 << 20
    assert KdfParams(1, 2, 2 * int(per_lane)).acceptable
    assert not KdfParams(1, 2, 2 * int(per_lane) - 1).acceptable


def example_keys(text: str) -> tuple[MasterKeys, str]:
    """Keys and vault id of an example sentence: keys `a … b` and `c … d`, vault `id`."""
    m = re.search(r"keys\s+`([^`]+)`\s+and\s+`([^`]+)`,\s+vault\s+`([0-9a-f]{32})`", text)
    assert m, "the example's inputs"
    return MasterKeys(byte_range(m.group(1)), byte_range(m.group(2))), m.group(3)


def test_key_export_example() -> None:
    text = section("4.4")
    keys, vault_id = example_keys(text)
    layout, example = blocks(text)[0], blocks(text)[-1]
    exported = export_keys(keys, vault_id)
    # the fixed lines of the layout, and every line of the example, exactly
    fixed = [ln for ln in layout.splitlines() if "<" not in ln]
    assert fixed and all(ln in exported.splitlines() for ln in fixed)
    for ln in example.splitlines():
        assert ln in exported.splitlines(), ln
    assert len(exported.splitlines()) == len(layout.splitlines())
    assert exported.endswith("\n")
    # and it imports back, checked by its check line
    assert import_keys(exported) == (vault_id, keys)


# --- §5.3 ---------------------------------------------------------------------------


def test_single_shot_object_example() -> None:
    text = section("5.3")
    example = text[text.index("**Example.**") :]
    m = re.search(
        r"vault id `([0-9a-f]{32})`, `enc` = `([^`]+)`,\s+salt = `([^`]+)`, magic `(\w{8})`,"
        r" plaintext `([^`]+)` \((\d+) bytes\)",
        example,
    )
    assert m, "the inputs of the §5.3 example"
    vault_id, enc, salt = m.group(1), byte_range(m.group(2)), byte_range(m.group(3))
    magic, plaintext = m.group(4).encode(), m.group(5).encode()
    assert len(plaintext) == int(m.group(6))
    block = blocks(example)[0]

    k = re.search(r"=\s+([0-9a-f]{64})", block)
    assert k, "K"
    info = re.search(r'HKDF-SHA256\(enc, salt, "([^"]+)"\)', block)
    assert info and info.group(1) == f"popvault-object-v1\\0{magic.decode()}"
    key = hkdf(enc, salt, b"popvault-object-v1\x00" + magic)
    assert key.hex() == k.group(1)

    ad_len = re.search(r"^AD = .*\((\d+) bytes\)$", block, re.M)
    ad = magic + vault_id.encode() + salt
    assert ad_len and int(ad_len.group(1)) == len(ad)

    keys = MasterKeys(enc, bytes(32))
    with mock.patch("popvault.vault.crypto.secrets.token_bytes", return_value=salt):
        obj = seal_object(keys, vault_id, magic, plaintext)
    dump = hexdump(block)
    assert_dump(dump, obj)
    last = max(dump)
    assert len(obj) == last + len(dump[last]) == 8 + 32 + len(plaintext) + 16
    assert ChaCha20Poly1305(key).decrypt(b"\x00" * 12, obj[40:], ad) == plaintext
    assert open_object(keys, vault_id, magic, obj, "example") == plaintext
    assert re.search(r"shorter than 8 \+ 32 \+ 16 = 56 bytes", text)


# --- §6.7 ---------------------------------------------------------------------------


def v1_pack(keys: MasterKeys, vault_id: str, magic: bytes, salt: bytes) -> Any:
    """A PackWriter writing packs with ``magic`` (a version parameter where there is one)."""
    kwargs: dict[str, int] = {}
    if "version" in inspect.signature(pack.PackWriter).parameters:
        versions: dict[bytes, int] = pack.PACK_VERSIONS  # type: ignore[attr-defined,unused-ignore]
        kwargs["version"] = versions[magic]
    else:
        assert magic == pack.PACK_MAGIC  # type: ignore[attr-defined,unused-ignore]
    with mock.patch("popvault.vault.pack.secrets.token_bytes", return_value=salt):
        return cast(Any, pack.PackWriter)(keys, vault_id, 9, None, **kwargs)


def test_pack_example() -> None:
    text = section("6.7")
    m = re.search(r"one `(\w+)` blob `([^`]+)` \((\d+) bytes\)", text)
    assert m, "the blob of the §6.7 example"
    kind = m.group(1)
    blob = m.group(2).encode().decode("unicode_escape").encode("latin-1")
    assert len(blob) == int(m.group(3))
    keys, vault_id = example_keys(text)
    assert (keys, vault_id) == example_keys(section("4.4"))
    s = re.search(r"salt\s+`([^`]+)`", text)
    assert s
    salt = byte_range(s.group(1))
    block = blocks(text)[0]

    def stated(label: str) -> str:
        v = re.search(rf"^{re.escape(label)}\s+=.*?\n?\s*=\s+([0-9a-f]{{64}})", block, re.M)
        assert v, label
        return v.group(1)

    blob_id = keys.keyed_id(blob)
    assert blob_id.hex() == stated("blob id")
    assert hkdf(keys.enc, salt, b"popvault-pack-v1").hex() == stated("K")

    plain = re.search(r"^plain_0 = ((?:[0-9a-f]{2} )+)\s+\(codec (\d)", block, re.M)
    assert plain
    frame_plain = pack.compress_frame(blob, 9)
    assert frame_plain == bytes.fromhex(plain.group(1))
    assert frame_plain[0] == int(plain.group(2))
    nonce = re.search(r"^nonce_0 = ((?:[0-9a-f]{2} ?)+)$", block, re.M)
    assert nonce and crypto.PackCipher.nonce(0) == bytes.fromhex(nonce.group(1))
    ad = re.search(
        r'^AD\|\|"F" = "(\w{8})" "([0-9a-f]{32})" (.+?) "F"\s+\((\d+) bytes\)', block, re.M
    )
    assert ad, "AD"
    magic = ad.group(1).encode()
    assert ad.group(2) == vault_id and byte_range(ad.group(3)) == salt
    assert int(ad.group(4)) == len(magic + vault_id.encode() + salt + b"F")

    writer = v1_pack(keys, vault_id, magic, salt)
    writer.add_frame([(blob_id, kind, blob)])
    name, data, locs = writer.finish()
    data = bytes(data)
    assert_dump(hexdump(block), data)

    # stated lengths: the frame's, the trailer's (and where it starts), the whole pack
    u32 = re.search(r"\| u32 (\d+) \| ct_0", block)
    assert u32 and struct.unpack(">I", data[40:44])[0] == int(u32.group(1))
    trailer = re.search(r"trailer_ct \((\d+)\) from (0x[0-9a-f]+)", block)
    assert trailer
    tlen, tstart = int(trailer.group(1)), int(trailer.group(2), 16)
    assert struct.unpack(">I", data[-4:])[0] == tlen and len(data) - 4 - tlen == tstart
    end = re.search(r"trailer_ct continues to (0x[0-9a-f]+)", block)
    assert end and int(end.group(1), 16) == len(data) - 5
    size = re.search(r"The pack is (\d+) bytes; its name is\s+`([0-9a-f]{64})`", text)
    assert size and len(data) == int(size.group(1)) and name == size.group(2)
    stored = re.search(r"stored as\s+`packs/([0-9a-f]{2})/([0-9a-f]{8})…([0-9a-f]{4})`", text)
    assert stored and pack.pack_object_name(name) == f"packs/{name[:2]}/{name}"
    assert (name[:2], name[:8], name[-4:]) == stored.groups()

    # the trailer opens to the JSON shown
    cipher = ChaCha20Poly1305(hkdf(keys.enc, salt, b"popvault-pack-v1"))
    tplain = cipher.decrypt(b"\xff" * 12, data[tstart:-4], magic + vault_id.encode() + salt + b"T")
    shown = json.loads(blocks(text)[1])
    assert json.loads(zstandard.ZstdDecompressor().decompress(tplain)) == shown
    assert [[loc.blob_id.hex(), loc.kind, loc.frame, loc.offset, loc.length] for loc in locs] == (
        shown["blobs"]
    )
