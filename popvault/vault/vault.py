"""The vault facade: create, open, add, read, find, commit, check (docs/format.md).

:class:`Vault` is the one door to a vault. It joins the parts of this package: the
backend holding objects (:mod:`~popvault.vault.backend`), the key slots
(:mod:`~popvault.vault.keys`), pending writes and commits (:mod:`~popvault.vault.writer`),
the vault's own index of commit records and segments (:mod:`~popvault.vault.segments`),
reading (:mod:`~popvault.vault.reader`), the local SQLite cache
(:mod:`~popvault.vault.cache`), the writer lock and ``check``. Its methods are
thread-safe: one lock serialises every change and every cache look-up, and every change
of pending state runs with signals held back (:func:`popvault.interrupts.critical`); a
change that fails half-way leaves the vault refusing to commit ("reopen the vault").
"""

from __future__ import annotations

import contextlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from popvault import interrupts
from popvault.errors import PopvaultError, UsageError
from popvault.vault import guard, housekeeping, orphans
from popvault.vault import lock as lockmod
from popvault.vault.anchor import Anchor
from popvault.vault.backend import Backend, LocalBackend, total_size
from popvault.vault.cache import Filter, IndexCache, MessageRow, StoredMessage, open_cache
from popvault.vault.check import Checker, CheckReport
from popvault.vault.config import as_backend, config_body, read_vault_config
from popvault.vault.copy import CopyProgress, CopyReport, Source, copy_vault
from popvault.vault.crypto import (
    KdfParams,
    MasterKeys,
    checksum_json,
    export_keys,
    make_key_slot,
    random_hex,
)
from popvault.vault.ids import PreparedMessage
from popvault.vault.keys import add_slot, replace_passphrase, unlock
from popvault.vault.meta import MessageMeta
from popvault.vault.reader import Reader
from popvault.vault.records import AddResult, CommitRecord, DelRecord, RstRecord, SourceInfo
from popvault.vault.repair import PruneReport, RepairReport, plan_repair, prune_unnamed
from popvault.vault.segments import CommitLog
from popvault.vault.writer import DEFAULT_LEVEL, MessageWriter, Writer

__all__ = ["AddResult", "CheckReport", "MessageMeta", "MessageWriter", "SourceInfo", "Vault"]


