"""POP3-specific refinements of the popvault exception tree (:mod:`popvault.errors`).

Each class here subclasses one class of the shared tree, so callers that only know the
shared tree (and its exit codes) keep working, while callers that care can read the RFC
2449 / RFC 3206 response code the server sent (``response_code``, e.g. ``"IN-USE"``,
without brackets, or ``None``). :func:`error_for_reply` is the one place that maps a
``-ERR`` reply to a class: [IN-USE], [LOGIN-DELAY] and [SYS/TEMP] are temporary (exit
75), [AUTH] is an authentication refusal (exit 77), [SYS/PERM] is permanent. Messages
name the host, the command (never its secret arguments) and the server's reply text.
"""

from __future__ import annotations

import re

from popvault.errors import (
    AuthenticationFailed,
    NetworkError,
    PermanentServerError,
    PopvaultError,
    ProtocolError,
    TemporaryFailure,
)
from popvault.tls import HandshakeWording

_CODE_RE = re.compile(r"^\s*\[([^\]\s]{1,64})[^\]]*\]")

TEMPORARY_CODES = frozenset({"IN-USE", "LOGIN-DELAY", "SYS/TEMP"})
AUTH_CODES = frozenset({"AUTH"})
PERMANENT_CODES = frozenset({"SYS/PERM"})


class Pop3TemporaryFailure(TemporaryFailure):
    """The server refused for now ([IN-USE], [LOGIN-DELAY], [SYS/TEMP]); retry later."""

    def __init__(
        self, message: str, *, hint: str | None = None, response_code: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.response_code = response_code


class Pop3AuthenticationFailed(AuthenticationFailed):
    """The server refused our credentials ([AUTH] or a failed login without a code)."""

    def __init__(
        self, message: str, *, hint: str | None = None, response_code: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.response_code = response_code


class Pop3CommandFailed(PermanentServerError):
    """The server answered ``-ERR`` to a command, permanently ([SYS/PERM] or no code)."""

    def __init__(
        self, message: str, *, hint: str | None = None, response_code: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.response_code = response_code


class UidlNotSupported(Pop3CommandFailed):
    """The server has no UIDL command, so messages cannot be tracked across sessions."""


class MissingTerminator(ProtocolError):
    """A multi-line response ended (connection closed at a line boundary) without the
    terminating ``.CRLF``; the data received so far must not be trusted as complete."""


def response_code(text: str) -> str | None:
    """Return the RFC 2449 response code at the start of ``-ERR`` text, or None.

    ``"[SYS/TEMP] try later"`` gives ``"SYS/TEMP"``; hierarchical codes keep their
    slashes; the comparison callers make is case-insensitive, so the code is upper-cased.
    """
    m = _CODE_RE.match(text)
    return m.group(1).upper() if m else None


def error_for_reply(host: str, command: str, text: str, *, login: bool = False) -> PopvaultError:
    """Build the exception for a ``-ERR text`` reply to ``command`` on ``host``.

    ``command`` must already be redacted (no passwords). With ``login=True`` a reply
    without a response code means the credentials were refused (exit 77).
    """
    code = response_code(text)
    message = f"{host}: {command} failed: -ERR {text}".rstrip()
    if code in TEMPORARY_CODES:
        hint = "the server asked to retry later; popvault exits 75 so cron/systemd can retry"
        return Pop3TemporaryFailure(message, hint=hint, response_code=code)
    # RFC 2449: an unknown response code is treated as if there were none.
    known = code if code in TEMPORARY_CODES | AUTH_CODES | PERMANENT_CODES else None
    if code in AUTH_CODES or (login and known is None):
        hint = "check the user name and password (or token) for this account"
        return Pop3AuthenticationFailed(message, hint=hint, response_code=code)
    return Pop3CommandFailed(message, response_code=code)


__all__ = [
    "TLS_WORDING",
    "MissingTerminator",
    "NetworkError",
    "Pop3AuthenticationFailed",
    "Pop3CommandFailed",
    "Pop3TemporaryFailure",
    "UidlNotSupported",
    "error_for_reply",
    "response_code",
]


#: How TLS failures of a POP3 server are worded (popvault.tls.wrap_client).
TLS_WORDING = HandshakeWording(
    untrusted="{host}: server certificate refused: {reason}",
    untrusted_hint="if {host} has a private CA or a self-signed certificate, trust the CA"
    " with tls_ca_file or pin the certificate with tls_fingerprint in the"
    " account's config section (options --tls-ca-file / --tls-fingerprint of"
    " 'backup --url', --pop3-tls-ca-file / --pop3-tls-fingerprint of 'migrate')",
    failed="{host}: TLS handshake failed: {reason}",
    timed_out="{host}: TLS handshake timed out",
    lost="{host}: connection lost during TLS handshake: {error}",
)
