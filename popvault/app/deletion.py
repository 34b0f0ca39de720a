"""The rule that decides what a backup may DELE from a server (DESIGN guarantee 2).

A message may be deleted only when all of these hold:

1. the account's policy deletes (``delete``, or ``delete_after_days`` and the UIDL was
   first archived at least that long ago);
2. the server has UIDL, or the account allows deleting without it;
3. the UIDL is archived (a commit holds it whole: an incomplete message is not);
4. it is not unsafe: not listed with a LIST size that disagreed with what arrived (in
   this run), not one of several messages under one UIDL, and not a reused UIDL whose
   new message this run did not fetch;
5. read back from storage without caches, it verifies against its id, and its size
   agrees with what the server's LIST says now (:func:`verify`).

:func:`deletable` is 1-4, a pure function; :func:`verify` is 5.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


def verify(
    vault: Vault,
    doomed: list[tuple[int, str]],
    archived: dict[str, bytes],
    sizes: dict[int, int],
    size_ok: Callable[[int | None, int, int], bool],
) -> tuple[list[tuple[int, str]], list[str]]:
    """Rule 5: read the doomed messages back (IntegrityError if one does not verify:
    then nothing is deleted) and keep those whose LIST size disagrees with what the
    vault holds (a lie seen in an earlier run must keep the message on the server now
    too). Returns what may be deleted, and a warning per message kept."""
    shape = vault.verify_messages({archived[u] for _, u in doomed})
    keep: list[tuple[int, str]] = []
    warnings: list[str] = []
    for num, uidl in doomed:
        if not size_ok(sizes.get(num), *shape[archived[uidl]]):
            keep.append((num, uidl))
            warnings.append(
                f"#{num} {uidl}: LIST says {sizes.get(num)} bytes, the vault holds"
                f" {shape[archived[uidl]][0]}; kept on the server"
            )
    return [d for d in doomed if d not in keep], warnings