class Vault:
    """An open vault; see the module doc. Open with :meth:`open` or :meth:`init`."""

    def __init__(
        self,
        backend: Backend,
        vault_id: str,
        keys: MasterKeys,
        cache: IndexCache,
        *,
        warn: Callable[[str], None],
        level: int = DEFAULT_LEVEL,
    ) -> None:
        self.backend = backend
        self.vault_id = vault_id
        self.keys = keys
        self.cache = cache
        self.warn = warn
        self._mutex = threading.RLock()
        self._lock: lockmod.Held | None = None
        self._broken = False
        self._log = CommitLog(backend, keys, vault_id)
        self._writer = Writer(backend, keys, vault_id, cache, self._log, level)
        self._reader = Reader(backend, keys, vault_id, cache.blob, headers=cache)
        self._anchor = Anchor(vault_id, location_of(backend, "the vault"))
        #: Damage found on opening (lost commits, rollback, a swapped vault): readers
        #: are told, writers refuse (format §8.6).
        self.damage: list[str] = []

    # ---------------------------------------------------------------- create / open

    @classmethod
    def init(
        cls,
        where: Path | str | Backend,
        passphrase: bytes,
        *,
        kdf: KdfParams | None = None,
        cache_dir: Path | None = None,
        cache_file: Path | None = None,
        state_dir: Path | None = None,
    ) -> Vault:
        """Create a new vault (config, one key slot) and open it read-only."""
        backend, label = as_backend(where)
        if isinstance(backend, LocalBackend):
            root = backend.root
            if root.exists() and (not root.is_dir() or any(root.iterdir())):
                raise UsageError(
                    f"{label} exists and is not empty", hint="choose a new or empty directory"
                )
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        else:  # an S3 bucket is created if missing; the location must hold nothing
            from popvault.vault.config import check_new_location

            check_new_location(backend, label)
        vault_id = random_hex(16)
        keys = MasterKeys.generate()
        slot = make_key_slot(keys, passphrase, vault_id, kdf or KdfParams())
        backend.put(f"keys/{random_hex(16)}", slot)
        backend.put("config", checksum_json(config_body(vault_id)))
        _anchor_call(Anchor(vault_id, location_of(backend, label), state_dir).remember_location)
        return cls.open(
            backend, passphrase, cache_dir=cache_dir, cache_file=cache_file, state_dir=state_dir
        )

    @classmethod
    def open(
        cls,
        where: Path | str | Backend,
        passphrase: bytes | None = None,
        *,
        keys: MasterKeys | None = None,
        write: bool = False,
        command: str = "popvault",
        cache_dir: Path | None = None,
        cache_file: Path | None = None,
        warn: Callable[[str], None] | None = None,
        sync: bool = True,
        repairing: bool = False,
        state_dir: Path | None = None,
    ) -> Vault:
        """Open a vault: unlock the keys, sync the cache, and with ``write`` take the lock.

        On opening, lost commits, a rollback and a swapped vault are looked for (format
        §8.6): a writer refuses them (IntegrityError, exit 20: run ``popvault repair``);
        a reader is told in :attr:`damage`. A writer adopts packs that no commit names.
        ``repairing``: open for :meth:`repair` (write, no refusal, no adoption).
        ``state_dir``: where this machine's anchors are (default: :func:`anchor.state_dir`).

        Raises VaultNotFound (10), WrongPassphrase (12), VaultLocked (11), IntegrityError.
        """
        backend, label = as_backend(where)
        conf = read_vault_config(backend, label)
        vault_id = conf.id
        if keys is None:
            if passphrase is None:
                raise UsageError("a passphrase is needed to open the vault")
            keys = unlock(backend, vault_id, passphrase)
        location = location_of(backend, label)
        cache = open_cache(backend, vault_id, keys, cache_dir, cache_file, warn, location)
        v = cls(backend, vault_id, keys, cache, warn=warn or (lambda _m: None))
        v._writer.pack_version = v._reader.version = conf.version  # format §4, §6.1
        v._anchor = Anchor(vault_id, location, state_dir)
        try:
            if write:
                with interrupts.critical():  # a lock taken is a lock this Vault releases
                    v._lock = lockmod.acquire(backend, command, v.warn)
                housekeeping.note_probe(backend, v._anchor, label, v.warn)
                backend.cleanup_temporary()
            if sync:
                v._open_checks(write=write, repairing=repairing)
        except BaseException:
            v.close()
            raise
        return v

    def _open_checks(self, *, write: bool, repairing: bool) -> None:
        """Sync the cache, look for lost commits (format §8.6); a writer also adopts
        what interrupted runs left (§8.4). Writers refuse a damaged vault (exit 20)."""
        lost: list[str] = []
        names = self._log.names()
        with self._mutex:
            housekeeping.sync_cache(self._log, self.cache, self.warn, lost, names)
        found = guard.merge(
            guard.cache_findings(lost),
            guard.chain_findings(names, self.cache),
            guard.anchor_findings(names, self._anchor, self.vault_id),
        )
        if write and not repairing:
            sv = orphans.survey(self._log, self._reader, self.warn, named=self.cache.pack_names())
            for text in orphans.lost_commits(sv.orphans, names):
                found.add(f"orphan:{text[5:17]}", text)
            if found:
                raise found.error("refusing to write to this vault")
            if sv.complete:
                self._adopt(orphans.plan_adoption(sv.orphans, self.cache))
        self.damage = found.messages
        if not found:
            if names:
                _anchor_call(lambda: self._anchor.advance(names[-1].split("/", 1)[1]), self.warn)
            _anchor_call(self._anchor.remember_location, self.warn)

    def _adopt(self, plan: orphans.Adoption) -> None:
        if plan.packs:
            with self._mutex:
                self._writer.adopt(plan.packs, plan.locs, plan.records)
            self.warn(
                f"found {len(plan.packs)} pack(s) that no commit names (an interrupted"
                " run, or a lost commit record); they are kept and committed with this run"
            )

    def close(self) -> None:
        """Release the lock and the cache. Pending (uncommitted) work is dropped. Not
        torn by a signal (the lock is always released); waits for a commit that another
        thread is making."""
        with interrupts.critical(), self._mutex:
            self._writer.close()
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            self.cache.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def broken(self) -> bool:
        """True after a failed write: the vault must be reopened."""
        return self._broken

    @property
    def bucket_created(self) -> bool:
        """Whether :meth:`init` had to create the storage's bucket (S3 vaults)."""
        return bool(getattr(self.backend, "bucket_created", False))

    @property
    def writable(self) -> bool:
        return self._lock is not None

    # ---------------------------------------------------------------- commits & cache

    def commit_names(self) -> list[str]:
        """Every commit record's object name, in commit order."""
        return self._log.names()

    def read_commit(self, name: str) -> CommitRecord:
        """One commit record, verified against its name (format §8.1)."""
        return self._log.read_commit(name)

    def sync_cache(self) -> int:
        """Bring the cache up to date with the vault's commits; returns commits applied."""
        with self._mutex:
            return housekeeping.sync_cache(self._log, self.cache, self.warn)

    def rebuild_cache(self, *, from_packs: bool = False) -> dict[str, int]:
        """Rebuild the cache from segments, or from packs (when segments are lost)."""
        with self._mutex:
            return housekeeping.rebuild_cache(
                self._log, self.cache, self._reader, self.warn, from_packs=from_packs
            )

    # ---------------------------------------------------------------- writing

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Around every change of pending state: one thread at a time, no signal in the
        middle (:func:`popvault.interrupts.critical`), and any failure half-way marks the
        vault broken, so that a torn state (a blob queued but its frame lost, a pack
        written but not listed) can never be committed."""
        with interrupts.critical(), self._mutex:
            self._require_writable()
            try:
                yield
            except BaseException:
                self._broken = True
                raise

    def _require_writable(self) -> None:
        if self._lock is None:
            raise PopvaultError("vault was opened read-only")
        self._lock.check()  # a lease broken as stale: this writer lost the vault (§10.1)
        if self._broken:
            raise PopvaultError("an earlier write failed; reopen the vault")

    def has_message(self, msg_id: bytes) -> bool:
        """Whether the vault holds (committed or pending) the message with this id."""
        with self._mutex:
            return self._writer.has_message(msg_id)

    def prefetch(self, msg_ids: list[bytes]) -> None:
        """Look up which of these messages the vault holds, in one query (a batch's)."""
        with self._mutex:
            self._writer.prefetch(msg_ids)

    def has_message_id(self, header: str) -> bool:
        """Whether a committed message has this Message-ID (metadata, never identity)."""
        with self._mutex:
            return bool(header) and self.cache.has_message_id(header)

    def new_message(self) -> MessageWriter:
        """A writer for one message streamed in chunks (bounded memory for any size)."""
        self._require_writable()
        return MessageWriter(self._writer, self._writing)

    def add_message(
        self, data: bytes, source: SourceInfo, meta: MessageMeta | None = None
    ) -> AddResult:
        """Add one message's exact bytes (pending until :meth:`commit`)."""
        w = self.new_message()
        w.write(data)
        return w.finish(source, meta)

    def add_prepared(
        self,
        data: bytes,
        prepared: PreparedMessage,
        source: SourceInfo,
        meta: MessageMeta | None = None,
    ) -> AddResult:
        """Add a message :func:`~popvault.vault.ids.prepare_message` has split and keyed
        (pending until :meth:`commit`): the same as :meth:`add_message` of ``data``,
        without the work.

        ``prepared`` must come from ``data`` and this vault's MAC key: its ids are taken
        as they are (reads, ``check --read-data`` and the read-back before any deletion
        verify them against the stored bytes)."""
        if prepared.size != len(data):
            raise ValueError("prepared message does not match its bytes")
        w = self._writer
        with self._writing():
            return w.file_message(
                prepared.msg_id,
                len(data),
                lambda: w.prepared_pieces(data, prepared),
                source,
                meta,
            )

    def record_deletion(self, account: str, uidl: str, msg_id: bytes | None) -> None:
        """Note that ``uidl`` was deleted from the server (pending until commit)."""
        with self._writing():
            self._writer.record(DelRecord(account, uidl, msg_id, time.time()))

    def record_restore(self, target: str, msg_id: bytes, uid: int | None) -> None:
        """Note that a message was restored to ``target`` (pending until commit)."""
        with self._writing():
            self._writer.record(RstRecord(target, msg_id, uid, time.time()))

    @property
    def pending(self) -> int:
        """Records waiting for the next commit."""
        return len(self._writer.records)

    def commit(self) -> str | None:
        """Make everything added so far durable and archived (format §8).

        Order: packs (already written as they filled), the last pack with the records
        blob, the index segment, then the commit record. On return the commit is durable.
        On failure nothing becomes archived; what was written is adopted by the next writer.
        Returns the commit name, or None when there was nothing to commit. If it raises
        after the commit record was renamed into place (a failing directory fsync), the
        commit may be visible on reopening: retrying is safe, dedup absorbs it.
        """
        with self._mutex:
            self._require_writable()
            if self._writer.empty:
                return None
            try:
                cname, locs, records = self._writer.commit()
                self.cache.apply(cname, locs, records)
            except BaseException:
                self._broken = True
                raise
            _anchor_call(lambda: self._anchor.advance(cname), self.warn)
            return cname

    def commit_if(self, *, arrivals: int, nbytes: int) -> str | None:
        """Commit when ``arrivals`` arrivals or ``nbytes`` bytes are pending (thread-safe)."""
        with self._mutex:
            w = self._writer
            if w.pending_arrivals >= arrivals or w.pending_bytes >= nbytes:
                return self.commit()
            return None

    # ---------------------------------------------------------------- reading

    def keyed_id(self, data: bytes) -> bytes:
        """The id this vault gives ``data`` (its keyed hash, format §5.1)."""
        return self.keys.keyed_id(data)

    def helper_key(self) -> bytes:
        """The MAC key alone (never the encryption key), for a helper that keys messages."""
        return self.keys.mac

    def hasher(self) -> hmac.HMAC:
        """An incremental keyed hash: ``digest()`` is the id of the bytes fed to it."""
        return self.keys.hasher()

    def read_blob(self, blob_id: bytes) -> bytes:
        """One blob's bytes, authenticated and checked against its keyed id."""
        with self._mutex:
            return self._reader.read_blob(blob_id)

    def message(self, msg_id: bytes) -> StoredMessage:
        with self._mutex:
            row = self.cache.message(msg_id)
        if row is None:
            raise UsageError(f"no message {msg_id.hex()[:12]} in the vault")
        return row

    def iter_message(self, msg_id: bytes, *, use_cache: bool = True) -> Iterator[bytes]:
        """Stream a message's exact bytes; raises IntegrityError (at the end at the latest)
        if the whole does not hash to its id. Every piece is authenticated before it is
        yielded, so nothing unauthenticated is ever returned."""
        row = self.message(msg_id)
        return self._reader.iter_message(msg_id, row.size, row.pieces, use_cache=use_cache)

    def read_message(self, msg_id: bytes, *, use_cache: bool = True) -> bytes:
        """A whole message, verified before it is returned."""
        return b"".join(self.iter_message(msg_id, use_cache=use_cache))

    def verify_messages(self, msg_ids: Iterable[bytes]) -> dict[bytes, tuple[int, int]]:
        """Read committed messages back from storage (no caches) and check their ids.

        This is the read-back that must pass before a message is DELE'd on a server;
        raises IntegrityError. Returns each message's (size, line feeds), so a caller can
        compare them with what a server claims."""
        with self._mutex:
            self._reader.forget_frames()
            shape: dict[bytes, tuple[int, int]] = {}
            for mid in msg_ids:
                size = lines = 0
                for chunk in self.iter_message(mid, use_cache=False):
                    size += len(chunk)
                    lines += chunk.count(b"\n")
                shape[mid] = (size, lines)
            return shape

    def resolve(self, prefix: str) -> bytes:
        """A message id from an unambiguous hex prefix; UsageError otherwise."""
        p = prefix.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{4,64}", p):
            raise UsageError(f"{prefix!r} is not a message id (4 to 64 hex digits)")
        with self._mutex:
            found = self.cache.resolve_prefix(p)
        if not found:
            raise UsageError(f"no message with id {p}")
        if len(found) > 1:
            raise UsageError(f"id prefix {p} is ambiguous", hint="give more digits")
        return found[0]

    def messages(self, flt: Filter | None = None) -> Iterator[MessageRow]:
        """The messages matching ``flt``, oldest delivery first."""
        return self.cache.messages(flt)

    def message_count(self) -> int:
        """How many distinct messages the vault holds (a look-up in the cache)."""
        with self._mutex:
            return self.cache.count("messages")

    def known_uidls(self, account: str) -> dict[str, bytes]:
        """UIDL -> message id of what is archived for ``account``."""
        with self._mutex:
            return self.cache.uidls(account)

    def reused_uidls(self, account: str) -> set[str]:
        """UIDLs of ``account`` deleted from its server after their last arrival: listed
        again, they name a new message (RFC 1939 lets a server reuse them)."""
        with self._mutex:
            return self.cache.reused_uidls(account)

    def first_archived(self, account: str, uidl: str) -> float | None:
        """When ``uidl`` of ``account`` was first archived (epoch seconds), if it was."""
        with self._mutex:
            return self.cache.first_archived(account, uidl)

    def restored(self, target: str) -> set[bytes]:
        """Ids of the messages recorded as restored to ``target``."""
        with self._mutex:
            return self.cache.restored(target)

    # ---------------------------------------------------------------- stats & check

    def stats(self) -> dict[str, Any]:
        with self._mutex:
            t = self.cache.totals()
        sizes = {k: total_size(self.backend, k) for k in _STORED}
        raw = t["raw_bytes"]
        stored = sum(sizes.values())
        return {
            "messages": t["messages"],
            "arrivals": t["arrivals"],
            "accounts": t["accounts"],
            "raw_bytes": raw,
            "arrival_bytes": t["arrival_bytes"],
            "unique_blob_bytes": t["blob_bytes"],
            "stored_bytes": stored,
            "dedup_ratio": (t["arrival_bytes"] / raw) if raw else 1.0,
            "compression_ratio": (raw / stored) if stored else 1.0,
            "commits": len(self.commit_names()),
            "packs": len(self.backend.list("packs")),
        }

    def pack_bytes(self) -> int:
        """Bytes of every pack present (what ``check --read-data`` reads)."""
        return total_size(self.backend, "packs")

    def check(
        self, *, read_data: bool = False, progress: Callable[[int], None] | None = None
    ) -> CheckReport:
        """Check structure (and with ``read_data`` every byte); never raises on damage,
        reports it. See docs/format.md §11 for what is verified at each level."""
        with self._mutex:
            checker = Checker(
                self.backend,
                self.keys,
                self.vault_id,
                self._log,
                self.cache,
                self._reader,
                locked=self._lock is not None,
                anchor=self._anchor,
                damage=self.damage,
            )
            return checker.run(read_data=read_data, progress=progress)

    # ---------------------------------------------------------------- repair & prune

    def repair(self) -> RepairReport:
        """Rebuild from every authentic object, adopt what no commit names, accept the
        chain's damage in a new commit and reset this machine's anchor (format §8.7).
        Deletes nothing. Needs a vault opened with ``write=True, repairing=True``."""
        with self._mutex:
            self._require_writable()
            sv = orphans.survey(self._log, self._reader, self.warn)
            rep, plan, accepts = plan_repair(self._log, self.cache, self._reader, sv)
            rep.accepted = [*self.damage, *(t for t in rep.accepted if t not in self.damage)]
            self._writer.adopt(plan.packs, plan.locs, plan.records)
            self._writer.accepts = accepts
            stale = bool(self.damage) or self._anchor.vault_at_location() != self.vault_id
        rep.commit = self.commit()
        with self._mutex:
            if rep.commit is not None:
                known = guard.load_keys(self.cache, guard.ACCEPTS_KEY)
                guard.save_keys(self.cache, guard.ACCEPTS_KEY, known | set(accepts))
            names = self._log.names()
            newest = names[-1].split("/", 1)[1] if names else None
            if rep.commit is not None or stale:
                _anchor_call(lambda: self._anchor.reset(newest), self.warn)
            _anchor_call(self._anchor.remember_location, self.warn)
            self.damage = []
        return rep

    def prune(self, *, dry_run: bool = False) -> PruneReport:
        """Delete packs and segments that no commit names and whose contents the vault
        holds elsewhere (after committing what this writer adopted)."""
        self.commit()
        with self._mutex:
            self._require_writable()
            sv = orphans.survey(self._log, self._reader, self.warn)
            return prune_unnamed(self._log, self.cache, sv, dry_run=dry_run, warn=self.warn)

    # ---------------------------------------------------------------- keys

    def add_passphrase(self, passphrase: bytes, kdf: KdfParams | None = None) -> str:
        """Write a new key slot and verify it opens; returns its object name."""
        return add_slot(self.backend, self.vault_id, self.keys, passphrase, kdf)

    def change_passphrase(self, old: bytes, new: bytes, kdf: KdfParams | None = None) -> None:
        """Replace the slot(s) that ``old`` opens by one for ``new`` (new verified first)."""
        replace_passphrase(self.backend, self.vault_id, self.keys, old, new, kdf)

    def export_keys(self) -> str:
        return export_keys(self.keys, self.vault_id)

    def copy_to(
        self, where: Path | str | Backend, progress: CopyProgress | None = None
    ) -> CopyReport:
        """Copy this vault to ``where`` (format §8.8): :func:`copy.copy_vault`."""
        a = self._anchor
        src = Source(self.backend, self.keys, self.vault_id, self._log, self._reader,
                     a.location, tuple(self.damage), a.folder)  # fmt: skip
        return copy_vault(src, where, progress=progress, warn=self.warn)


def location_of(backend: Backend, label: str) -> str:
    """Where a vault is, for the anchor: a local folder's absolute path, else the label."""
    if isinstance(backend, LocalBackend):
        return str(backend.root.resolve())
    return label


def _anchor_call(fn: Callable[[], None], warn: Callable[[str], None] | None = None) -> None:
    """Write the anchor; a state folder that cannot be written is a warning only."""
    try:
        fn()
    except OSError as exc:
        if warn is not None:
            warn(f"cannot record what this machine has seen of the vault: {exc}")


#: The object folders whose bytes ``stats`` counts as stored.
_STORED = ("packs", "index", "commits", "claims")
