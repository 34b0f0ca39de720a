"""imaps:// and imap:// targets taken apart; settings never show the password."""

from __future__ import annotations

import pytest

from popvault.errors import UsageError
from popvault.imap import ImapTarget, parse_imap_url


def test_parse_imap_url() -> None:
    assert parse_imap_url("imaps://bob%40example.org@mail.example.org/Archive/2024") == ImapTarget(
        "mail.example.org", 993, "implicit", "bob@example.org", "Archive/2024"
    )
    assert parse_imap_url("imap://bob@h:1143") == ImapTarget("h", 1143, "starttls", "bob", "INBOX")
    assert parse_imap_url("imap://bob@127.0.0.1/X?tls=none").tls == "none"
    assert parse_imap_url("imaps://bob@h/Entw%C3%BCrfe").folder == "Entwürfe"
    for bad in (
        "pop3://a@h/",
        "imaps://h/",
        "imaps://a:secret@h/",
        "imaps://a@h/?tls=none",
        "imaps://a@/",
    ):
        with pytest.raises(UsageError) as info:
            parse_imap_url(bad)
        assert "secret" not in str(info.value)


def test_settings_repr_hides_password() -> None:
    s = parse_imap_url("imaps://bob@h/").settings("hunter2")
    assert s.password == "hunter2" and "hunter2" not in repr(s)
