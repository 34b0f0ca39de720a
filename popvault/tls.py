"""TLS for the POP3 and IMAP clients: the modes, verified contexts, pinning, the handshake.

A connection uses one of :data:`TLS_MODES`: ``implicit`` (TLS from the first byte),
``starttls`` (a plain connection upgraded by STLS or STARTTLS: required, never silently
skipped) or ``none`` (plaintext). By default the server certificate is verified against
the system trust store (or the ``tls_ca_file`` given) and the host name is checked
(guarantee 8). When a SHA-256 fingerprint is pinned, chain verification is replaced by
the pin, which must match either the DER certificate or its SubjectPublicKeyInfo (the pin
survives a renewal that keeps the key). :func:`wrap_client` runs the handshake, for
implicit TLS and after a STARTTLS command alike, and checks the pin; each protocol words
the failures as its users know them (:class:`HandshakeWording`). Certificates are parsed
by ``cryptography``, never by hand. ``ssl`` and ``cryptography`` are imported on first
use: the config check reads :data:`TLS_MODES` at every start and must stay cheap.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from popvault.errors import NetworkError, TLSError, UsageError

if TYPE_CHECKING:
    import socket
    import ssl

TlsMode = Literal["implicit", "starttls", "none"]
#: Every value of a ``tls`` setting, in the order the docs and error messages list them.
TLS_MODES: tuple[TlsMode, ...] = get_args(TlsMode)


def normalize_fingerprint(text: str) -> str:
    """Lower-case 64-hex-digit SHA-256 from ``text`` (colons/spaces allowed).

    Raises :class:`UsageError` if it is not a SHA-256 fingerprint.
    """
    digits = text.strip().lower().removeprefix("sha256:").replace(":", "").replace(" ", "")
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise UsageError(
            "tls_fingerprint must be a SHA-256 fingerprint: 64 hex digits, colons optional"
        )
    return digits


def spki_der(cert_der: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of an X.509 certificate; ValueError if malformed."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    try:
        cert = x509.load_der_x509_certificate(cert_der)
        return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a usable certificate: {exc}") from None


def certificate_fingerprints(cert_der: bytes) -> tuple[str, str | None]:
    """SHA-256 hex of the DER certificate and of its SPKI (None if unparsable)."""
    cert_fp = hashlib.sha256(cert_der).hexdigest()
    try:
        spki_fp: str | None = hashlib.sha256(spki_der(cert_der)).hexdigest()
    except ValueError:
        spki_fp = None
    return cert_fp, spki_fp


def check_pin(host: str, cert_der: bytes | None, pin: str) -> None:
    """Raise :class:`TLSError` unless the certificate or its SPKI hashes to ``pin``."""
    if not cert_der:
        raise TLSError(f"{host}: the server presented no certificate to check the pin against")
    want = normalize_fingerprint(pin)
    cert_fp, spki_fp = certificate_fingerprints(cert_der)
    if hmac.compare_digest(cert_fp, want):
        return
    if spki_fp is not None and hmac.compare_digest(spki_fp, want):
        return
    raise TLSError(
        f"{host}: server certificate does not match the pinned SHA-256 fingerprint",
        hint=f"the server presents certificate {cert_fp} (public key {spki_fp}); "
        "update tls_fingerprint only if you trust this change",
    )


def make_context(ca_file: str | None, fingerprint: str | None) -> ssl.SSLContext:
    """A client context: verified (system store or ``ca_file``) unless pinned.

    With a pin, chain and host name checks are off here and :func:`check_pin` must be
    called on the peer certificate right after the handshake (:func:`wrap_client` does).
    """
    import ssl

    try:
        if fingerprint is not None:
            normalize_fingerprint(fingerprint)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"cannot load TLS CA file {ca_file!r}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@dataclass(frozen=True)
class HandshakeWording:
    """How one protocol words a failed handshake (each keeps the texts its users know).

    Format strings over ``host``, ``reason`` (the certificate verification message, or
    the short reason of an SSL error) and ``error`` (the whole exception text).
    """

    untrusted: str
    untrusted_hint: str
    failed: str
    timed_out: str
    lost: str


def wrap_client(
    sock: socket.socket,
    host: str,
    ca_file: str | None,
    fingerprint: str | None,
    wording: HandshakeWording,
) -> ssl.SSLSocket:
    """Run the client handshake on ``sock`` and check the pin; return the TLS socket.

    ``sock`` is a fresh connection (implicit TLS) or one that a STLS/STARTTLS command
    has just upgraded; the handshake runs within its current timeout. The certificate is
    verified as :func:`make_context` says. Raises :class:`TLSError` (certificate not
    trusted, handshake failed, pin mismatch, CA file unreadable) or :class:`NetworkError`
    (timed out, connection lost); after a failed handshake ``sock`` is closed.
    """
    import ssl

    ctx = make_context(ca_file, fingerprint)
    try:
        tls_sock = ctx.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise TLSError(
            wording.untrusted.format(host=host, reason=exc.verify_message),
            hint=wording.untrusted_hint.format(host=host),
        ) from None
    except ssl.SSLError as exc:
        sock.close()
        raise TLSError(
            wording.failed.format(host=host, reason=exc.reason or exc, error=exc)
        ) from None
    except TimeoutError as exc:
        sock.close()
        raise NetworkError(wording.timed_out.format(host=host, error=exc)) from None
    except OSError as exc:
        sock.close()
        raise NetworkError(wording.lost.format(host=host, error=exc)) from None
    if fingerprint is not None:
        try:
            check_pin(host, tls_sock.getpeercert(binary_form=True), fingerprint)
        except BaseException:
            tls_sock.close()
            raise
    return tls_sock


__all__ = [
    "TLS_MODES",
    "HandshakeWording",
    "TlsMode",
    "certificate_fingerprints",
    "check_pin",
    "make_context",
    "normalize_fingerprint",
    "spki_der",
    "wrap_client",
]
