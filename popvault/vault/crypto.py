"""Keys and sealing: key slots, keyed ids, AEAD of objects and frames (docs/format.md §4-§5).

A vault has two random 256-bit master keys: ``enc`` (encryption) and ``mac`` (keyed ids,
HMAC-SHA256). Key slots wrap both with a key derived from a passphrase by Argon2id. Every
encrypted object carries a random 32-byte salt; its key is HKDF-SHA256(enc, salt, info),
so a nonce is only ever unique within one object (frames count up from 0) and can never
repeat under the same key. Associated data binds every ciphertext to the vault id, the
object kind and the object's salt. All primitives come from ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from popvault.errors import IntegrityError, WrongPassphrase
from popvault.vault.ids import keyed_id

SALT_SIZE = 32
TAG_SIZE = 16
TRAILER_NONCE = b"\xff" * 12


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost; ``docs/format.md`` §4.2 names the defaults."""

    iterations: int = 3
    lanes: int = 4
    memory_kib: int = 65536

    def to_json(self) -> dict[str, int]:
        return {"iterations": self.iterations, "lanes": self.lanes, "memory_kib": self.memory_kib}

    @property
    def acceptable(self) -> bool:
        """Within the caps a reader accepts (format §4.2): a tampered slot must not make
        unlocking take minutes or gigabytes."""
        return (
            1 <= self.iterations <= MAX_ITERATIONS
            and 1 <= self.lanes <= MAX_LANES
            and 8 * self.lanes <= self.memory_kib <= MAX_MEMORY_KIB
        )

    @property
    def cost(self) -> int:
        """A rough measure of the work of one derivation (memory times passes)."""
        return self.memory_kib * self.iterations


#: The costs a reader accepts in a key slot (format §4.2): about 3 s and 1 GiB at most.
MAX_ITERATIONS = 10
MAX_LANES = 16
MAX_MEMORY_KIB = 1 << 20


def slot_params(body: dict[str, Any]) -> KdfParams:
    """The Argon2id costs a parsed key slot names; KeyError/TypeError/ValueError when
    they are missing or not integers."""
    kdf = body["kdf"]
    return KdfParams(int(kdf["iterations"]), int(kdf["lanes"]), int(kdf["memory_kib"]))


#: Cheap parameters for tests only (never the default).
TEST_KDF = KdfParams(iterations=1, lanes=1, memory_kib=8)


@dataclass(frozen=True)
class MasterKeys:
    enc: bytes
    mac: bytes

    @classmethod
    def generate(cls) -> MasterKeys:
        return cls(secrets.token_bytes(32), secrets.token_bytes(32))

    def __repr__(self) -> str:
        return "MasterKeys(<secret>)"

    def keyed_id(self, data: bytes) -> bytes:
        """HMAC-SHA256(mac, data): the id of a message or blob (format §5.1)."""
        return keyed_id(self.mac, data)

    def hasher(self) -> hmac.HMAC:
        """An incremental keyed-id hasher, for streamed messages."""
        return hmac.new(self.mac, b"", hashlib.sha256)

    def subkey(self, salt: bytes, info: bytes) -> ChaCha20Poly1305:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(self.enc)
        return ChaCha20Poly1305(key)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: Any) -> bytes:
    if not isinstance(s, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(s, validate=True)


def checksum_json(body: dict[str, Any]) -> bytes:
    """Canonical JSON with an unkeyed SHA-256 checksum line (detects accidental damage)."""
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canon.encode()).hexdigest()
    return json.dumps({"body": body, "sha256": digest}, indent=1, sort_keys=True).encode() + b"\n"


