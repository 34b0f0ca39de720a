"""The DELE rule alone (popvault.app.deletion): what a backup may delete from a server.

Every branch of rules 1-4 on plain data, no server and no vault: the policy, a server
without UIDL, only archived UIDLs, never an unsafe one, and the age of
``delete_after_days`` measured from the first archiving. Rule 6, the identity of a
message archived in an earlier run, with a stand-in for TOP: proven only by the keyed id
of its archived header section, one TOP each, none after the server refused one.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from popvault.app.deletion import (
    DAY,
    Policy,
    WrongSize,
    deletable,
    prove_identity,
    reuse_warning,
    unsafe_uidls,
)

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


# ------------------------------------------------------------------ rule 6: identity

CANDIDATES = [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
MESSAGES = {"a": b"A", "b": b"B", "c": b"C", "d": b"D"}
HEADERS = {b"A": b"hA", b"B": b"hB", b"D": b"hD"}  # C's first piece is not a header


def _prove(
    tops: dict[int, bytes | None],
) -> tuple[list[tuple[int, str]], list[tuple[int, str]], bool, list[int]]:
    """``tops``: each number's TOP reply id, None where the server answers -ERR (a
    pipelined client stops there, as Pop3Client.top_many does)."""
    sent: list[int] = []

    def top_ids(nums: list[int]) -> tuple[dict[int, bytes], bool]:
        sent.extend(nums)
        got: dict[int, bytes] = {}
        for num in nums:
            reply = tops[num]
            if reply is None:
                return got, True
            got[num] = reply
        return got, False

    proven, unproven, refused = prove_identity(CANDIDATES, MESSAGES, HEADERS.get, top_ids)
    return proven, unproven, refused, sent


def test_identity_proven_only_by_the_archived_header() -> None:
    # a: the same header; b: another header under the UIDL (reused); c: no header id to
    # compare with, so no TOP either; d: the same
    proven, unproven, refused, sent = _prove({1: b"hA", 2: b"hX", 4: b"hD"})
    assert (proven, unproven, refused) == ([(1, "a"), (4, "d")], [(2, "b"), (3, "c")], False)
    assert sent == [1, 2, 4]


def test_top_refused_then_every_candidate_left_is_fetched_instead() -> None:
    proven, unproven, refused, _sent = _prove({1: b"hA", 2: None, 4: b"hD"})
    assert (proven, unproven, refused) == ([(1, "a")], [(2, "b"), (3, "c"), (4, "d")], True)


def test_no_candidates_no_top() -> None:
    def never(_nums: list[int]) -> tuple[dict[int, bytes], bool]:
        raise AssertionError("TOP sent for nothing")

    assert prove_identity([], MESSAGES, HEADERS.get, never) == ([], [], False)
    # no header to compare with: fetched, no TOP
    assert prove_identity([(3, "c")], MESSAGES, HEADERS.get, never) == ([], [(3, "c")], False)


@given(
    st.lists(st.sampled_from("abcd"), unique=True),
    st.dictionaries(st.integers(1, 4), st.sampled_from([b"hA", b"hB", b"hD"])),
)
def test_identity_partitions_and_never_proves_another_header(
    order: list[str], tops: dict[int, bytes]
) -> None:
    listed = [(n, u) for n, u in CANDIDATES if u in order]
    proven, unproven, _refused = prove_identity(
        listed, MESSAGES, HEADERS.get, lambda nums: ({n: tops[n] for n in nums if n in tops}, False)
    )
    assert sorted(proven + unproven) == sorted(listed)
    assert [d for d in listed if d in proven] == proven  # in order
    for num, uidl in proven:
        assert tops.get(num) == HEADERS[MESSAGES[uidl]]


def test_warnings() -> None:
    assert WrongSize(4, "u4", 17, 900).warning() == (
        "#4 u4: LIST says 17 bytes, the vault holds 900; kept on the server"
    )
    assert reuse_warning("0001") == (
        "UIDL 0001 was reused by the server for a new message; fetched it, not deleted unseen"
    )
