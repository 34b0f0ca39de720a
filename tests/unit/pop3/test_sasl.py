"""SASL message encoding (RFC 4616, 7628, XOAUTH2) and the RFC 5034 255-octet rule."""

from __future__ import annotations

import base64

import pytest

from popvault.errors import ProtocolError
from popvault.pop3 import sasl


def test_plain_message() -> None:
    assert sasl.Plain("alice", "s3cret").initial() == b"\0alice\0s3cret"
    assert sasl.Plain("jörg", "pässword").initial() == "\0jörg\0pässword".encode()


def test_login_steps() -> None:
    mech = sasl.Login("alice", "s3cret")
    assert mech.initial() is None
    assert mech.step(b"Username:") == b"alice"
    assert mech.step(b"Password:") == b"s3cret"
    with pytest.raises(ProtocolError):
        mech.step(b"again?")


def test_xoauth2_message_and_error_ack() -> None:
    mech = sasl.XOAuth2("a@example.com", "tok")
    assert mech.initial() == b"user=a@example.com\x01auth=Bearer tok\x01\x01"
    assert mech.step(b'{"status":"401"}') == b""


def test_oauthbearer_message_escapes_user_and_acks_error() -> None:
    mech = sasl.OAuthBearer("a,b=c", "tok")
    assert mech.initial() == b"n,a=a=2Cb=3Dc,\x01auth=Bearer tok\x01\x01"
    assert mech.step(b'{"status":"invalid_token"}') == b"\x01"


def test_auth_command_with_initial_response() -> None:
    line, inline = sasl.auth_command(sasl.Plain("alice", "pw"))
    assert inline
    assert line == b"AUTH PLAIN " + base64.b64encode(b"\0alice\0pw") + b"\r\n"


def test_auth_command_too_long_uses_two_steps() -> None:
    line, inline = sasl.auth_command(sasl.XOAuth2("alice", "t" * 300))
    assert not inline and line == b"AUTH XOAUTH2\r\n"


def test_auth_command_boundary_is_255_octets_with_crlf() -> None:
    # "AUTH XOAUTH2 " + base64 + CRLF: 15 + 4*ceil(n/3) octets; 255 is reachable
    seen = set()
    for token_len in range(150, 200):
        mech = sasl.XOAuth2("u", "t" * token_len)
        first = mech.initial()
        size = len(b"AUTH XOAUTH2 \r\n") + len(base64.b64encode(first))
        line, inline = sasl.auth_command(mech)
        assert inline == (size <= 255)
        assert len(line) <= 255
        seen.add((size, inline))
    assert (255, True) in seen and (259, False) in seen


def test_login_has_no_initial_response() -> None:
    assert sasl.auth_command(sasl.Login("a", "b")) == (b"AUTH LOGIN\r\n", False)


def test_encode_empty_is_equals_sign() -> None:
    assert sasl.encode(b"") == b"="
    assert sasl.encode(b"x") == b"eA=="


def test_decode_challenge() -> None:
    assert sasl.decode_challenge("VXNlcm5hbWU6") == b"Username:"
    assert sasl.decode_challenge("") == b""
    with pytest.raises(ProtocolError):
        sasl.decode_challenge("not base64!")


def test_repr_hides_secret() -> None:
    for cls in sasl.MECHANISMS.values():
        assert "hunter2" not in repr(cls("alice", "hunter2"))
