"""Fingerprint normalisation, SPKI extraction and pin checks (no sockets)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from popvault.errors import TLSError, UsageError
from popvault.tls import (
    certificate_fingerprints,
    check_pin,
    make_context,
    normalize_fingerprint,
    spki_der,
)
from tests.unit.pop3.certs import make_cert


def colons(hexdigest: str) -> str:
    return ":".join(hexdigest[i : i + 2] for i in range(0, len(hexdigest), 2)).upper()


def test_normalize_fingerprint() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert normalize_fingerprint(colons(digest)) == digest
    assert normalize_fingerprint(digest.upper()) == digest
    for bad in ("", "abc", digest[:-1] + "g", digest + "00"):
        with pytest.raises(UsageError):
            normalize_fingerprint(bad)


def test_spki_matches_cryptography(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    assert spki_der(cert.der) == cert.spki
    cert_fp, spki_fp = certificate_fingerprints(cert.der)
    assert cert_fp == hashlib.sha256(cert.der).hexdigest()
    assert spki_fp == hashlib.sha256(cert.spki).hexdigest()


def test_spki_of_garbage_is_value_error() -> None:
    for junk in (b"", b"\x30", b"\x30\x82\xff\xff", b"\x04\x00", b"\x30\x03\x30\x01\x00"):
        with pytest.raises(ValueError):
            spki_der(junk)
    assert certificate_fingerprints(b"\x00")[1] is None


def test_check_pin(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    check_pin("h", cert.der, colons(hashlib.sha256(cert.der).hexdigest()))
    check_pin("h", cert.der, hashlib.sha256(cert.spki).hexdigest())
    with pytest.raises(TLSError, match="does not match") as info:
        check_pin("h", cert.der, hashlib.sha256(b"other").hexdigest())
    assert info.value.hint is not None and hashlib.sha256(cert.der).hexdigest() in info.value.hint
    with pytest.raises(TLSError):
        check_pin("h", None, hashlib.sha256(b"other").hexdigest())


def test_make_context(tmp_path: Path) -> None:
    assert make_context(None, None).check_hostname
    pinned = make_context(None, "00" * 32)
    assert not pinned.check_hostname
    with pytest.raises(TLSError, match="CA file"):
        make_context(str(tmp_path / "missing.pem"), None)
    with pytest.raises(UsageError):
        make_context(None, "nope")
