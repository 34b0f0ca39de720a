"""Backup runs: POP3 accounts into the vault, incrementally and safely (``popvault backup``).

One account is a pipeline of named stages: **list** what the server has
(:func:`list_server`), **plan** what to fetch (:func:`plan`: what the vault does not
hold for that account), **fetch and store** it, committed in batches
(:func:`popvault.app.fetch.fetch_and_store`), then **delete** what the policy allows:
only archived messages that are read back from storage and verified against their keyed
ids, and that are provably the message the server holds under that UIDL now: fetched in
this session, or (archived earlier) ``TOP n 0`` matches the archived header section
(DESIGN.md guarantee 2; the rule is :mod:`popvault.app.deletion`). Deletions are recorded
in the vault before QUIT, where they take effect. Accounts run one after another or
concurrently (``jobs``); one failing account does not stop the others.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from popvault import interrupts
from popvault.app.config import AccountConfig
from popvault.app.deletion import (
    DAY,
    Policy,
    deletable,
    prove_identity,
    reuse_warning,
    unsafe_uidls,
    verify,
)
from popvault.app.fetch import Fetched, cut_sessions, fetch_and_store, size_ok
from popvault.app.indexing import index_run
from popvault.app.progress import NullProgress, Progress
from popvault.errors import (
    PopvaultError,
    TemporaryFailure,
)
from popvault.pop3.client import Pop3Client
from popvault.pop3.errors import Pop3CommandFailed, Pop3TemporaryFailure, UidlNotSupported
from popvault.pop3.settings import Pop3Settings
from popvault.vault import Vault

#: Waits before retrying a login refused with [IN-USE] or [SYS/TEMP] within one run.
RETRY_DELAYS: tuple[float, ...] = (2.0, 10.0)

__all__ = ["DAY", "AccountReport", "BackupReport", "backup_account", "run_backup"]


@dataclass
class AccountReport:
    """What one account's run did; the ``--json`` report is a list of these."""

    account: str
    host: str = ""
    status: str = "ok"
    exit_code: int = 0
    listed: int = 0
    fetched: int = 0
    new: int = 0
    duplicates: int = 0
    bytes: int = 0
    deleted: int = 0
    would_fetch: int = 0
    would_delete: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    #: What to do about ``error`` (the error's hint), for the CLI; not in the JSON report.
    hint: str | None = None
    #: UIDLs listed on the server in this run (for migrate's completeness report).
    server_uidls: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("server_uidls")
        d.pop("hint")
        return d


@dataclass
class BackupReport:
    accounts: list[AccountReport]

    @property
    def exit_code(self) -> int:
        """0 all ok; the account's code when all failed alike; else 3 (partial)."""
        codes = {a.exit_code for a in self.accounts}
        if codes <= {0}:
            return 0
        if 0 not in codes and len(codes) == 1:
            return codes.pop()
        return 3


def settings_for(acct: AccountConfig, password: str) -> Pop3Settings:
    return Pop3Settings(
        host=acct.host,
        user=acct.user,
        password=password,
        port=acct.port,
        tls=acct.tls,
        auth=acct.auth,
        tls_ca_file=acct.tls_ca_file,
        tls_fingerprint=acct.tls_fingerprint,
        connect_timeout=acct.connect_timeout,
        timeout=acct.timeout,
    )


def _connect(
    settings: Pop3Settings, progress: Progress, sleep: Callable[[float], None]
) -> Pop3Client:
    delays = list(RETRY_DELAYS)
    while True:
        try:
            return Pop3Client.connect(settings)
        except TemporaryFailure as exc:
            code = getattr(exc, "response_code", None)
            if code in ("IN-USE", "SYS/TEMP") and delays:
                delay = delays.pop(0)
                progress.warn(f"{settings.host}: {exc.message}; retrying in {delay:.0f} s")
                sleep(delay)
                continue
            raise


@dataclass
class Listing:
    """What the server lists: (number, UIDL) pairs, UIDLs of identical copies told apart
    (``UIDL#2``...), LIST sizes (filled when needed), and whether UIDL was missing."""

    ident: list[tuple[int, str]]
    duplicated: set[str]
    sizes: Mapping[int, int]
    no_uidl: bool


