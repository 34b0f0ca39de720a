"""Byte-exact round trips (DESIGN guarantee 1) and deduplication (guarantee 5).

Every message that goes into a vault must come back octet for octet: adversarial
line structure, any bytes, base64 attachments that are split out and re-encoded, and
base64 that is *not* canonical and so must stay raw. Deduplication is checked through
``Vault.stats()``; the streaming path through a small INLINE_LIMIT.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from popvault.errors import UsageError
from popvault.vault import writer as writer_mod
from popvault.vault.backend import MemoryBackend
from popvault.vault.split import ATT_CHUNK, CHUNK
from popvault.vault.vault import MessageMeta, SourceInfo, Vault
from tests.support.vaults import (
    add_batch,
    attachment_message,
    bytes_around_base64,
    create,
    memory_vault,
    message_ids,
    open_ro,
    open_rw,
    random_bytes,
    text_message,
    wrap_b64,
)

HDR = b"From: a@example.org\r\nSubject: adversarial\r\n\r\n"


def _letters(n: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    return bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz ABC0123") for _ in range(n))


def _non_canonical_tail(att: bytes, line_length: int, eol: bytes) -> bytes:
    """Wrapped base64 of ``att`` whose last quantum has non-zero unused bits."""
    assert len(att) % 3 == 1  # one byte in the last quantum: "xy==" with 4 spare bits
    enc = wrap_b64(att, line_length, eol)
    i = enc.rindex(b"==") - 1
    spare = enc[i : i + 1]
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    bad = alphabet[alphabet.index(spare) | 1 : (alphabet.index(spare) | 1) + 1]
    assert bad != spare
    out = enc[:i] + bad + enc[i + 1 :]
    flat = out.replace(eol, b"")
    assert base64.b64encode(base64.b64decode(flat)) != flat  # really not canonical
    return out


def _cases() -> dict[str, bytes]:
    att = random_bytes(40_000, seed=1)
    att1 = random_bytes(30_001, seed=2)  # len % 3 == 1
    c: dict[str, bytes] = {
        "empty": b"",
        "crlf-only": b"\r\n",
        "lf-only": b"\n",
        "line-3k": HDR + b"a" * 3000 + b"\r\n",
        "line-over-1mb": HDR + _letters(1_300_000, 3) + b"\r\nafter\r\n",
        "line-exactly-chunk": HDR + b"z" * CHUNK + b"\r\n",
        "from-lines": HDR + b"From me\r\n>From you\r\n>>From them\r\nFrom \r\nFrom\r\n",
        "dots": HDR + b".\r\n..\r\n.hidden\r\n...\r\n. \r\nend\r\n.\r\n",
        "lone-dot-last": HDR + b"text\r\n.",
        "bare-lf": b"From: a\nSubject: b\n\nline one\nline two\n",
        "mixed-eol": b"From: a\r\nSubject: b\n\r\nx\ry\r\nz\n\n\r\r\n",
        "lone-cr": HDR + b"a\rb\rc\r",
        "nul": HDR + b"\x00" * 10 + b"a\x00b\r\n\x00",
        "8bit": HDR + bytes(range(256)) * 20,
        "no-message-id": b"From: a@example.org\r\nSubject: no id\r\n\r\nbody\r\n",
        "headers-only": b"From: a@example.org\r\nSubject: only headers\r\n",
        "headers-only-blank": b"From: a@example.org\r\nSubject: only headers\r\n\r\n",
        "no-final-newline": HDR + b"last line without newline",
        "no-header-separator-long": b"X-Long: " + b"h" * 70_000 + b"\r\n",
        "blank-first": b"\r\nbody right away\r\n",
        "att-76-crlf": attachment_message(att, line_length=76, eol=b"\r\n"),
        "att-64-crlf": attachment_message(att, line_length=64, eol=b"\r\n"),
        "att-76-lf": attachment_message(att, line_length=76, eol=b"\n"),
        "att-64-lf": attachment_message(att, line_length=64, eol=b"\n"),
        "att-72-padded": attachment_message(att1, line_length=72),
        "att-multi-chunk": attachment_message(random_bytes(ATT_CHUNK * 2 + 5, seed=4)),
        "att-non-canonical": HDR + _non_canonical_tail(att1, 76, b"\r\n") + b"--end\r\n",
        "att-non-canonical-lf": HDR + _non_canonical_tail(att1, 64, b"\n"),
        "att-odd-last-line": HDR + wrap_b64(att, 76) + b"QUJD\r\nQQ\r\n",
        "att-garbage-after": HDR + wrap_b64(att, 76) + b"!!not base64!!\r\n",
        "att-no-final-eol": HDR + wrap_b64(att, 76).rstrip(b"\r\n"),
        "att-padding-inside": HDR
        + wrap_b64(att1[:20_000], 76)[:-2]
        + b"==\r\n"
        + wrap_b64(att1, 76),
        "att-two-blocks": HDR + wrap_b64(att, 76) + b"\r\n" + wrap_b64(att1, 64),
    }
    return c


CASES = _cases()


def _roundtrip(vault: Vault, data: bytes) -> bytes:
    res = vault.add_message(data, SourceInfo("acct", "pop3", uidl="1"))
    assert vault.commit() is not None
    assert res.size == len(data)
    got = vault.read_message(res.msg_id)
    assert b"".join(vault.iter_message(res.msg_id, use_cache=False)) == got
    vault.verify_messages([res.msg_id])
    return res.msg_id


@pytest.mark.parametrize("name", sorted(CASES))
def test_adversarial_roundtrip(name: str) -> None:
    data = CASES[name]
    backend, v = memory_vault()
    with v:
        mid = _roundtrip(v, data)
        assert v.read_message(mid) == data
        row = v.message(mid)
        assert row.size == len(data)
    with open_ro(backend) as v2:
        assert v2.read_message(mid) == data
        assert v2.check(read_data=True).ok


def _kinds(vault: Vault, mid: bytes) -> list[str]:
    return [p[0] for p in vault.message(mid).pieces]


@pytest.mark.parametrize("name", ["att-76-crlf", "att-64-lf", "att-72-padded", "att-multi-chunk"])
def test_canonical_attachment_is_split_out(name: str) -> None:
    _backend, v = memory_vault()
    with v:
        mid = _roundtrip(v, CASES[name])
        assert "b" in _kinds(v, mid)


@pytest.mark.parametrize("name", ["att-non-canonical", "att-non-canonical-lf"])
def test_non_canonical_base64_falls_back_to_raw(name: str) -> None:
    data = CASES[name]
    _backend, v = memory_vault()
    with v:
        mid = _roundtrip(v, data)
        pieces = v.message(mid).pieces
        # whatever was split out re-encodes exactly; the damaged last quantum stays raw
        raw = b"".join(v.read_blob(bytes.fromhex(p[1])) for p in pieces if p[0] == "r")
        assert b"==" in raw


@pytest.mark.parametrize("name", ["headers-only", "empty", "no-final-newline"])
def test_reopen_local_backend(name: str, tmp_path: Path) -> None:
    data = CASES[name]
    create(tmp_path / "v")
    with open_rw(tmp_path / "v") as v:
        mid = v.add_message(data, SourceInfo("acct", "pop3", uidl="x")).msg_id
        v.commit()
    with open_ro(tmp_path / "v") as v:
        assert v.read_message(mid) == data
        assert v.check(read_data=True).ok


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=4))
def test_arbitrary_bytes_roundtrip(messages: list[bytes]) -> None:
    _backend, v = memory_vault()
    with v:
        ids = add_batch(v, messages)
        v.commit()
        for mid, data in ids.items():
            assert v.read_message(mid) == data


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bytes_around_base64)
def test_bytes_around_base64_roundtrip(data: bytes) -> None:
    _backend, v = memory_vault()
    with v:
        mid = v.add_message(data, SourceInfo("acct", "pop3")).msg_id
        v.commit()
        assert v.read_message(mid) == data
        v.verify_messages([mid])


# --- deduplication ------------------------------------------------------------------


def test_same_message_twice_stored_once() -> None:
    _backend, v = memory_vault()
    data = text_message(1, body=_letters(50_000, 9))
    with v:
        first = v.add_message(data, SourceInfo("acct", "pop3", uidl="u1"))
        again = v.add_message(data, SourceInfo("acct", "pop3", uidl="u2"))
        assert first.new and not again.new
        assert first.msg_id == again.msg_id
        v.commit()
        s1 = v.stats()
        third = v.add_message(data, SourceInfo("acct", "pop3", uidl="u3"))
        assert not third.new
        v.commit()
        s2 = v.stats()
        assert s1["messages"] == s2["messages"] == 1
        assert s1["arrivals"] == 2 and s2["arrivals"] == 3
        # only the second commit's small records blob is new, not the 50 KB message
        assert s2["unique_blob_bytes"] - s1["unique_blob_bytes"] < 1_000
        assert v.message(first.msg_id).uidls == ["u1", "u2", "u3"]


def test_same_arrival_twice_is_one_arrival() -> None:
    _backend, v = memory_vault()
    data = text_message(1)
    with v:
        v.add_message(data, SourceInfo("acct", "pop3", uidl="u1"))
        v.commit()
        v.add_message(data, SourceInfo("acct", "pop3", uidl="u1"))
        assert v.pending == 0
        assert v.stats()["arrivals"] == 1


def test_two_accounts_both_listed() -> None:
    _backend, v = memory_vault()
    data = text_message(1)
    with v:
        a = v.add_message(data, SourceInfo("alice", "pop3", uidl="1"))
        b = v.add_message(data, SourceInfo("bob", "pop3", uidl="9"))
        v.commit()
        assert a.msg_id == b.msg_id
        row = v.message(a.msg_id)
        assert row.accounts == ["alice", "bob"]
        assert v.stats()["messages"] == 1
        assert v.stats()["accounts"] == 2
        assert v.known_uidls("alice") == {"1": a.msg_id}
        assert v.known_uidls("bob") == {"9": a.msg_id}


def test_same_attachment_in_many_messages_costs_once() -> None:
    att = random_bytes(200_000, seed=11)  # incompressible
    wraps = [(76, b"\r\n"), (64, b"\r\n"), (76, b"\n"), (72, b"\n")]
    _backend, v = memory_vault()
    with v:
        v.add_message(attachment_message(att, n=0), SourceInfo("acct", "pop3", uidl="0"))
        v.commit()
        one = v.stats()
        for n in range(1, 12):
            ll, eol = wraps[n % len(wraps)]
            data = attachment_message(att, n=n, line_length=ll, eol=eol)
            v.add_message(data, SourceInfo("acct", "pop3", uidl=str(n)))
        v.commit()
        many = v.stats()
        assert many["messages"] == 12
        assert many["raw_bytes"] > 12 * len(att)
        # the attachment's bytes are stored once: growth is headers and text only
        assert many["unique_blob_bytes"] - one["unique_blob_bytes"] < 20_000
        assert many["stored_bytes"] - one["stored_bytes"] < 50_000
        assert one["unique_blob_bytes"] < len(att) + 5_000
        for row in v.messages():
            assert v.read_message(row.id).count(b"--XYZ") == 3


def test_compression_of_repetitive_mail() -> None:
    _backend, v = memory_vault()
    with v:
        add_batch(v, [text_message(i, body=b"Dear customer,\r\n" * 200) for i in range(50)])
        v.commit()
        s = v.stats()
        assert s["stored_bytes"] * 5 < s["raw_bytes"]


# --- streaming path -----------------------------------------------------------------


@pytest.fixture
def small_inline(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(writer_mod, "INLINE_LIMIT", 64 << 10)
    return 64 << 10


def _stream(v: Vault, data: bytes, step: int, uidl: str) -> Any:
    w = v.new_message()
    for i in range(0, len(data), step):
        w.write(data[i : i + step])
    assert w.size == len(data)
    return w.finish(SourceInfo("acct", "pop3", uidl=uidl), MessageMeta(subject="big"))


def test_streamed_large_message_roundtrips(small_inline: int) -> None:
    body = _letters(200_000, 5) * 12 + random_bytes(500_000, 6)  # > 2 MiB, > INLINE_LIMIT
    data = HDR + body
    _backend, v = memory_vault()
    with v:
        w = v.new_message()
        w.write(data[:1000])
        assert w.head == HDR
        for i in range(1000, len(data), 10_000):
            w.write(data[i : i + 10_000])
        res = w.finish(SourceInfo("acct", "pop3", uidl="big"))
        v.commit()
        assert v.read_message(res.msg_id) == data
        v.verify_messages([res.msg_id])
        pieces = v.message(res.msg_id).pieces
        assert len(pieces) >= 3  # header + several 1 MiB text blobs
        assert all(p[0] == "r" for p in pieces)
        head_blob = str(pieces[0][1])
        assert v.read_blob(bytes.fromhex(head_blob)) == HDR
        assert v.check(read_data=True).ok


def test_streamed_without_header_end(small_inline: int) -> None:
    data = b"X-No-Blank-Line: " + random_bytes(small_inline * 3, 8)
    data = data.replace(b"\n", b"_")
    _backend, v = memory_vault()
    with v:
        res = _stream(v, data, 7_777, "n")
        v.commit()
        assert v.read_message(res.msg_id) == data


def test_streamed_and_inline_same_message_dedup(small_inline: int) -> None:
    data = HDR + random_bytes(small_inline * 2, 12)
    _backend, v = memory_vault()
    with v:
        a = _stream(v, data, 4096, "s")
        v.commit()
        writer_mod.INLINE_LIMIT = 1 << 30  # same bytes, split in memory this time
        b = v.add_message(data, SourceInfo("other", "import", uidl=None))
        v.commit()
        assert a.msg_id == b.msg_id and not b.new
        assert v.stats()["messages"] == 1
        assert v.read_message(a.msg_id) == data


# --- commit boundaries --------------------------------------------------------------


def test_reopen_after_commit(tmp_path: Path) -> None:
    create(tmp_path / "v")
    with open_rw(tmp_path / "v") as v:
        ids = add_batch(v, [text_message(i) for i in range(5)])
        v.commit()
    with open_ro(tmp_path / "v") as v:
        assert message_ids(v) == set(ids)
        for mid, data in ids.items():
            assert v.read_message(mid) == data


def test_uncommitted_messages_gone_after_close(tmp_path: Path) -> None:
    create(tmp_path / "v")
    with open_rw(tmp_path / "v") as v:
        kept = add_batch(v, [text_message(1)])
        v.commit()
        lost = add_batch(v, [text_message(2), attachment_message(random_bytes(20_000, 3))])
        assert v.pending > 0
    with open_rw(tmp_path / "v") as v:
        assert message_ids(v) == set(kept)
        assert v.check(read_data=True).ok
        for mid in lost:
            with pytest.raises(UsageError):
                v.read_message(mid)
        assert len(v.commit_names()) == 1


def test_uncommitted_messages_not_readable_before_commit() -> None:
    _backend, v = memory_vault()
    with v:
        mid = v.add_message(text_message(1), SourceInfo("a", "pop3")).msg_id
        assert v.has_message(mid)
        with pytest.raises(UsageError):
            v.read_message(mid)
        assert v.commit() is not None
        assert v.commit() is None  # nothing left to commit
        assert v.read_message(mid) == text_message(1)


def test_read_only_vault_refuses_writes() -> None:
    backend = MemoryBackend()
    create(backend)
    with open_ro(backend) as v:
        assert not v.writable
        with pytest.raises(Exception, match="read-only"):
            v.add_message(b"x", SourceInfo("a", "pop3"))
