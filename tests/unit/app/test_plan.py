"""The plan stage of a backup alone (popvault.app.backup.plan): what to fetch."""

from __future__ import annotations

from popvault.app.backup import Listing, plan


def test_plan_fetches_what_is_not_archived_and_reused_uidls() -> None:
    listing = Listing([(1, "a"), (2, "b"), (3, "b#2"), (4, "c")], {"b"}, {}, False)
    known = {"a": b"A", "b": b"B"}
    # "b#2" (a second message under UIDL b) is its own arrival; "a" was deleted from the
    # server after archiving and is listed again: a new message under a reused UIDL
    assert plan(listing, known, reused={"a"}) == [(1, "a"), (3, "b#2"), (4, "c")]
    assert plan(listing, known, reused=set()) == [(3, "b#2"), (4, "c")]
    assert plan(listing, {"a": b"", "b": b"", "b#2": b"", "c": b""}, set()) == []
