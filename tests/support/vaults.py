"""Small vaults for the vault tests: fixed passphrase, cheap KDF, a few known messages.

Every helper takes the place to build in (a directory for :class:`LocalBackend`, or a
backend object) and returns what the caller needs to assert on: the opened vault, or a
map of message id -> exact bytes. Tests set POPVAULT_CACHE_DIR to a tmp folder (see
:func:`isolate_cache`) so nothing touches ``~/.cache``.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import strategies as st

from popvault.vault.backend import Backend, MemoryBackend
from popvault.vault.crypto import TEST_KDF
from popvault.vault.vault import MessageMeta, SourceInfo, Vault

PASSPHRASE = b"correct horse battery staple"

Where = Path | str | Backend


def isolate_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point POPVAULT_CACHE_DIR at a fresh folder under ``tmp_path``; returns it."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("POPVAULT_CACHE_DIR", str(cache))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("POPVAULT_CACHE_PLAINTEXT", raising=False)  # the encrypted default
    return cache


def create(where: Where, passphrase: bytes = PASSPHRASE) -> None:
    """A new, empty vault (TEST_KDF)."""
    Vault.init(where, passphrase, kdf=TEST_KDF).close()


def open_rw(
    where: Where,
    passphrase: bytes = PASSPHRASE,
    *,
    warn: Callable[[str], None] | None = None,
    cache_dir: Path | None = None,
) -> Vault:
    return Vault.open(where, passphrase, write=True, warn=warn, cache_dir=cache_dir)


def open_ro(
    where: Where,
    passphrase: bytes = PASSPHRASE,
    *,
    warn: Callable[[str], None] | None = None,
    cache_dir: Path | None = None,
) -> Vault:
    return Vault.open(where, passphrase, write=False, warn=warn, cache_dir=cache_dir)


def memory_vault(passphrase: bytes = PASSPHRASE) -> tuple[MemoryBackend, Vault]:
    """A new in-memory vault opened for writing."""
    backend = MemoryBackend()
    create(backend, passphrase)
    return backend, open_rw(backend, passphrase)


def text_message(n: int, *, subject: str = "", body: bytes = b"", sender: str = "") -> bytes:
    """A small CRLF message, distinct for every ``n``."""
    subject = subject or f"message {n}"
    sender = sender or f"sender{n}@example.org"
    return (
        f"From: {sender}\r\nTo: rcpt@example.net\r\nSubject: {subject}\r\n"
        f"Message-ID: <{n}@example.org>\r\n\r\n".encode()
        + (body or f"Body of message {n}.\r\nSecond line.\r\n".encode())
    )


def wrap_b64(data: bytes, line_length: int = 76, eol: bytes = b"\r\n") -> bytes:
    s = base64.b64encode(data)
    return b"".join(s[i : i + line_length] + eol for i in range(0, len(s), line_length))


def attachment_message(
    attachment: bytes,
    *,
    n: int = 0,
    line_length: int = 76,
    eol: bytes = b"\r\n",
) -> bytes:
    """A multipart message carrying ``attachment`` base64-encoded."""
    parts = [
        b"From: a@example.org",
        b"To: b@example.org",
        f"Subject: attachment {n}".encode(),
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="XYZ"',
        b"",
        b"--XYZ",
        b"Content-Type: text/plain",
        b"",
        f"See attached ({n}).".encode(),
        b"--XYZ",
        b"Content-Type: application/octet-stream",
        b"Content-Transfer-Encoding: base64",
        b"",
    ]
    head = eol.join(parts) + eol
    return head + wrap_b64(attachment, line_length, eol) + b"--XYZ--" + eol


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def add_batch(
    vault: Vault,
    messages: Iterable[bytes],
    *,
    account: str = "acct",
    uidl_prefix: str = "u",
) -> dict[bytes, bytes]:
    """Add ``messages`` (pending) and return id -> bytes."""
    out: dict[bytes, bytes] = {}
    for i, data in enumerate(messages):
        res = vault.add_message(
            data,
            SourceInfo(account, "pop3", uidl=f"{uidl_prefix}{i}-{len(data)}"),
            MessageMeta(subject=f"{uidl_prefix}{i}"),
        )
        out[res.msg_id] = data
    return out


def build(
    where: Where,
    batches: Sequence[Sequence[bytes]],
    *,
    passphrase: bytes = PASSPHRASE,
    cache_dir: Path | None = None,
) -> list[dict[bytes, bytes]]:
    """Create a vault and commit one commit per batch; returns id -> bytes per batch."""
    create(where, passphrase)
    out: list[dict[bytes, bytes]] = []
    with open_rw(where, passphrase, cache_dir=cache_dir) as v:
        for i, batch in enumerate(batches):
            out.append(add_batch(v, batch, uidl_prefix=f"b{i}-"))
            assert v.commit() is not None
    return out


def standard_batches() -> list[list[bytes]]:
    """Three commits: a text + attachment batch, two texts, one empty-ish message."""
    att = random_bytes(24_000, seed=7)
    return [
        [text_message(1), attachment_message(att, n=1), text_message(2, body=b"x" * 5000)],
        [text_message(3), text_message(4, body=b"\n".join([b"line"] * 100))],
        [text_message(5, body=b"last\r\n")],
    ]


def listing(vault: Vault) -> list[tuple[object, ...]]:
    """A comparable snapshot of what the cache lists."""
    return [
        (r.id, r.size, r.subject, r.from_, tuple(r.accounts), tuple(r.uidls), r.first_archived)
        for r in vault.messages()
    ]


def message_ids(vault: Vault) -> set[bytes]:
    return {r.id for r in vault.messages()}


def _around_base64(
    prefix: bytes,
    suffix: bytes,
    seed: int,
    size: int,
    line_length: int,
    eol: bytes,
    damage: tuple[int, bytes] | None,
) -> bytes:
    block = wrap_b64(random_bytes(size, seed), line_length, eol)
    if damage is not None:
        at = damage[0] % len(block)
        block = block[:at] + damage[1] + block[at + len(damage[1]) :]
    return prefix + block + suffix


#: Arbitrary bytes around a base64 block of 12-20 KB (any common wrapping), sometimes
#: damaged anywhere: attachments that split, and near misses that must not.
bytes_around_base64 = st.builds(
    _around_base64,
    prefix=st.binary(max_size=300),
    suffix=st.binary(max_size=300),
    seed=st.integers(0, 2**32),
    size=st.integers(12_000, 20_000),
    line_length=st.sampled_from([60, 64, 72, 75, 76, 77]),
    eol=st.sampled_from([b"\r\n", b"\n"]),
    damage=st.one_of(
        st.none(), st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=3))
    ),
)


def deleted_uidls(vault: Vault, account: str) -> set[str]:
    """UIDLs of ``account`` that the vault records as deleted from the server."""
    rows = vault.cache.db.execute("SELECT uidl FROM deletions WHERE account=?", (account,))
    return {r[0] for r in rows}


def cache_accounts(vault: Vault) -> list[str]:
    """The accounts the vault has arrivals of."""
    return [r[0] for r in vault.cache.db.execute("SELECT DISTINCT account FROM sources")]


def cached_message_ids(vault: Vault) -> list[bytes]:
    """Every message id the cache knows, sorted."""
    return [r[0] for r in vault.cache.db.execute("SELECT id FROM messages ORDER BY id")]


def cache_file(v: Vault) -> Path:
    """The file of an open vault's index cache."""
    assert v.cache.path is not None
    return v.cache.path


