"""The IMAP client restore and migrate append with (RFC 3501), beside :mod:`popvault.pop3`.

``settings`` takes ``imaps://`` / ``imap://`` targets apart and holds what a connection
needs; ``client`` is :class:`ImapClient` (log in, folders, pipelined and MULTIAPPEND
APPENDs, UID FETCH) on the wire of ``connection`` (tags, literals, LITERAL+), which
writes arguments as ``command`` says and reads responses as ``response`` says; ``mutf7``
encodes folder names and ``attributes`` the INTERNALDATE and flags a restored message
keeps. TLS comes from :mod:`popvault.tls`, shared with POP3. This package imports
neither the vault, the POP3 client nor the mailbox formats; the app layer joins them.
"""

from __future__ import annotations

from popvault.imap.attributes import maildir_flags_to_imap
from popvault.imap.client import AppendItem, AppendOutcome, ImapClient, MessageRejected
from popvault.imap.settings import ImapSettings, ImapTarget, parse_imap_url

__all__ = [
    "AppendItem",
    "AppendOutcome",
    "ImapClient",
    "ImapSettings",
    "ImapTarget",
    "MessageRejected",
    "maildir_flags_to_imap",
    "parse_imap_url",
]
