"""The index cache file's key, its header and its folder (docs/format.md §9.3), no SQL.

The cache (:mod:`popvault.vault.cache`) is a SQLCipher database keyed with a raw key
derived from the vault's master ``enc`` key; SQLCipher keeps its 16-byte salt in
plaintext at the start of the file, and popvault's salt names the vault, so a file tells
whose cache it is without a key. ``POPVAULT_CACHE_PLAINTEXT=1`` asks for a plaintext file.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from popvault.vault.crypto import MasterKeys

#: Set to ``1`` for a plaintext cache file (format §9.3); anything else: encrypted.
PLAINTEXT_ENV = "POPVAULT_CACHE_PLAINTEXT"
#: HKDF info of the cache key (format §9.3).
KEY_INFO = b"popvault-cache-v1"
#: The first 8 bytes of an encrypted cache file; the next 8 are the first 8 bytes of the
#: vault id (SQLCipher keeps its 16-byte salt in plaintext at the start of the file).
FILE_MAGIC = b"popvault"
#: The first 16 bytes of a plaintext SQLite file.
PLAIN_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class CacheKey:
    """The raw SQLCipher key of one vault's cache file and the salt its file starts with."""

    key: bytes
    salt: bytes

    @classmethod
    def derive(cls, keys: MasterKeys, vault_id: str) -> CacheKey:
        """HKDF-SHA256 over the master ``enc`` key, salt the vault id (32 ASCII bytes),
        info ``popvault-cache-v1``: 32 bytes, never the passphrase (format §9.3). The
        SQLCipher salt is :data:`FILE_MAGIC` and the first 8 bytes of the vault id: not
        secret (the vault id names the file), and it tells whose cache a file is."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=vault_id.encode(), info=KEY_INFO)
        return cls(hkdf.derive(keys.enc), FILE_MAGIC + bytes.fromhex(vault_id)[:8])

    def __repr__(self) -> str:
        return "CacheKey(<secret>)"


def plaintext_requested() -> bool:
    """Whether the user asked for a plaintext cache file (``POPVAULT_CACHE_PLAINTEXT=1``)."""
    return os.environ.get(PLAINTEXT_ENV, "").strip() == "1"


def file_head(path: Path) -> bytes:
    """The first 16 bytes of ``path`` (fewer, or none, for a short or missing file)."""
    try:
        with path.open("rb") as f:
            return f.read(16)
    except OSError:
        return b""


def encrypted_owner(head: bytes) -> str | None:
    """The first 16 hex digits of the vault id an encrypted cache's ``head`` names."""
    if len(head) == 16 and head.startswith(FILE_MAGIC):
        return head[len(FILE_MAGIC) :].hex()
    return None


def make_private(folder: Path) -> None:
    """Set the cache's folder to 0700 if others may read it, also when it existed before:
    the cache's names and sizes, and a plaintext cache's headers, are nobody else's
    business. Not a folder we do not own, nor a shared one (the sticky bit: /tmp), nor
    the home folder: there the file's own 0600 has to do."""
    st = folder.stat()
    shared = st.st_mode & stat.S_ISVTX or folder.resolve() == Path.home().resolve()
    if st.st_mode & 0o077 and st.st_uid == os.getuid() and not shared:
        os.chmod(folder, 0o700)