def list_server(client: Pop3Client, acct: AccountConfig, progress: Progress) -> Listing:
    """UIDL (or, without it, LIST and TOP); LIST sizes come later, only when needed."""
    sizes: Mapping[int, int] = {}
    no_uidl = False
    try:
        pairs = client.uidl()
    except UidlNotSupported:
        no_uidl = True
        sizes = client.list()
        progress.warn(
            f"account {acct.name}: server has no UIDL; identifying messages by header hash"
        )
        pairs = [(n, _header_id(client, n, sizes.get(n, 0))) for n in sorted(sizes)]
    if len({u for _, u in pairs}) == len(pairs):  # no UIDL twice: the pairs as they are
        return Listing(pairs, set(), sizes, no_uidl)
    # duplicate UIDLs (RFC 1939 allows them for identical copies): keep them apart
    seen: dict[str, int] = {}
    ident: list[tuple[int, str]] = []
    for num, uidl in pairs:
        k = seen.get(uidl, 0)
        seen[uidl] = k + 1
        ident.append((num, uidl if k == 0 else f"{uidl}#{k + 1}"))
    duplicated = {u for u, k in seen.items() if k > 1}
    return Listing(ident, duplicated, sizes, no_uidl)


def plan(listing: Listing, known: dict[str, bytes], reused: set[str]) -> list[tuple[int, str]]:
    """What to fetch: UIDLs the vault has not archived, and reused ones (a UIDL deleted
    from the server after we archived it and listed again names a new message: RFC 1939
    lets a server reuse a unique-id once its message is gone)."""
    # the listing's own pairs, not copies (a tuple a message: 6 MB at 100,000)
    return [p for p in listing.ident if p[1] not in known or p[1] in reused]


def policy_of(acct: AccountConfig) -> Policy:
    return Policy(acct.delete, acct.delete_after_days, acct.allow_delete_without_uidl)


