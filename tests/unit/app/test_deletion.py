"""The DELE rule alone (popvault.app.deletion): what a backup may delete from a server.

Every branch of rules 1-4 on plain data, no server and no vault: the policy, a server
without UIDL, only archived UIDLs, never an unsafe one, and the age of
``delete_after_days`` measured from the first archiving.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from popvault.app.deletion import DAY, Policy, deletable, unsafe_uidls

LISTED = [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
ARCHIVED = {"a": b"A", "b": b"B", "c": b"C"}  # "d" is not archived
NOW = 1_000 * DAY


def first_archived(days_ago: dict[str, float]) -> Callable[[str], float | None]:
    return lambda uidl: None if uidl not in days_ago else NOW - days_ago[uidl] * DAY


def _run(
    policy: Policy, *, unsafe: frozenset[str] = frozenset(), no_uidl: bool = False
) -> list[tuple[int, str]]:
    ages = {"a": 10.0, "b": 30.0, "c": 31.0}
    return deletable(policy, LISTED, ARCHIVED, set(unsafe), no_uidl, NOW, first_archived(ages))


def test_keep_deletes_nothing() -> None:
    assert _run(Policy()) == []
    assert not Policy().deletes


def test_delete_takes_every_archived_safe_uidl_and_nothing_else() -> None:
    assert _run(Policy(delete=True)) == [(1, "a"), (2, "b"), (3, "c")]
    assert _run(Policy(delete=True), unsafe=frozenset({"b"})) == [(1, "a"), (3, "c")]


def test_delete_after_days_counts_from_the_first_archiving() -> None:
    assert _run(Policy(delete_after_days=30)) == [(2, "b"), (3, "c")]
    assert _run(Policy(delete_after_days=0)) == [(1, "a"), (2, "b"), (3, "c")]
    assert _run(Policy(delete_after_days=365)) == []


def test_never_without_uidl_unless_allowed() -> None:
    assert _run(Policy(delete=True), no_uidl=True) == []
    allowed = Policy(delete=True, allow_delete_without_uidl=True)
    assert _run(allowed, no_uidl=True) == [(1, "a"), (2, "b"), (3, "c")]


def test_unsafe_uidls() -> None:
    archived = {"a": b"", "b": b"", "b#2": b"", "r": b"", "s": b""}
    unsafe = unsafe_uidls(
        archived, mismatched={"a"}, duplicated={"b"}, reused={"r", "s"}, fetched={"s"}
    )
    # a size lie; both copies under a duplicated UIDL; a reused UIDL not fetched again
    assert unsafe == {"a", "b", "b#2", "r"}


@given(
    st.lists(st.sampled_from("abcdefgh"), unique=True),
    st.sets(st.sampled_from("abcdefgh")),
    st.sets(st.sampled_from("abcdefgh")),
    st.booleans(),
    st.one_of(st.none(), st.floats(0, 100)),
)
def test_only_archived_safe_uidls_are_ever_deleted(
    listed: list[str], archived: set[str], unsafe: set[str], delete: bool, days: float | None
) -> None:
    policy = Policy(delete=delete, delete_after_days=days)
    got = deletable(
        policy,
        list(enumerate(listed, 1)),
        {u: b"x" for u in archived},
        unsafe,
        False,
        NOW,
        lambda _u: NOW - 50 * DAY,
    )
    assert all(u in archived and u not in unsafe for _, u in got)
    assert [u for _, u in got] == [u for u in listed if u in {u for _, u in got}]  # in order
    if not policy.deletes:
        assert got == []
