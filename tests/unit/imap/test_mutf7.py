"""Modified UTF-7 mailbox names (RFC 3501 section 5.1.3), both ways."""

from __future__ import annotations

import pytest

from popvault.errors import ProtocolError
from popvault.imap.mutf7 import decode_mutf7, encode_mutf7


def test_mutf7_vectors() -> None:
    vectors = {
        "~peter/mail/台北/日本語": "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
        "&": "&-",
        "Hi Mom -☺-!": "Hi Mom -&Jjo--!",
        "日本語": "&ZeVnLIqe-",
        "😀 x": "&2D3eAA- x",
        "INBOX": "INBOX",
    }
    for text, wire in vectors.items():
        assert encode_mutf7(text) == wire
        assert decode_mutf7(wire) == text
    for bad in ("&Jjo", "&A-", "é", "&!!-"):
        with pytest.raises(ProtocolError):
            decode_mutf7(bad)
