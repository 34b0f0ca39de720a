"""A prepared message is filed exactly as the message itself would be (format §7).

``prepare_message`` plus ``Vault.add_prepared`` must give the same message id, the same
pieces and the same blob ids as ``Vault.add_message`` of the same bytes: deduplication
across the two paths depends on it, and the bytes read back must be the original.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from popvault.vault.ids import Base64Piece, RawPiece, encoded_length, prepare_message
from popvault.vault.records import MsgRecord
from popvault.vault.split import split_message
from popvault.vault.vault import MessageMeta, SourceInfo, Vault
from tests.support.generate import adversarial
from tests.support.vaults import (
    attachment_message,
    bytes_around_base64,
    memory_vault,
    random_bytes,
    text_message,
    wrap_b64,
)


def _twins() -> tuple[Vault, Vault]:
    """Two empty vaults with the same MAC key (ids comparable across them)."""
    _b1, one = memory_vault()
    b2, two = memory_vault()
    two.close()
    return one, Vault.open(b2, keys=one.keys, write=True)


def _msg_record(v: Vault) -> dict[str, Any]:
    return next(r.to_json() for r in v._writer.records if isinstance(r, MsgRecord))


def assert_same_filing(data: bytes) -> None:
    direct, prepared = _twins()
    with direct, prepared:
        a = direct.add_message(data, SourceInfo("acct", "pop3", uidl="1"), MessageMeta(subject="x"))
        p = prepare_message(prepared.keys.mac, data)
        b = prepared.add_prepared(
            data, p, SourceInfo("acct", "pop3", uidl="1"), MessageMeta(subject="x")
        )
        assert (a.msg_id, a.new, a.size) == (b.msg_id, b.new, b.size) == (p.msg_id, True, len(data))
        assert _msg_record(direct) == _msg_record(prepared)
        prepared.commit()
        assert prepared.read_message(b.msg_id, use_cache=False) == data
        prepared.verify_messages([b.msg_id])


MESSAGES = {
    "text": text_message(1),
    "empty": b"",
    "no header end": b"Subject: x\r\nno blank line",
    "lf only": text_message(2).replace(b"\r\n", b"\n"),
    "attachment crlf": attachment_message(random_bytes(200_000, 1)),
    "attachment lf 64": attachment_message(random_bytes(50_000, 2), line_length=64, eol=b"\n"),
    "two attachments": attachment_message(random_bytes(30_000, 3))
    + wrap_b64(random_bytes(40_000, 4), 72),
    "huge attachment": attachment_message(random_bytes(3_000_000, 5)),  # several chunks
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_prepared_filing_equals_direct(name: str) -> None:
    assert_same_filing(MESSAGES[name])


@pytest.mark.parametrize("name", [n for n, _ in adversarial()])
def test_prepared_filing_of_adversarial_messages(name: str) -> None:
    assert_same_filing(dict(adversarial())[name])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bytes_around_base64)
def test_prepared_filing_around_base64(data: bytes) -> None:
    assert_same_filing(data)


def test_pieces_cover_the_message_in_order() -> None:
    data = MESSAGES["two attachments"]
    p = prepare_message(b"k" * 32, data)
    pos = 0
    for piece, seg in zip(p.pieces, split_message(data), strict=True):
        if isinstance(piece, Base64Piece):
            assert b"".join(c for _, c in piece.chunks) == seg.data
            pos += encoded_length(len(seg.data), piece.line_length, piece.eol)
        else:
            assert isinstance(piece, RawPiece)
            assert (piece.start, data[piece.start : piece.end]) == (pos, seg.data)
            pos = piece.end
    assert pos == len(data)


def test_duplicate_of_a_prepared_message_is_not_new() -> None:
    _backend, v = memory_vault()
    with v:
        data = MESSAGES["attachment crlf"]
        first = v.add_prepared(data, prepare_message(v.keys.mac, data), SourceInfo("a", "x"))
        again = v.add_message(data, SourceInfo("b", "y"))
        assert first.new and not again.new and first.msg_id == again.msg_id


def test_prepared_for_other_bytes_is_refused() -> None:
    _backend, v = memory_vault()
    with v, pytest.raises(ValueError, match="does not match"):
        v.add_prepared(b"abc", prepare_message(v.keys.mac, b"abcd"), SourceInfo("a", "x"))