def handed_over_run(
    data: bytes, length: int, eol: bytes, back: int, byte: int, cut: int
) -> bytes | None:
    """A base64 run of ``data`` as the splitter hands it over (lines of ``length``
    ending in ``eol``, a last line that may carry padding), its ``back``-th last
    character made ``byte`` and its last ``cut`` characters dropped (spoilt runs the
    decoder must refuse); None when that leaves no such run."""
    from popvault.vault.split import wrap_lines

    text = base64.b64encode(data)
    if back and back <= len(text):  # spoil one of the last characters
        i = len(text) - back
        text = text[:i] + bytes([byte]) + text[i + 1 :]
    if cut:  # drop characters: wrong length or padding
        text = text[:-cut]
    if not text or b"=" in text.rstrip(b"="):
        return None  # not a structure the splitter hands over
    return wrap_lines(text, length, eol)


def scan_message(*parts: bytes) -> bytes:
    """A 27 MB message: a text part, ``parts`` (whole MIME parts, header section and
    body, each ending in CRLF), and a 20 MB base64 PDF attachment "scan.pdf"."""
    blob = base64.encodebytes(bytes(range(256)) * 80_000).replace(b"\n", b"\r\n")
    return (
        b"From: Anna <anna@example.org>\r\nTo: b@example.org\r\nSubject: the contract\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the scan.\r\n"
        + b"".join(b"--XX\r\n" + p for p in parts)
        + b'--XX\r\nContent-Type: application/pdf; name="scan.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="scan.pdf"\r\n\r\n' + blob + b"--XX--\r\n"
    )
