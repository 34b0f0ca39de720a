"""Backup runs: POP3 accounts into the vault, incrementally and safely (``popvault backup``).

One account: log in, list UIDLs, fetch (pipelined) only what the vault does not hold for
that account, commit in batches, then apply the deletion policy. A message is DELE'd only
when its commit is durable and it has been read back from storage and verified against its
keyed id (DESIGN.md guarantee 2), never when its LIST size disagreed with what arrived,
and never on a server without UIDL unless the account allows it. Deletions take effect at
QUIT; they are recorded in the vault afterwards. Accounts run one after another or
concurrently (``jobs``); one failing account does not stop the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from popvault import interrupts
from popvault.app.config import AccountConfig
from popvault.app.metadata import parse_metadata
from popvault.app.prepare import Preparer
from popvault.app.prepare import Result as PrepareResult
from popvault.app.progress import NullProgress, Progress
from popvault.app.secrets import read_secret_file, run_secret_command
from popvault.errors import (
    PopvaultError,
    TemporaryFailure,
    UsageError,
)
from popvault.pop3.client import Pop3Client
from popvault.pop3.errors import UidlNotSupported
from popvault.pop3.settings import Pop3Settings
from popvault.vault.vault import AddResult, MessageWriter, SourceInfo, Vault

BATCH_MESSAGES = 2000
BATCH_BYTES = 128 << 20
#: A run fetching at least this many messages prepares them in a helper process
#: (popvault.app.prepare); fewer are not worth starting one.
PREPARE_MIN = 200
#: Messages larger than this are streamed into the vault, never held whole for a helper.
PREPARE_MAX = 512 << 10
#: Waits before retrying a login refused with [IN-USE] or [SYS/TEMP] within one run.
RETRY_DELAYS: tuple[float, ...] = (2.0, 10.0)
DAY = 86400.0


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


def resolve_password(acct: AccountConfig) -> str:
    """The account's password from its configured source (never logged)."""
    if acct.password_command:
        return run_secret_command(acct.password_command, f"account {acct.name}: password")
    if acct.password_env:
        value = os.environ.get(acct.password_env)
        if not value:
            raise UsageError(
                f"account {acct.name}: environment variable {acct.password_env} is not set"
            )
        return value
    if acct.password_file:
        return read_secret_file(os.path.expanduser(acct.password_file))
    if acct.password is not None:
        return acct.password
    raise UsageError(
        f"account {acct.name} has no password source",
        hint="set password_command, password_env or password_file in its config section",
    )


