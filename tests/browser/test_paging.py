"""The viewer's list pages (popvault.web.listing) walk every matching message exactly
once, in either direction, however the delivery times are spread: sparse years,
dense minutes, and more messages at one instant than a probe reads."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from popvault.vault import Filter, MessageRow, SourceInfo, Vault
from popvault.web import listing
from popvault.web.listing import Cursor, rows_after, rows_before
from tests.support.vaults import isolate_cache, memory_vault, text_message

LOCK = threading.RLock()


def _times() -> list[float]:
    """Years apart, then minutes apart, then 70 at one instant, then seconds apart."""
    out = [1_000_000_000.0 + i * 365 * 86400 for i in range(5)]
    out += [1_200_000_000.0 + i * 60 for i in range(80)]
    out += [1_300_000_000.0] * 70
    out += [1_400_000_000.0 + i for i in range(40)]
    return out


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Vault]:
    isolate_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(listing, "CAP", 25)  # so that probes narrow, widen and give up
    _, v = memory_vault()
    for n, t in enumerate(_times()):
        account = "odd" if n % 2 else "even"
        v.add_message(text_message(n), SourceInfo(account, "test", file_time=t))
    v.commit()
    yield v
    v.close()


def _walk(v: Vault, flt: Filter, n: int, *, back: bool) -> list[MessageRow]:
    """Every page from the start, newest first (``back``) or oldest first."""
    out: list[MessageRow] = []
    cursor: Cursor | None = None
    while True:
        page = (rows_before if back else rows_after)(v, flt, cursor, n, LOCK)
        out += page
        if len(page) < n:
            return out
        cursor = Cursor.of(page[-1])


@pytest.mark.parametrize("n", [1, 7, 50])
def test_newest_first_pages_are_the_listing_reversed(vault: Vault, n: int) -> None:
    every = list(vault.messages())
    assert len(every) == len(_times())
    assert [r.id for r in _walk(vault, Filter(), n, back=True)] == [r.id for r in reversed(every)]
    assert [r.id for r in _walk(vault, Filter(), n, back=False)] == [r.id for r in every]


def test_filters_hold_on_every_page(vault: Vault) -> None:
    flt = Filter(account="odd", since=1_100_000_000.0)
    want = [r.id for r in vault.messages(flt)]
    assert want and len(want) < len(_times())
    assert [r.id for r in _walk(vault, flt, 9, back=True)] == want[::-1]


def test_a_page_back_from_the_middle_ends_at_the_cursor(vault: Vault) -> None:
    every = list(vault.messages())
    mid = every[120]  # inside the 70 messages of one instant
    page = rows_before(vault, Filter(), Cursor.of(mid), 10, LOCK)
    assert [r.id for r in page] == [r.id for r in reversed(every[110:120])]
    page = rows_after(vault, Filter(), Cursor.of(mid), 10, LOCK)
    assert [r.id for r in page] == [r.id for r in every[121:131]]


def test_a_cursor_is_text_both_ways_and_junk_is_refused() -> None:
    c = Cursor(1_234_567_890.125, bytes(range(32)))
    assert Cursor.parse(c.text()) == c
    for junk in ("", "nan:" + "00" * 32, "1:abc", "x" * 100, "inf:" + "00" * 32):
        with pytest.raises(Exception, match="not a list position"):
            Cursor.parse(junk)


def test_sender_pages_newest_first_scan_in_bounded_steps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The list newest first by sender reads at most SCAN rows a page and goes on from
    there; every matching message is shown once, newest first."""
    from popvault.vault import MessageMeta
    from popvault.web import pages
    from popvault.web.viewer import Viewer

    isolate_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(pages, "PAGE", 4)
    monkeypatch.setattr(pages, "SCAN", 30)
    _, v = memory_vault()
    want = []
    for n in range(120):
        sender = "Rare Sender <rare@example.org>" if n % 17 == 0 else f"x{n}@example.org"
        meta = MessageMeta(
            1_600_000_000.0, 1_600_000_000.0 + n * 3600, sender, subject=f"message {n}"
        )
        v.add_message(text_message(n), SourceInfo("acct", "test"), meta)
        if n % 17 == 0:
            want.append(f"message {n}")
    v.commit()
    viewer = Viewer(v, 1, "tok")
    headers = {"host": "127.0.0.1:1", "cookie": "popvault_1=tok"}
    seen: list[str] = []
    url: str | None = "/?from=RARE%40"
    pages_read = 0
    while url:
        r = viewer.handle("GET", url, headers)
        assert r.status == 200 and isinstance(r.body, bytes)
        body = r.body.decode()
        seen += re.findall(r'href="/m/[0-9a-f]{64}">([^<]*)<', body)
        m = re.search(r'id="next" rel="next" href="([^"]+)"', body)
        url = m.group(1).replace("&amp;", "&") if m else None
        pages_read += 1
    v.close()
    assert seen == want[::-1]
    assert pages_read >= 120 // 30  # no page read more than SCAN rows
