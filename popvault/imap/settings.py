"""Where an IMAP restore goes: :class:`ImapSettings`, and the ``imaps://`` / ``imap://`` URL.

:func:`parse_imap_url` reads the target URLs users write on the command line,
``imaps://USER@HOST[:PORT]/FOLDER`` (implicit TLS, port 993) and
``imap://USER@HOST[:PORT]/FOLDER[?tls=none]`` (port 143, STARTTLS required unless
``tls=none``), into an :class:`ImapTarget` that holds no secret; its
:meth:`ImapTarget.settings` adds the password and the TLS options that never go into a
URL. A password in the URL is refused (it would be visible in the process list), and
the repr of :class:`ImapSettings` never shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from popvault.errors import UsageError, shown_url
from popvault.tls import TlsMode


@dataclass(frozen=True)
class ImapSettings:
    """How to reach and log in to an IMAP server.

    ``tls``: ``"implicit"`` (port 993), ``"starttls"`` (required, never silently
    skipped) or ``"none"`` (plaintext; meant for loopback tests). ``tls_ca_file`` adds
    trust anchors for chain verification. ``tls_fingerprint`` (SHA-256 hex of the
    server certificate's DER, or of its SubjectPublicKeyInfo; ``:`` separators
    allowed) replaces chain and host name verification, and must match.
    """

    host: str
    port: int
    tls: TlsMode
    user: str
    password: str = field(repr=False)
    tls_ca_file: str | None = None
    tls_fingerprint: str | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class ImapTarget:
    """An ``imaps://`` / ``imap://`` URL taken apart: where to restore, without secrets."""

    host: str
    port: int
    tls: TlsMode
    user: str
    folder: str

    def settings(
        self,
        password: str,
        *,
        tls_ca_file: str | None = None,
        tls_fingerprint: str | None = None,
        timeout: float = 60.0,
    ) -> ImapSettings:
        """Combine the URL with the secrets and TLS options that never go into a URL."""
        return ImapSettings(
            host=self.host,
            port=self.port,
            tls=self.tls,
            user=self.user,
            password=password,
            tls_ca_file=tls_ca_file,
            tls_fingerprint=tls_fingerprint,
            timeout=timeout,
        )


def parse_imap_url(url: str) -> ImapTarget:
    """Parse ``imaps://USER@HOST[:PORT]/FOLDER`` or ``imap://USER@HOST[:PORT]/FOLDER[?tls=none]``.

    ``imaps`` means implicit TLS (default port 993); ``imap`` means STARTTLS, required
    (default port 143), unless ``?tls=none`` asks for plaintext. USER and FOLDER are
    percent-decoded (write ``@`` in a user name as ``%40``); an empty FOLDER is
    ``INBOX``. Raises :class:`UsageError` for anything else, including a password in
    the URL (it would be visible in the process list).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"invalid IMAP URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("imap", "imaps"):
        raise UsageError(
            "an IMAP URL must start with imaps:// or imap://",
            hint="example: imaps://user%40example.org@imap.example.org/Archive",
        )
    if parts.password is not None:
        raise UsageError(
            "do not put the password in the IMAP URL",
            hint="use the password file or prompt instead",
        )
    if not parts.hostname:
        raise UsageError("the IMAP URL has no host name")
    if not parts.username:
        raise UsageError("the IMAP URL has no user name (imaps://USER@HOST/FOLDER)")
    tls: TlsMode = "implicit" if scheme == "imaps" else "starttls"
    query = parse_qs(parts.query, keep_blank_values=True)
    for key, values in query.items():
        if key == "tls" and scheme == "imap" and values == ["none"]:
            tls = "none"
        else:
            raise UsageError(f"unsupported IMAP URL option {key!r} in {shown_url(url)!r}")
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    return ImapTarget(
        host=parts.hostname,
        port=port or (993 if scheme == "imaps" else 143),
        tls=tls,
        user=unquote(parts.username),
        folder=folder,
    )


__all__ = ["ImapSettings", "ImapTarget", "parse_imap_url"]
