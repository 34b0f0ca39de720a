"""The rule that decides what a backup may DELE from a server (DESIGN guarantee 2).

A message may be deleted only when all of these hold:

1. the account's policy deletes (``delete``, or ``delete_after_days`` and the UIDL and
   the message under it were first archived at least that long ago);
2. the server has UIDL, or the account allows deleting without it;
3. the UIDL is archived (a commit holds it whole: an incomplete message is not);
4. it is not unsafe: not listed with a LIST size that disagreed with what arrived (in
   this run), not one of several messages under one UIDL, and not a reused UIDL whose
   new message this run did not fetch;
5. read back from storage without caches, it verifies against its id, and its size
   agrees with what the server's LIST says now (:func:`verify`);
6. the message the server holds under the UIDL now is provably the archived one
   (:func:`prove_identity`): this session fetched it; or, archived in an earlier run,
   ``TOP n 0`` has the keyed id of its header section (its first piece). A UIDL may
   name another message than it did when we archived it (RFC 1939 lets a server reuse
   one once its message is gone): a candidate that fails the proof is fetched in the
   same session and only then judged again, as an arrival of this run.

:func:`deletable` is 1-4, a pure function; :func:`verify` is 5; :func:`prove_identity`
is 6, pure but for the TOP it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from popvault.vault import Vault

DAY = 86400.0


@dataclass(frozen=True)
class Policy:
    """An account's deletion policy."""

    delete: bool = False
    delete_after_days: float | None = None
    allow_delete_without_uidl: bool = False

    @property
    def deletes(self) -> bool:
        """Whether the policy ever deletes from the server."""
        return self.delete or self.delete_after_days is not None


def unsafe_uidls(
    archived: dict[str, bytes],
    mismatched: set[str],
    duplicated: set[str],
    reused: set[str],
    fetched: set[str],
) -> set[str]:
    """UIDLs never to delete: a size lie, a UIDL listed more than once (``#2`` copies
    too), a reused UIDL whose new message this run did not fetch."""
    unsafe = set(mismatched)
    unsafe |= {u for u in archived if u.split("#", 1)[0] in duplicated}
    unsafe |= reused - fetched
    return unsafe


def deletable(
    policy: Policy,
    listed: Sequence[tuple[int, str]],
    archived: dict[str, bytes],
    unsafe: set[str],
    no_uidl: bool,
    now: float,
    first_archived: Callable[[str], float | None],
) -> list[tuple[int, str]]:
    """The (number, UIDL) pairs of ``listed`` that rules 1-4 allow to DELE now."""
    if not policy.deletes or (no_uidl and not policy.allow_delete_without_uidl):
        return []
    out: list[tuple[int, str]] = []
    for num, uidl in listed:
        if uidl not in archived or uidl in unsafe:
            continue
        if policy.delete:
            out.append((num, uidl))
        elif policy.delete_after_days is not None:
            first = first_archived(uidl)
            if first is not None and now - first >= policy.delete_after_days * DAY:
                out.append((num, uidl))
    return out


class WrongSize(NamedTuple):
    """A candidate whose LIST size now disagrees with what the vault holds under it."""

    num: int
    uidl: str
    listed: int | None
    held: int

    def warning(self) -> str:
        return (
            f"#{self.num} {self.uidl}: LIST says {self.listed} bytes, the vault holds"
            f" {self.held}; kept on the server"
        )


def verify(
    vault: Vault,
    doomed: list[tuple[int, str]],
    archived: dict[str, bytes],
    sizes: Mapping[int, int],
    size_ok: Callable[[int | None, int, int], bool],
) -> tuple[list[tuple[int, str]], list[WrongSize]]:
    """Rule 5: read the doomed messages back (IntegrityError if one does not verify:
    then nothing is deleted) and set apart those whose LIST size disagrees with what the
    vault holds. Returns what may be deleted, and those set apart: never deleted as they
    are (a lie seen in an earlier run keeps the message on the server now too; a size
    that changed under an old UIDL may be another message, which the caller fetches)."""
    shape = vault.verify_messages({archived[u] for _, u in doomed})
    ok: list[tuple[int, str]] = []
    wrong: list[WrongSize] = []
    for num, uidl in doomed:
        held, lines = shape[archived[uidl]]
        if size_ok(sizes.get(num), held, lines):
            ok.append((num, uidl))
        else:
            wrong.append(WrongSize(num, uidl, sizes.get(num), held))
    return ok, wrong


def prove_identity(
    candidates: Sequence[tuple[int, str]],
    archived: dict[str, bytes],
    header_id: Callable[[bytes], bytes | None],
    top_ids: Callable[[list[int]], tuple[dict[int, bytes], bool]],
) -> tuple[list[tuple[int, str]], list[tuple[int, str]], bool]:
    """Rule 6 for candidates archived in an earlier run (the caller has checked their
    sizes): ``header_id(msg)`` is the id of the archived message's first piece (its
    header section), None when unknown; ``top_ids(nums)`` sends ``TOP n 0`` for those
    numbers (only those whose header id is known) and returns the keyed id of each reply
    it got, and whether the server refused TOP (it then stops asking).

    Returns (proven, unproven, whether TOP was refused): an unproven candidate must be
    fetched again, and its download decides (the same message, or a new one under a
    reused UIDL); it is never deleted unseen."""
    expected = {num: header_id(archived[uidl]) for num, uidl in candidates}
    asked = [num for num, _ in candidates if expected[num] is not None]
    tops, refused = top_ids(asked) if asked else ({}, False)
    proven: list[tuple[int, str]] = []
    unproven: list[tuple[int, str]] = []
    for num, uidl in candidates:
        same = expected[num] is not None and tops.get(num) == expected[num]
        (proven if same else unproven).append((num, uidl))
    return proven, unproven, refused


def reuse_warning(uidl: str) -> str:
    """What a run says when a candidate's download was another message than the one
    archived under its UIDL."""
    return f"UIDL {uidl} was reused by the server for a new message; fetched it, not deleted unseen"