def settings_for(acct: AccountConfig, password: str) -> Pop3Settings:
    return Pop3Settings(
        host=acct.host,
        user=acct.user,
        password=password,
        port=acct.port,
        tls=acct.tls,  # type: ignore[arg-type]
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


def _size_ok(listed: int | None, got: int, lines: int) -> bool:
    """LIST sizes may count CRLF or LF line ends (notes/dovecot.md): tolerate either."""
    if listed is None:
        return True
    return got - lines - 2 <= listed <= got + 2


class _Sink:
    """Where one message's bytes go as they arrive; counts line feeds (size check).

    Collected whole for the preparer, or streamed into a MessageWriter: a large message
    (by LIST), one that outgrows PREPARE_MAX on the way, or any without a preparer."""

    def __init__(self, vault: Vault, collect: bool) -> None:
        self.vault = vault
        self.buf: bytearray | None = bytearray() if collect else None
        self.writer: MessageWriter | None = None if collect else vault.new_message()
        self.lines = 0

    def __call__(self, chunk: bytes) -> None:
        self.lines += chunk.count(b"\n")
        if self.buf is None:
            assert self.writer is not None
            self.writer.write(chunk)
            return
        self.buf += chunk
        if len(self.buf) > PREPARE_MAX:  # LIST understated it: stream it after all
            self.writer = self.vault.new_message()
            self.writer.write(bytes(self.buf))
            self.buf = None


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
    source = f"pop3://{acct.user}@{acct.host}"
    client = _connect(settings, progress, sleep)
    try:
        sizes: dict[int, int] = {}
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
        # duplicate UIDLs (RFC 1939 allows them for identical copies): keep them apart
        seen: dict[str, int] = {}
        ident: list[tuple[int, str]] = []
        for num, uidl in pairs:
            k = seen.get(uidl, 0)
            seen[uidl] = k + 1
            ident.append((num, uidl if k == 0 else f"{uidl}#{k + 1}"))
        duplicated = {u for u, k in seen.items() if k > 1}
        if duplicated:
            rep.warnings.append(
                f"{len(duplicated)} UIDL(s) are listed more than once; those messages are"
                " archived but never deleted from the server"
            )
        rep.listed = len(ident)
        rep.server_uidls = [u for _, u in ident]
        with vault.mutex:
            known = vault.known_uidls(acct.name)
            reused = vault.cache.reused_uidls(acct.name)
        # a UIDL deleted from the server after we archived it and listed again names a new
        # message (RFC 1939 lets a server reuse a unique-id once its message is gone)
        todo = [(n, u) for n, u in ident if u not in known or u in reused]
        if not no_uidl and (todo or _deletes(acct)):
            # sizes are needed only to fetch (size check, progress) or to delete: a run
            # with nothing new and nothing to delete costs one UIDL listing
            sizes = client.list()
        uidl_of = dict(todo)
        progress.start(acct.name, len(todo), sum(sizes.get(n, 0) for n, _ in todo))
        if dry_run:
            rep.would_fetch = len(todo)
            rep.would_delete = len(_deletable(vault, acct, ident, known, reused, no_uidl, now))
            if acct.delete and (not no_uidl or acct.allow_delete_without_uidl):
                rep.would_delete += len(todo)  # fetched, verified, then deleted
            for n, u in todo:
                progress.info(f"would fetch {acct.name} #{n} {u} ({sizes.get(n, 0)} bytes)")
            progress.done()
            client.quit()
            return rep
        mismatched: set[str] = set()
        fetched: dict[str, bytes] = {}
        current: dict[int, _Sink] = {}
        preparer = _preparer(vault, len(todo))

        def begin(num: int) -> Callable[[bytes], None]:
            interrupts.checkpoint()  # accounts in other threads stop here (--jobs)
            collect = preparer is not None and sizes.get(num, 0) <= PREPARE_MAX
            sink = current[num] = _Sink(vault, collect)
            return sink

        def end(num: int, nbytes: int) -> None:
            sink = current.pop(num)
            uidl = uidl_of[num]
            if sink.buf is not None and preparer is not None:
                preparer.submit(bytes(sink.buf), (num, uidl, nbytes, sink.lines))
                for item in preparer.ready():
                    file_prepared(*item)
                return
            assert sink.writer is not None
            res = sink.writer.finish(
                SourceInfo(account=acct.name, source=source, uidl=uidl),
                parse_metadata(sink.writer.head),
            )
            filed(num, uidl, nbytes, sink.lines, res)

        def file_prepared(data: bytes, tag: _Tag, result: PrepareResult | None) -> None:
            num, uidl, nbytes, lines = tag
            src = SourceInfo(account=acct.name, source=source, uidl=uidl)
            if result is None:  # the helper failed: the ordinary way, same outcome
                res = vault.add_message(data, src, parse_metadata(data))
            else:
                res = vault.add_prepared(data, result[0], src, result[1])
            filed(num, uidl, nbytes, lines, res)

        def filed(num: int, uidl: str, nbytes: int, lines: int, res: AddResult) -> None:
            fetched[uidl] = res.msg_id
            rep.fetched += 1
            rep.bytes += nbytes
            if res.new:
                rep.new += 1
            else:
                rep.duplicates += 1
            if not _size_ok(sizes.get(num), nbytes, lines):
                mismatched.add(uidl)
                rep.warnings.append(
                    f"#{num} {uidl}: LIST said {sizes.get(num)} bytes, received {nbytes};"
                    " kept, and never deleted from the server"
                )
            progress.advance(1, nbytes)
            _maybe_commit(vault)

        stopped = False
        try:
            with _fetching(client):
                client.retr_many([n for n, _ in todo], begin, end, window=acct.pipeline_window)
        except BaseException as exc:
            # an interrupt; or, in a --jobs thread, the connection cut because of one
            stopped = isinstance(exc, KeyboardInterrupt) or interrupts.requested() is not None
            raise
        finally:
            # whatever arrived whole is kept, even when the session broke; on an
            # interrupt, what is already filed is committed and the rest is dropped
            # without waiting for the helper (the next run fetches it again). Every
            # message is filed whole or not at all (Vault holds signals back meanwhile),
            # and a commit refuses records whose blobs are not stored.
            try:
                if preparer is not None and not vault.broken and not stopped:
                    for item in preparer.ready(wait=True):
                        file_prepared(*item)
            finally:
                if preparer is not None:
                    preparer.close()
                    if preparer.failed is not None:
                        rep.warnings.append(
                            f"the helper process failed ({preparer.failed!r}); its messages"
                            " were added directly"
                        )
                with vault.mutex:
                    if not vault.broken:
                        vault.commit()
                progress.done()
        for w in rep.warnings:
            progress.warn(f"account {acct.name}: {w}")
        doomed: list[tuple[int, str]] = []
        archived_id: dict[str, bytes] = {}
        if _deletes(acct):
            with vault.mutex:
                known = vault.known_uidls(acct.name)
            unsafe = mismatched | {u for u in known if u.split("#", 1)[0] in duplicated}
            unsafe |= reused - set(fetched)
            # the message of this run's arrival, else the archived one
            archived_id = {u: fetched.get(u, m) for u, m in known.items()}
            doomed = _deletable(vault, acct, ident, archived_id, unsafe, no_uidl, now)
        if doomed:
            with vault.mutex:
                shape = vault.verify_messages({archived_id[u] for _, u in doomed})
            # LIST sizes are checked again against what the vault holds: a lie seen in an
            # earlier run (message kept then) must keep the message on the server now too
            kept = [
                (n, u)
                for n, u in doomed
                if u not in mismatched and not _size_ok(sizes.get(n), *shape[archived_id[u]])
            ]
            for num, uidl in kept:
                rep.warnings.append(
                    f"#{num} {uidl}: LIST says {sizes.get(num)} bytes, the vault holds"
                    f" {shape[archived_id[uidl]][0]}; kept on the server"
                )
                progress.warn(f"account {acct.name}: {rep.warnings[-1]}")
            doomed = [d for d in doomed if d not in kept]
            for num, _u in doomed:
                client.dele(num)
        # deletions take effect at QUIT: from there on, finish recording them before an
        # interrupt may stop the run (a QUIT answered late is bounded by the timeout)
        with interrupts.critical():
            client.quit()
            if doomed:
                with vault.mutex:
                    for _num, u in doomed:
                        vault.record_deletion(acct.name, u, archived_id[u])
                    vault.commit()
                rep.deleted = len(doomed)
    except BaseException:
        client.close()
        raise
    finally:
        rep.seconds = round(time.monotonic() - t0, 3)
    return rep


#: The POP3 sessions fetching right now, for an interrupt to cut (``run_backup``).
_sessions: set[Pop3Client] = set()
_sessions_lock = threading.Lock()


@contextlib.contextmanager
def _fetching(client: Pop3Client) -> Iterator[None]:
    """While ``client`` fetches, an interrupt may cut it (never later: from QUIT on,
    a deletion must be recorded)."""
    with _sessions_lock:
        _sessions.add(client)
    try:
        yield
    finally:
        with _sessions_lock:
            _sessions.discard(client)


def _cut_sessions() -> None:
    """Make the accounts fetching in other threads stop now: a read blocked on a slow
    or silent server would otherwise hold the interrupt up until its timeout."""
    with _sessions_lock:
        for client in _sessions:
            client.abort()


#: What the preparer carries with each message: number, UIDL, bytes and lines received.
_Tag = tuple[int, str, int, int]


def _preparer(vault: Vault, count: int) -> Preparer[_Tag] | None:
    """A helper process for a fetch of ``count`` messages, when it pays: enough messages,
    and a second CPU for it to run on. One: the thread reading POP3 is the limit, and
    each helper costs about 30 MB."""
    if count < PREPARE_MIN or (os.cpu_count() or 1) < 2:
        return None
    return Preparer(vault.keys.mac)


def _header_id(client: Pop3Client, num: int, size: int) -> str:
    """An identity for servers without UIDL: hash of the header section plus size."""
    head = client.top(num, 0)
    return f"popvault-top-{hashlib.sha256(head).hexdigest()[:32]}-{size}"


def _deletable(
    vault: Vault,
    acct: AccountConfig,
    ident: Sequence[tuple[int, str]],
    known: dict[str, bytes],
    mismatched: set[str],
    no_uidl: bool,
    now: float,
) -> list[tuple[int, str]]:
    """Messages the policy allows to DELE now (only archived ones, never mismatched)."""
    if not _deletes(acct):
        return []
    if no_uidl and not acct.allow_delete_without_uidl:
        return []
    out: list[tuple[int, str]] = []
    for num, uidl in ident:
        if uidl not in known or uidl in mismatched:
            continue
        if acct.delete:
            out.append((num, uidl))
        elif acct.delete_after_days is not None:
            with vault.mutex:
                first = vault.cache.first_archived(acct.name, uidl)
            if first is not None and now - first >= acct.delete_after_days * DAY:
                out.append((num, uidl))
    return out


def _deletes(acct: AccountConfig) -> bool:
    """Whether the account's policy ever deletes from the server."""
    return acct.delete or acct.delete_after_days is not None


def _maybe_commit(vault: Vault) -> None:
    with vault.mutex:
        if vault.pending_arrivals >= BATCH_MESSAGES or vault.pending_bytes >= BATCH_BYTES:
            vault.commit()


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
                _cut_sessions()
                raise
    return BackupReport(reports)
