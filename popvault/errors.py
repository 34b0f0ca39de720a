"""The one exception tree of popvault; every class carries the exit code the CLI uses.

Exit codes are part of the contract with cron and systemd (docs/cli.md, "Exit codes")::

    PopvaultError (1)                      failure not covered below
    ├── UsageError (2)                     bad option, bad config file, bad URL
    ├── PartialFailure (3)                 run finished, some accounts/messages failed
    ├── VaultNotFound (10)                 no vault at that path / not a vault
    ├── VaultLocked (11)                   another live process holds the lock
    ├── WrongPassphrase (12)               no key slot opens with that passphrase
    ├── IntegrityError (20)                corruption or tampering detected
    ├── TemporaryFailure (75)              worth retrying later
    │   └── NetworkError (75)              connect/read timeout, connection dropped
    ├── AuthenticationFailed (77)          server refused our credentials ([AUTH])
    ├── ProtocolError (1)                  the peer broke the protocol (POP3, IMAP)
    ├── TLSError (1)                       certificate or TLS negotiation refused
    ├── PermanentServerError (1)           [SYS/PERM] and other permanent refusals
    └── MailboxFormatError (1)             unreadable/truncated mbox, Maildir, .eml

Every error has a one-line ``message`` and an optional ``hint`` (what to do next).
"""

from __future__ import annotations


class PopvaultError(Exception):
    """Base of every error popvault raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(PopvaultError):
    exit_code = 2


class PartialFailure(PopvaultError):
    exit_code = 3


class VaultNotFound(PopvaultError):
    exit_code = 10


class VaultLocked(PopvaultError):
    exit_code = 11


class WrongPassphrase(PopvaultError):
    exit_code = 12


class IntegrityError(PopvaultError):
    exit_code = 20


class TemporaryFailure(PopvaultError):
    exit_code = 75


class NetworkError(TemporaryFailure):
    exit_code = 75


class AuthenticationFailed(PopvaultError):
    exit_code = 77


class ProtocolError(PopvaultError):
    exit_code = 1


class TLSError(PopvaultError):
    exit_code = 1


class PermanentServerError(PopvaultError):
    exit_code = 1


class MailboxFormatError(PopvaultError):
    exit_code = 1


def shown_url(url: str) -> str:
    """``url`` as an error may show it: scheme and host only. A password (or a token)
    can hide in the userinfo, the path or the query, also of a URL too malformed to
    parse, so none of them is ever printed."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "…" if "@" in url or ":" in url else url
    for stop in "/?#":
        rest = rest.split(stop, 1)[0]
    host = rest.rsplit("@", 1)[1] if "@" in rest else rest
    return f"{scheme}://{'…@' if '@' in rest else ''}{host}"


__all__ = [
    "AuthenticationFailed",
    "IntegrityError",
    "MailboxFormatError",
    "NetworkError",
    "PartialFailure",
    "PermanentServerError",
    "PopvaultError",
    "ProtocolError",
    "TLSError",
    "TemporaryFailure",
    "UsageError",
    "VaultLocked",
    "VaultNotFound",
    "WrongPassphrase",
    "shown_url",
]
