"""Detecting lost commits, rollback and a swapped vault (format §8.6).

Storage we do not control can drop the newest commit records, put back an older copy of
the vault, or put another vault at the same place. Any of these, unnoticed, lets a
writer carry on from an older state — and mail already deleted from its server would be
gone for good. The evidence, cheapest first:

- **the chain**: sequence numbers 1…n with no gap and none taken twice, each commit's
  ``parent`` its predecessor (names alone show gaps and reuse; parents are checked as
  commits are applied to the cache);
- **the anchor** (:mod:`popvault.vault.anchor`): the newest commit this machine has seen
  must still be there, and the vault at a known location must be the one seen there;
- **the local cache**: a commit it applied must still be there;
- **unnamed packs** (writers and ``check``): a commit mark whose parent is missing, or
  whose sequence number another commit holds (:func:`orphans.lost_commits`);
- **claims** (``check`` and ``repair``): a number's claim naming a record that is gone.

Damage that ``popvault repair`` recovered from is written into its commit record
(``accepts``) and is no longer reported; repair also resets the anchor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from popvault.errors import IntegrityError
from popvault.vault.anchor import Anchor
from popvault.vault.cache import IndexCache
from popvault.vault.segments import CLAIM_NAME, COMMIT_NAME, CommitLog, short_name

#: Cache meta keys: chain damage seen while applying commits, and damage accepted.
BREAKS_KEY = "chain_breaks"
ACCEPTS_KEY = "chain_accepts"


@dataclass
class Findings:
    """Problems found, each with a key (what ``accepts`` names) and a message."""

    items: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, message: str) -> None:
        self.items.setdefault(key, message)

    @property
    def messages(self) -> list[str]:
        return list(self.items.values())

    def __bool__(self) -> bool:
        return bool(self.items)

    def error(self, what: str) -> IntegrityError:
        """The exit-20 refusal of a writer (or of ``prune``)."""
        first = self.messages[0]
        more = f" (and {len(self.items) - 1} more problem(s))" if len(self.items) > 1 else ""
        return IntegrityError(
            f"{what}: {first}{more}",
            hint="nothing was changed and nothing deleted; run 'popvault repair' to recover"
            " every message still in the vault (see 'popvault check')",
        )


def load_keys(cache: IndexCache, key: str) -> set[str]:
    raw = cache.get_meta(key)
    try:
        items = json.loads(raw) if raw else []
    except ValueError:
        items = []
    return {str(x) for x in items} if isinstance(items, list) else set()


def save_keys(cache: IndexCache, key: str, items: set[str]) -> None:
    cache.set_meta(key, json.dumps(sorted(items)))


def chain_findings(names: list[str], cache: IndexCache) -> Findings:
    """Gaps, reused numbers and parent mismatches, less what a repair accepted."""
    out = Findings()
    seqs: dict[int, list[str]] = {}
    for n in names:
        m = COMMIT_NAME.match(n)
        if m is not None:
            seqs.setdefault(int(m.group(1)), []).append(short_name(n))
    accepted = load_keys(cache, ACCEPTS_KEY)
    newest = max(seqs, default=0)
    gaps = [s for s in range(1, newest + 1) if s not in seqs]
    for s in gaps:
        if f"missing:{s:010d}" not in accepted:
            out.add(
                f"missing:{s:010d}",
                f"commit {s} is missing ({len(gaps)} of commits 1-{newest} are gone:"
                " commit records were deleted)",
            )
    for s, shorts in sorted(seqs.items()):
        if len(shorts) > 1:
            for short in shorts:
                if f"dup:{short}" not in accepted:
                    out.add(
                        f"dup:{short}",
                        f"{len(shorts)} commits carry sequence number {s}: a commit was"
                        " lost and its number taken again",
                    )
    present = {short for shorts in seqs.values() for short in shorts}
    for key in sorted(load_keys(cache, BREAKS_KEY) - accepted):
        if key.split(":", 1)[1] in present:
            out.add(key, f"commit {key.split(':', 1)[1][:16]} does not follow its predecessor")
    return out


def claim_findings(log: CommitLog, names: list[str]) -> Findings:
    """Claims (format §8.1.1) that name a commit record that is not there (the storage
    lost it: ``missing:<seq>``, as a gap in the chain is), or nothing readable. Reads
    every claim: for ``check`` and ``repair``, not for opening."""
    out = Findings()
    present = set(names)
    for n in log.backend.list("claims"):
        m = CLAIM_NAME.match(n)
        if m is None:
            out.add(f"object:{n}", f"unexpected object {n} in claims/")
            continue
        seq = int(m.group(1))
        try:
            admitted = log.claimed(seq)
        except IntegrityError as exc:
            out.add(f"claim:{seq:010d}", exc.message)
            continue
        if admitted not in present:
            out.add(
                f"missing:{seq:010d}",
                f"commit {seq} is missing: its claim names commit record"
                f" {short_name(admitted or n)[:23]}, which is not in the vault",
            )
    return out


def anchor_findings(names: list[str], anchor: Anchor, vault_id: str) -> Findings:
    """What this machine's anchor says is missing."""
    out = Findings()
    at = anchor.vault_at_location()
    if at is not None and at != vault_id:
        out.add(
            f"swapped:{at}",
            f"{anchor.location} held vault {at} when this machine last used it and now"
            f" holds vault {vault_id}: the vault there was replaced",
        )
    seen = anchor.seen()
    if seen is not None and f"commits/{seen.commit}" not in set(names):
        newest = short_name(names[-1])[:10].lstrip("0") if names else "none"
        out.add(
            f"rollback:{seen.commit}",
            f"commit {seen.seq} ({seen.commit[11:23]}), which this machine has seen, is"
            f" missing (the newest commit now is {newest}): commit records were deleted"
            " or an older copy of the vault was put back",
        )
    return out


def cache_findings(lost: list[str]) -> Findings:
    """Commits the local cache had applied that the vault no longer has."""
    out = Findings()
    for short in lost:
        out.add(
            f"rollback:{short}",
            f"commit {int(short[:10])} ({short[11:23]}), which this machine's index cache"
            " had applied, is missing: commit records were deleted or an older copy of"
            " the vault was put back",
        )
    return out


def merge(*parts: Findings) -> Findings:
    out = Findings()
    for p in parts:
        for k, v in p.items.items():
            out.add(k, v)
    return out
