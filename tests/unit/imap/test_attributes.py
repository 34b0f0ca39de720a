"""INTERNALDATE both ways and Maildir flags as IMAP flags."""

from __future__ import annotations

import pytest

from popvault.errors import ProtocolError
from popvault.imap.attributes import format_internaldate, maildir_flags_to_imap, parse_internaldate


def test_internaldate_and_flags() -> None:
    assert format_internaldate(0) == '" 1-Jan-1970 00:00:00 +0000"'
    assert parse_internaldate("17-Jul-1996 02:44:25 -0700") == 837596665.0
    assert parse_internaldate(" 1-Jan-1970 00:00:00 +0000") == 0.0
    with pytest.raises(ProtocolError):
        parse_internaldate("yesterday")
    assert maildir_flags_to_imap("SRFxP") == ["\\Flagged", "$Forwarded", "\\Answered", "\\Seen"]
    assert maildir_flags_to_imap(None) == []