def backup_account(
    vault: Vault,
    acct: AccountConfig,
    password: str,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    now: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> AccountReport:
    """Back up one account. Raises PopvaultError subclasses; committed work stays."""
    progress = progress or NullProgress()
    rep = AccountReport(account=acct.name, host=acct.host)
    t0 = time.monotonic()
    now = time.time() if now is None else now
    settings = settings_for(acct, password)
    if acct.tls == "none":
        progress.warn(
            f'account {acct.name}: tls = "none": password and mail cross the network in clear'
        )
    client = _connect(settings, progress, sleep)
    try:
        _run_account(vault, client, acct, rep, progress, now, dry_run)
    except BaseException:
        client.close()
        raise
    finally:
        rep.seconds = round(time.monotonic() - t0, 3)
    return rep


def _run_account(
    vault: Vault,
    client: Pop3Client,
    acct: AccountConfig,
    rep: AccountReport,
    progress: Progress,
    now: float,
    dry_run: bool,
) -> None:
    listing = list_server(client, acct, progress)
    if listing.duplicated:
        rep.warnings.append(
            f"{len(listing.duplicated)} UIDL(s) are listed more than once; those messages"
            " are archived but never deleted from the server"
        )
    rep.listed = len(listing.ident)
    rep.server_uidls = [u for _, u in listing.ident]
    known = vault.known_uidls(acct.name)
    reused = vault.reused_uidls(acct.name)
    todo = plan(listing, known, reused)
    policy = policy_of(acct)
    if not listing.no_uidl and (todo or policy.deletes):
        # sizes are needed only to fetch (size check, progress) or to delete: a run
        # with nothing new and nothing to delete costs one UIDL listing
        listing.sizes = client.list()
    sizes = listing.sizes
    progress.start(acct.name, len(todo), sum(sizes.get(n, 0) for n, _ in todo))
    if dry_run:
        _dry_run(vault, client, acct, rep, progress, listing, known, reused, todo, now)
        return
    try:
        got = fetch_and_store(
            vault, client, acct, todo, sizes, progress, source=_source(acct), expected=known
        )
    finally:
        progress.done()
    _report_fetch(rep, got)
    for w in rep.warnings:
        progress.warn(f"account {acct.name}: {w}")
    for n, u in todo:
        if u in reused and u in got.confirmed:
            progress.info(
                f"account {acct.name}: #{n} {u} is still on the server although an earlier"
                " run recorded its deletion (that session's QUIT did not complete); fetched"
                " again, the same message"
            )
    _delete_stage(_Run(vault, client, acct, rep, progress, listing, now), reused, got)


def _source(acct: AccountConfig) -> str:
    return f"pop3://{acct.user}@{acct.host}"


@dataclass
class _Run:
    """One account's session, as the delete stage needs it."""

    vault: Vault
    client: Pop3Client
    acct: AccountConfig
    rep: AccountReport
    progress: Progress
    listing: Listing
    now: float

    def warn(self, text: str) -> None:
        self.rep.warnings.append(text)
        self.progress.warn(f"account {self.acct.name}: {text}")


def _delete_stage(run: _Run, reused: set[str], got: Fetched) -> None:
    """DELE what the rule allows (:mod:`popvault.app.deletion`), record it, QUIT."""
    vault, client, acct = run.vault, run.client, run.acct
    doomed: list[tuple[int, str]] = []
    archived: dict[str, bytes] = {}
    if policy_of(acct).deletes:
        doomed, archived = _doomed(run, reused, got)
    for num, _u in doomed:
        client.dele(num)
    # the deletions are recorded before QUIT, where they take effect ("DELE sent"): a
    # session that ends without QUIT leaves records of deletions that did not happen,
    # and the next run, listing those UIDLs again, fetches and proves them (format §8.3);
    # never a deletion without its record. Signals wait until QUIT is answered (bounded
    # by the timeout).
    with interrupts.critical():
        if doomed:
            for _num, u in doomed:
                vault.record_deletion(acct.name, u, archived[u])
            vault.commit()
        client.quit()
        run.rep.deleted = len(doomed)


def _doomed(
    run: _Run, reused: set[str], got: Fetched
) -> tuple[list[tuple[int, str]], dict[str, bytes]]:
    """What may be DELE'd (rules 1-6), and UIDL -> the message each one holds.

    Rules 1-5 for every candidate; then the identity of those archived in an earlier run
    (rule 6): one ``TOP n 0`` each. One that fails it (another header, another size, no
    TOP) is fetched now and judged again as an arrival of this run."""
    vault, acct, listing, now = run.vault, run.acct, run.listing, run.now
    policy = policy_of(acct)
    known = vault.known_uidls(acct.name)
    # the message of this run's arrival, else the archived one
    archived = {u: got.ids.get(u, m) for u, m in known.items()}
    unsafe = unsafe_uidls(known, got.mismatched, listing.duplicated, reused, set(got.ids))
    when = _first_archived(vault, acct, archived, now)
    listed = deletable(policy, listing.ident, archived, unsafe, listing.no_uidl, now, when)
    if not listed:
        return [], archived
    ok, wrong = verify(vault, listed, archived, listing.sizes, size_ok)
    again = [(w.num, w.uidl) for w in wrong if w.uidl not in got.ids]
    for w in wrong:
        if w.uidl in got.ids:
            run.warn(w.warning())
    # this session's downloads prove themselves; without UIDL, so does the listing (its
    # identities are TOP hashes and sizes)
    earlier = [] if listing.no_uidl else [d for d in ok if d[1] not in got.ids]
    _proven, unproven, no_top = prove_identity(
        earlier,
        archived,
        lambda msg: _first_piece_id(vault, msg),
        lambda nums: _top_ids(vault, run.client, nums, acct.pipeline_window),
    )
    doubtful = set(unproven)
    doomed = [d for d in ok if d not in doubtful]
    again += unproven
    if not again:
        return doomed, archived
    if no_top:
        run.warn(
            "the server refuses TOP: messages archived in an earlier run are downloaded"
            " again to prove their identity before they are deleted"
        )
    more = _fetch_again(run, again, archived)
    got.merge(more)
    fresh = [d for d in again if d[1] in more.ids]
    archived.update(more.ids)
    unsafe = unsafe_uidls(known, got.mismatched, listing.duplicated, reused, set(got.ids))
    listed = deletable(policy, fresh, archived, unsafe, listing.no_uidl, now, when)
    ok, wrong = verify(vault, listed, archived, listing.sizes, size_ok)
    for w in wrong:
        run.warn(w.warning())
    return doomed + ok, archived


def _fetch_again(run: _Run, again: list[tuple[int, str]], archived: dict[str, bytes]) -> Fetched:
    """Fetch candidates whose identity is unproven; their downloads decide: the archived
    message again, or a new one under a reused UIDL (then archived, and warned about)."""
    acct, rep, progress, sizes = run.acct, run.rep, run.progress, run.listing.sizes
    progress.start(acct.name, len(again), sum(sizes.get(n, 0) for n, _ in again))
    try:
        more = fetch_and_store(
            run.vault,
            run.client,
            acct,
            again,
            sizes,
            progress,
            source=_source(acct),
            expected=archived,
            skip_refused=True,
        )
    finally:
        progress.done()
    rep.fetched += len(more.ids)
    rep.new += more.new
    rep.duplicates += more.duplicates
    rep.bytes += more.bytes
    for w in more.warnings:
        run.warn(w)
    for num, u in again:
        if u in more.refused:
            run.warn(
                f"#{num} {u}: could not fetch it to prove it is the archived message"
                f" ({more.refused[u]}); kept on the server"
            )
        elif u in more.ids and u not in more.confirmed:
            run.warn(reuse_warning(u))
    return more


def _first_archived(
    vault: Vault, acct: AccountConfig, archived: dict[str, bytes], now: float
) -> Callable[[str], float | None]:
    """When a UIDL's message was first archived, for ``delete_after_days``: the later of
    the UIDL's first arrival and the message's (a new message under a reused UIDL is as
    young as its own arrival); the message is looked up only when the UIDL is old
    enough."""
    days = acct.delete_after_days

    def when(uidl: str) -> float | None:
        first = vault.first_archived(acct.name, uidl)
        if first is None or days is None or now - first < days * DAY or uidl not in archived:
            return first
        return max(first, vault.message(archived[uidl]).first_archived)

    return when


def _first_piece_id(vault: Vault, msg_id: bytes) -> bytes | None:
    """The id of a message's first piece: its header section as one ``hdr`` blob (up to
    and including the first empty line), which is what ``TOP n 0`` returns. None when
    that piece is an attachment run."""
    pieces = vault.message(msg_id).pieces
    if not pieces:
        return None
    tag, blob = pieces[0][0], pieces[0][1]
    return bytes.fromhex(blob) if tag == "r" and isinstance(blob, str) else None


def _top_ids(
    vault: Vault, client: Pop3Client, nums: list[int], window: int
) -> tuple[dict[int, bytes], bool]:
    """The keyed id of ``TOP n 0`` for each of ``nums`` (pipelined), and whether the
    server answered ``-ERR`` (then no further TOP was sent)."""
    ids: dict[int, bytes] = {}

    def got(num: int, data: bytes) -> None:
        ids[num] = vault.keyed_id(data)

    try:
        client.top_many(nums, 0, got, window=window)
    except (Pop3CommandFailed, Pop3TemporaryFailure):
        return ids, True
    return ids, False


def _report_fetch(rep: AccountReport, got: Fetched) -> None:
    rep.fetched = len(got.ids)
    rep.new = got.new
    rep.duplicates = got.duplicates
    rep.bytes = got.bytes
    rep.warnings += got.warnings


def _dry_run(
    vault: Vault,
    client: Pop3Client,
    acct: AccountConfig,
    rep: AccountReport,
    progress: Progress,
    listing: Listing,
    known: dict[str, bytes],
    reused: set[str],
    todo: list[tuple[int, str]],
    now: float,
) -> None:
    """What a run would fetch and delete; changes nothing."""
    policy = policy_of(acct)
    rep.would_fetch = len(todo)
    # no TOP is sent: a candidate archived in an earlier run is counted as if it proved
    # to be the same message (a real run fetches one that does not, and deletes it only
    # under ``delete = true``)
    unsafe = unsafe_uidls(known, set(), listing.duplicated, reused, set())
    when = _first_archived(vault, acct, known, now)
    rep.would_delete = len(
        deletable(policy, listing.ident, known, unsafe, listing.no_uidl, now, when)
    )
    if acct.delete and (not listing.no_uidl or acct.allow_delete_without_uidl):
        # fetched, verified, then deleted (not copies under a UIDL listed more than once)
        rep.would_delete += sum(u.split("#", 1)[0] not in listing.duplicated for _, u in todo)
    for n, u in todo:
        progress.info(f"would fetch {acct.name} #{n} {u} ({listing.sizes.get(n, 0)} bytes)")
    progress.done()
    client.quit()


def _header_id(client: Pop3Client, num: int, size: int) -> str:
    """An identity for servers without UIDL: hash of the header section plus size."""
    head = client.top(num, 0)
    return f"popvault-top-{hashlib.sha256(head).hexdigest()[:32]}-{size}"


def run_backup(
    vault: Vault,
    accounts: Sequence[tuple[AccountConfig, str]],
    *,
    jobs: int = 1,
    dry_run: bool = False,
    progress: Progress | None = None,
    make_progress: Callable[[], Progress] | None = None,
) -> BackupReport:
    """Back up several accounts (``jobs`` at a time) into one vault; never raises for
    one account's failure: it is in that account's report with its exit code."""
    progress = progress or NullProgress()

    def one(item: tuple[AccountConfig, str]) -> AccountReport:
        acct, password = item
        p = make_progress() if make_progress and jobs > 1 else progress
        try:
            return backup_account(vault, acct, password, dry_run=dry_run, progress=p)
        except PopvaultError as exc:
            r = AccountReport(account=acct.name, host=acct.host, status="failed")
            r.exit_code = exc.exit_code
            r.error = exc.message
            r.hint = exc.hint
            return r

    if jobs <= 1 or len(accounts) <= 1:
        reports = [one(a) for a in accounts]
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            try:
                reports = list(pool.map(one, accounts))
            except (interrupts.Interrupted, KeyboardInterrupt):
                # the threads stop at their next message; those waiting on a server now
                pool.shutdown(wait=False, cancel_futures=True)
                cut_sessions()
                raise
    if not dry_run:  # what the run added, searchable (read back from the vault)
        index_run(vault, progress)
    return BackupReport(reports)
