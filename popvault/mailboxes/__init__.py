"""Local and remote mailboxes: readers and writers for mbox, Maildir, .eml and IMAP.

Readers yield :class:`SourceMessage` records one at a time; writers take exact bytes.
Each module's docstring lists the transforms its format needs (only mbox has any). This
package does not import the vault or the POP3 client; the app layer joins them.
"""

from __future__ import annotations

from popvault.mailboxes.eml import EmlWriter, read_eml
from popvault.mailboxes.imap import (
    ImapClient,
    ImapSettings,
    ImapTarget,
    MessageRejected,
    decode_mutf7,
    encode_mutf7,
    parse_imap_url,
)
from popvault.mailboxes.maildir import MaildirWriter, read_maildir
from popvault.mailboxes.mbox import MboxWriter, read_mbox
from popvault.mailboxes.message import SourceMessage

__all__ = [
    "EmlWriter",
    "ImapClient",
    "ImapSettings",
    "ImapTarget",
    "MaildirWriter",
    "MboxWriter",
    "MessageRejected",
    "SourceMessage",
    "decode_mutf7",
    "encode_mutf7",
    "parse_imap_url",
    "read_eml",
    "read_maildir",
    "read_mbox",
]
