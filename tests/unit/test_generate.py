"""tests/support/generate.py: determinism, sizes, structure, the named adversarial cases."""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
import hashlib
import itertools
import re
import statistics

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.generate import (
    ADVERSARIAL_NAMES,
    adversarial,
    big_message,
    realistic,
    redundant,
    vocabulary,
)


def _parse(message: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def test_realistic_is_deterministic_per_seed() -> None:
    assert list(realistic(40, seed=7)) == list(realistic(40, seed=7))
    assert list(realistic(40, seed=7)) != list(realistic(40, seed=8))


def test_realistic_is_a_stable_stream() -> None:
    # The first messages do not depend on how many are asked for.
    assert list(realistic(5, seed=3)) == list(itertools.islice(realistic(50, seed=3), 5))


def test_vocabulary_is_fixed_and_large() -> None:
    words = vocabulary()
    assert words == vocabulary()
    assert len(words) == len(set(words)) >= 3000


def test_realistic_sizes_are_long_tailed() -> None:
    sizes = [len(m) for m in realistic(400, seed=11)]
    assert 4 * 1024 <= statistics.median(sizes) <= 20 * 1024
    assert sum(2 * 1024 <= s <= 20 * 1024 for s in sizes) >= len(sizes) * 0.6
    assert sum(s >= 100 * 1024 for s in sizes) >= 4
    assert max(sizes) <= 6 * 1024 * 1024
    assert 20 * 1024 <= statistics.mean(sizes) <= 120 * 1024


def test_avg_size_moves_the_mean() -> None:
    small = statistics.mean(len(m) for m in realistic(150, seed=5, avg_size=10 * 1024))
    large = statistics.mean(len(m) for m in realistic(150, seed=5, avg_size=200 * 1024))
    assert small < large


def test_realistic_messages_parse_cleanly_with_crlf() -> None:
    for message in realistic(200, seed=1):
        assert message.endswith(b"\r\n")
        assert b"\n" not in message.replace(b"\r\n", b"")
        assert b"\r" not in message.replace(b"\r\n", b"")
        assert max(len(line) for line in message.split(b"\r\n")) <= 998
        parsed = _parse(message)
        assert not parsed.defects
        assert parsed["Message-ID"] and parsed["Date"] and parsed["From"]
        for part in parsed.walk():
            assert not part.defects
            if not part.is_multipart():
                assert isinstance(part, email.message.EmailMessage)
                part.get_content()  # decodes every charset and transfer encoding


def test_realistic_covers_the_shapes_of_real_mail() -> None:
    messages = list(realistic(300, seed=2))
    joined = b"\n".join(messages)
    content_types = {part.get_content_type() for m in messages for part in _parse(m).walk()}
    assert {
        "text/plain",
        "text/html",
        "multipart/alternative",
        "multipart/mixed",
        "image/jpeg",
        "application/pdf",
    } <= content_types
    for needle in (
        b"Content-Transfer-Encoding: quoted-printable",
        b"Content-Transfer-Encoding: base64",
        b"=?utf-8?b?",
        b"=?utf-8?q?",
        b"=?iso-8859-1?q?",
        b"In-Reply-To: <",
        b"References: <",
        b"\r\n> ",
        b"List-Id: ",
        b"mailing list\r\n",
        b"Received: from ",
    ):
        assert needle in joined, needle
    assert re.search(rb"\r\n[A-Za-z0-9+/]{76}\r\n", joined)


def test_realistic_replies_reference_earlier_messages() -> None:
    messages = [_parse(m) for m in realistic(150, seed=9)]
    ids = {str(m["Message-ID"]) for m in messages}
    replies = [m for m in messages if m["In-Reply-To"]]
    assert len(replies) >= 20
    assert all(str(m["In-Reply-To"]) in ids for m in replies)


def _attachment_digests(message: bytes) -> set[str]:
    out = set()
    for part in _parse(message).walk():
        if part.get_content_disposition() == "attachment":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out.add(hashlib.sha256(payload).hexdigest())
    return out


def test_redundant_has_duplicates_reroutes_and_shared_attachments() -> None:
    messages = list(redundant(120, seed=4))
    assert messages == list(redundant(120, seed=4))
    assert len(set(messages)) < len(messages)  # exact duplicates

    bodies: dict[bytes, set[bytes]] = {}
    for m in messages:
        head, _sep, body = m.partition(b"\r\n\r\n")
        bodies.setdefault(body, set()).add(head)
    assert any(len(heads) > 1 for heads in bodies.values())  # same body, other route

    counts: dict[str, int] = {}
    for m in set(messages):
        for digest in _attachment_digests(m):
            counts[digest] = counts.get(digest, 0) + 1
    assert max(counts.values()) >= 5  # one attachment in many distinct messages

    widths = {
        len(line)
        for m in messages
        for line in m.split(b"\r\n")
        if re.fullmatch(rb"[A-Za-z0-9+/]{60,76}", line)
    }
    assert len(widths & {60, 64, 72, 76}) >= 2  # the same bytes, wrapped differently


def test_adversarial_cases_are_present_and_named() -> None:
    cases = adversarial()
    assert [name for name, _ in cases] == list(ADVERSARIAL_NAMES)
    assert cases == adversarial()
    by = dict(cases)
    lines = {name: data.split(b"\r\n") for name, data in cases}

    assert max(len(line) for line in lines["long-line-over-2048"]) > 2048
    assert max(len(line) for line in lines["long-line-over-1mb"]) > 1024 * 1024
    assert b"\r\nFrom the start\r\n" in by["from-line"]
    assert b"\r\n>From the start\r\n" in by["quoted-from-line"]
    assert b"\r\n.hidden\r\n" in by["dot-lines"] and b"\r\n..two dots\r\n" in by["dot-lines"]
    assert b"\r\n.\r\n" in by["lone-dot-line"] and not by["lone-dot-line"].endswith(b"\r\n.\r\n")
    assert by["lone-dot-last-line"].endswith(b"\r\n.\r\n")
    assert b"\r" not in by["bare-lf"] and b"\n" in by["bare-lf"]
    assert re.search(rb"\r(?!\n)", by["lone-cr"])
    assert b"\x00" in by["nul-byte"]
    garbage = by["8bit-garbage"]
    assert any(b >= 0x80 for b in garbage)
    try:
        garbage.decode("utf-8")
        raise AssertionError("8bit-garbage decodes as UTF-8")
    except UnicodeDecodeError:
        pass
    assert b"message-id" not in by["no-message-id"].lower()
    a, b = by["duplicate-message-id-a"], by["duplicate-message-id-b"]
    assert a != b
    assert _parse(a)["Message-ID"] == _parse(b)["Message-ID"]
    assert b"\r\n\r\n" not in by["headers-only"] and by["headers-only"].endswith(b"\r\n")
    assert not by["no-final-newline"].endswith(b"\n")
    assert by["empty"] == b""
    assert not re.match(rb"[A-Za-z-]+:", by["not-rfc5322"])
    header = by["huge-header"].partition(b"\r\n\r\n")[0]
    assert len(header) > 200 * 1024
    mixed = by["mixed-line-endings"]
    assert b"\r\n" in mixed and re.search(rb"(?<!\r)\n", mixed)


def test_big_message_streams_exact_size_in_bounded_chunks() -> None:
    size = 20 * 1024 * 1024 + 13
    chunk_sizes = []
    digest = hashlib.sha256()
    for chunk in big_message(size, chunk_size=256 * 1024):
        chunk_sizes.append(len(chunk))
        digest.update(chunk)
    assert sum(chunk_sizes) == size
    assert max(chunk_sizes) <= 256 * 1024 + 1024
    again = hashlib.sha256()
    for chunk in big_message(size, chunk_size=256 * 1024):
        again.update(chunk)
    assert again.digest() == digest.digest()


@settings(max_examples=40, deadline=None)
@given(size=st.integers(min_value=2048, max_value=300_000), seed=st.integers(0, 5))
def test_big_message_is_valid_mime_of_exact_size(size: int, seed: int) -> None:
    message = b"".join(big_message(size, seed=seed, chunk_size=4096))
    assert len(message) == size
    assert message.endswith(b"\r\n") and b"\n" not in message.replace(b"\r\n", b"")
    parsed = _parse(message)
    assert not parsed.defects
    attachment = next(p for p in parsed.walk() if p.get_filename() == "big.bin")
    encoded = attachment.get_payload()
    assert isinstance(encoded, str)
    assert base64.b64decode("".join(encoded.split()), validate=True)
