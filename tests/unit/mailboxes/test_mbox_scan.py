"""The block scanner of ``read_mbox`` splits exactly as the mbox rules say (the module
docstring), wherever the blocks happen to end: checked against a line-by-line reference."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.mailboxes import mbox
from popvault.mailboxes.mbox import read_mbox


def _reference(data: bytes) -> list[tuple[bytes, bytes]]:
    """(From_ line, message) pairs by the rules, one line at a time (mboxrd)."""
    # (not splitlines: it also splits at a lone CR; mbox lines end at LF only)
    lines = re.findall(rb"[^\n]*\n|[^\n]+\Z", data)
    out: list[tuple[bytes, list[bytes]]] = []
    prev_blank = False
    for i, line in enumerate(lines):
        if line.startswith(b"From ") and (i == 0 or prev_blank):
            if out:
                out[-1][1].pop()  # the separator belongs to neither message
            out.append((line, []))
            prev_blank = False
            continue
        out[-1][1].append(line)
        prev_blank = line in (b"\n", b"\r\n")
    result = []
    last = out[-1][1]
    if last and last[-1] in (b"\n", b"\r\n"):
        last.pop()  # a blank last line at the end of the file
    for from_line, body in out:
        msg = b"".join(body)
        result.append((from_line, re.sub(rb"(?m)^>(>*From )", rb"\1", msg)))
    return result


_pieces = st.sampled_from(
    [
        b"From ",
        b"From a Mon Jan  1 00:00:00 2024\n",
        b"\n",
        b"\r\n",
        b"\r",
        b">From ",
        b">>From x\n",
        b"text",
        b"x" * 9,
        b"Subject: hi\n",
        b"From",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_pieces, max_size=40), st.integers(min_value=1, max_value=9))
def test_blocks_of_any_size_split_as_the_rules_say(parts: list[bytes], block: int) -> None:
    data = b"From first Mon Jan  1 00:00:00 2024\n" + b"".join(parts)
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        path = Path(tmp) / "m"
        path.write_bytes(data)
        mp.setattr(mbox, "_BLOCK", block)
        got = [(m.data, m.source) for m in read_mbox(path)]
    want = _reference(data)
    assert [g[0] for g in got] == [w[1] for w in want]
    assert [g[1] for g in got] == [f"mbox:{path}#{n}" for n in range(1, len(want) + 1)]


def test_a_message_over_the_size_limit_streams_from_its_range(tmp_path: Path) -> None:
    path = tmp_path / "big"
    body = b"".join(
        b">From line %d\n" % i if i % 7 == 0 else b"x" * 60 + b"\n" for i in range(3000)
    )
    path.write_bytes(b"From a\n" + body + b"\nFrom b\nsmall\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mbox, "LARGE_FILE", 10_000)
        mp.setattr(mbox, "_BLOCK", 4096)
        msgs = list(read_mbox(path))
        assert msgs[0].data == b""  # not held: read from the file in pieces
        assert b"".join(msgs[0].chunks()) == body.replace(b">From", b"From")
        assert msgs[1].data == b"small\n"