def parse_checksum_json(data: bytes, what: str) -> dict[str, Any]:
    """Inverse of :func:`checksum_json`; IntegrityError on any damage."""
    try:
        outer = json.loads(data)
        body = outer["body"]
        canon = json.dumps(body, sort_keys=True, separators=(",", ":"))
        ok = hashlib.sha256(canon.encode()).hexdigest() == outer["sha256"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        ok = False  # RecursionError: JSON nested deeper than the parser goes
        body = None
    if not ok or not isinstance(body, dict):
        raise IntegrityError(
            f"{what} is damaged (checksum mismatch)",
            hint="restore this file from another copy of the vault",
        )
    return body


def _derive_kek(passphrase: bytes, salt: bytes, p: KdfParams) -> ChaCha20Poly1305:
    key = Argon2id(
        salt=salt,
        length=32,
        iterations=p.iterations,
        lanes=p.lanes,
        memory_cost=p.memory_kib,
    ).derive(passphrase)
    return ChaCha20Poly1305(key)


def _slot_ad(vault_id: str) -> bytes:
    return b"popvault-keyslot-v1\x00" + vault_id.encode()


def make_key_slot(keys: MasterKeys, passphrase: bytes, vault_id: str, params: KdfParams) -> bytes:
    """A key-slot file (format §4.2): the master keys wrapped by the passphrase."""
    salt = secrets.token_bytes(16)
    nonce = secrets.token_bytes(12)
    plain = json.dumps({"enc": keys.enc.hex(), "mac": keys.mac.hex(), "vault": vault_id}).encode()
    ct = _derive_kek(passphrase, salt, params).encrypt(nonce, plain, _slot_ad(vault_id))
    body = {
        "version": 1,
        "kdf": {"name": "argon2id", "salt": _b64(salt), **params.to_json()},
        "aead": "chacha20-poly1305",
        "nonce": _b64(nonce),
        "ciphertext": _b64(ct),
    }
    return checksum_json(body)


def open_key_slot(data: bytes, passphrase: bytes, vault_id: str, what: str) -> MasterKeys:
    """Unwrap one slot. WrongPassphrase if it does not open; IntegrityError if damaged."""
    body = parse_checksum_json(data, what)
    try:
        kdf = body["kdf"]
        if kdf["name"] != "argon2id" or body["aead"] != "chacha20-poly1305":
            raise IntegrityError(f"{what} names an unknown algorithm")
        if body.get("version") != 1:
            raise IntegrityError(f"{what} has an unknown version")
        params = slot_params(body)
        if not params.acceptable:
            raise IntegrityError(f"{what} names Argon2id costs outside the accepted range")
        salt, nonce, ct = _unb64(kdf["salt"]), _unb64(body["nonce"]), _unb64(body["ciphertext"])
        if len(salt) != 16 or len(nonce) != 12:  # format §1 (base64), §4.2
            raise ValueError("salt or nonce of the wrong length")
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{what} is malformed") from exc
    try:
        plain = _derive_kek(passphrase, salt, params).decrypt(nonce, ct, _slot_ad(vault_id))
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase") from None
    try:
        obj = json.loads(plain)
        if obj["vault"] != vault_id:
            raise IntegrityError(f"{what} belongs to another vault")
        keys = MasterKeys(bytes.fromhex(obj["enc"]), bytes.fromhex(obj["mac"]))
        if len(keys.enc) != 32 or len(keys.mac) != 32:
            raise ValueError("bad key length")
        return keys
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{what} holds malformed keys") from exc


# --- single-shot objects: index segments and commit records (format §5.3) -------------


def seal_object(keys: MasterKeys, vault_id: str, magic: bytes, plaintext: bytes) -> bytes:
    """``magic || salt || AEAD(HKDF(enc, salt), nonce=0, plaintext, ad)``."""
    salt = secrets.token_bytes(SALT_SIZE)
    aead = keys.subkey(salt, b"popvault-object-v1\x00" + magic)
    ad = magic + vault_id.encode() + salt
    return magic + salt + aead.encrypt(b"\x00" * 12, plaintext, ad)


def open_object(keys: MasterKeys, vault_id: str, magic: bytes, data: bytes, what: str) -> bytes:
    """Inverse of :func:`seal_object`; IntegrityError when it fails authentication."""
    n = len(magic)
    if len(data) < n + SALT_SIZE + TAG_SIZE or data[:n] != magic:
        raise IntegrityError(f"{what} is truncated or not a popvault object")
    salt = data[n : n + SALT_SIZE]
    aead = keys.subkey(salt, b"popvault-object-v1\x00" + magic)
    try:
        return aead.decrypt(b"\x00" * 12, data[n + SALT_SIZE :], magic + vault_id.encode() + salt)
    except InvalidTag:
        raise IntegrityError(f"{what} failed authentication") from None


# --- packs: many frames under one salt (format §6) ------------------------------------


class PackCipher:
    """The AEAD for one pack: frame *i* uses nonce *i*; the trailer uses all-ones.

    With ``bind_layout`` (pack version 2, format §6.1) the associated data of a frame
    also holds the frame's place and size, ``u64 start || u32 len(ct)``, and that of the
    trailer ``u64 start || u32 len(trailer_ct)``: every length prefix and the pack's size
    are authenticated with the ciphertext they describe. ``start`` is the absolute
    offset of the ciphertext in the pack (just after its length prefix)."""

    def __init__(
        self,
        keys: MasterKeys,
        vault_id: str,
        magic: bytes,
        salt: bytes,
        *,
        bind_layout: bool = False,
    ) -> None:
        self._aead = keys.subkey(salt, b"popvault-pack-v1")
        self._ad = magic + vault_id.encode() + salt
        self._bind = bind_layout

    @staticmethod
    def nonce(index: int) -> bytes:
        return struct.pack(">IQ", 0, index)

    def associated_data(self, part: bytes, start: int, ct_length: int) -> bytes:
        """The AD of a frame (``part`` ``F``) or the trailer (``T``) of ``ct_length``
        ciphertext bytes at offset ``start``."""
        if not self._bind:
            return self._ad + part
        return self._ad + part + struct.pack(">QI", start, ct_length)

    def seal_frame(self, index: int, plaintext: bytes, start: int = 0) -> bytes:
        ad = self.associated_data(b"F", start, len(plaintext) + TAG_SIZE)
        return self._aead.encrypt(self.nonce(index), plaintext, ad)

    def open_frame(
        self, index: int, ciphertext: bytes | memoryview, what: str, start: int = 0
    ) -> bytes:
        ad = self.associated_data(b"F", start, len(ciphertext))
        try:
            return self._aead.decrypt(self.nonce(index), ciphertext, ad)
        except InvalidTag:
            raise IntegrityError(f"{what} failed authentication") from None

    def seal_trailer(self, plaintext: bytes, start: int = 0) -> bytes:
        ad = self.associated_data(b"T", start, len(plaintext) + TAG_SIZE)
        return self._aead.encrypt(TRAILER_NONCE, plaintext, ad)

    def open_trailer(self, ciphertext: bytes, what: str, start: int = 0) -> bytes:
        ad = self.associated_data(b"T", start, len(ciphertext))
        try:
            return self._aead.decrypt(TRAILER_NONCE, ciphertext, ad)
        except InvalidTag:
            raise IntegrityError(f"{what} trailer failed authentication") from None


def random_hex(nbytes: int) -> str:
    return os.urandom(nbytes).hex()


def export_keys(keys: MasterKeys, vault_id: str) -> str:
    """A printable key backup (format §4.4): plain text, checksummed, SECRET."""
    body = {"vault": vault_id, "enc": keys.enc.hex(), "mac": keys.mac.hex()}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canon.encode()).hexdigest()[:16]
    groups = [keys.enc.hex()[i : i + 8] for i in range(0, 64, 8)]
    mgroups = [keys.mac.hex()[i : i + 8] for i in range(0, 64, 8)]
    return (
        "popvault key export v1\n"
        "# SECRET: anyone holding this text and the vault files can read all mail.\n"
        "# Keep it offline (paper, safe). Restore with: popvault key import FILE\n"
        f"vault: {vault_id}\n"
        f"enc: {' '.join(groups)}\n"
        f"mac: {' '.join(mgroups)}\n"
        f"check: {digest}\n"
    )


def import_keys(text: str) -> tuple[str, MasterKeys]:
    """Parse :func:`export_keys` output; ValueError naming the problem."""
    fields: dict[str, str] = {}
    lines = [ln.strip() for ln in text.splitlines()]
    if not lines or lines[0] != "popvault key export v1":
        raise ValueError("not a popvault key export (first line differs)")
    for ln in lines[1:]:
        if not ln or ln.startswith("#"):
            continue
        k, _, v = ln.partition(":")
        fields[k.strip()] = v.replace(" ", "").strip()
    try:
        vault_id, enc, mac = (
            fields["vault"],
            bytes.fromhex(fields["enc"]),
            bytes.fromhex(fields["mac"]),
        )
    except (KeyError, ValueError):
        raise ValueError("key export is incomplete or has a typo") from None
    if len(enc) != 32 or len(mac) != 32:
        raise ValueError("key export has keys of the wrong length")
    body = {"vault": vault_id, "enc": enc.hex(), "mac": mac.hex()}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"))
    if hashlib.sha256(canon.encode()).hexdigest()[:16] != fields.get("check"):
        raise ValueError("key export checksum does not match (a typo?)")
    return vault_id, MasterKeys(enc, mac)
