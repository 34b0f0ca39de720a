"""The plan stage of a backup alone (popvault.app.backup.plan): what to fetch."""

from __future__ import annotations

from typing import cast

from popvault.app.backup import Listing, list_server, plan
from popvault.app.config import AccountConfig
from popvault.app.progress import NullProgress
from popvault.pop3.client import Pop3Client


def test_plan_fetches_what_is_not_archived_and_reused_uidls() -> None:
    listing = Listing([(1, "a"), (2, "b"), (3, "b#2"), (4, "c")], {"b"}, {}, False)
    known = {"a": b"A", "b": b"B"}
    # "b#2" (a second message under UIDL b) is its own arrival; "a" was deleted from the
    # server after archiving and is listed again: a new message under a reused UIDL
    assert plan(listing, known, reused={"a"}) == [(1, "a"), (3, "b#2"), (4, "c")]
    assert plan(listing, known, reused=set()) == [(3, "b#2"), (4, "c")]
    assert plan(listing, {"a": b"", "b": b"", "b#2": b"", "c": b""}, set()) == []


class _Lists:
    """The one call list_server makes of a POP3 client with UIDL."""

    def __init__(self, pairs: list[tuple[int, str]]) -> None:
        self.pairs = pairs

    def uidl(self) -> list[tuple[int, str]]:
        return self.pairs


def test_listing_tells_apart_uidls_listed_twice() -> None:
    client = cast(Pop3Client, _Lists([(1, "a"), (2, "b"), (3, "b"), (4, "c"), (5, "b")]))
    got = list_server(client, AccountConfig(name="x", host="h", user="u"), NullProgress())
    assert got.ident == [(1, "a"), (2, "b"), (3, "b#2"), (4, "c"), (5, "b#3")]
    assert got.duplicated == {"b"}
    assert not got.no_uidl


def test_a_listing_without_repeats_is_the_servers_pairs() -> None:
    pairs = [(1, "a"), (2, "b"), (7, "c")]
    got = list_server(
        cast(Pop3Client, _Lists(pairs)), AccountConfig(name="x", host="h", user="u"), NullProgress()
    )
    assert got.ident == pairs and got.duplicated == set()
