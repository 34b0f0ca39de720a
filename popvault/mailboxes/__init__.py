"""Local mailboxes: readers and writers for mbox, Maildir and .eml files.

Readers yield :class:`SourceMessage` records one at a time; writers take exact bytes.
Each module's docstring lists the transforms its format needs (only mbox has any). This
package does not import the vault, the POP3 or the IMAP client; the app layer joins them.
"""

from __future__ import annotations

from popvault.mailboxes.eml import EmlWriter, read_eml
from popvault.mailboxes.maildir import MaildirWriter, read_maildir
from popvault.mailboxes.mbox import MboxWriter, read_mbox
from popvault.mailboxes.message import SourceMessage

__all__ = [
    "EmlWriter",
    "MaildirWriter",
    "MboxWriter",
    "SourceMessage",
    "read_eml",
    "read_maildir",
    "read_mbox",
]
