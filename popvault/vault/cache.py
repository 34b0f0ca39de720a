"""The local index cache: a SQLite file rebuilt from the vault (docs/format.md §9.3).

The module that opens popvault's databases (:mod:`~popvault.vault.listing`,
:mod:`~popvault.vault.fts` and :mod:`~popvault.vault.scratch` run their SQL on
connections made here). "Index" in the
format means the vault's own encrypted segments (:mod:`popvault.vault.segments`); this is
the cache of them.

The vault's authoritative index is its encrypted segments (and, failing those, its
packs). This cache holds the same facts for fast listing and look-ups, outside the
vault, in ``$XDG_CACHE_HOME/popvault/<vault id>-<location key>.sqlite`` (0600, in a
0700 folder; one per location, see :func:`open_cache`): a SQLCipher database (SQLite
encrypted; FTS5 built in, for full-text search) keyed with a key derived from the
master key (:mod:`popvault.vault.cachekey`), plaintext only on
request. It records which commits it has applied; a cache that knows a commit the vault
does not is discarded and rebuilt. Deleting it is always safe.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import sqlcipher3

from popvault.errors import UsageError
from popvault.vault import fts, listing
from popvault.vault.backend import Backend
from popvault.vault.bulk import insert_rows
from popvault.vault.cachekey import (
    PLAIN_HEADER,
    CacheKey,
    encrypted_owner,
    file_head,
    make_private,
    plaintext_requested,
)
from popvault.vault.crypto import MasterKeys
from popvault.vault.listing import WINDOW as WINDOW
from popvault.vault.pack import BlobLocation
from popvault.vault.records import Pieces, Record, piece_ids, pieces_from_json
from popvault.vault.rows import LISTED_COLUMNS, CommitRows, stored_message
from popvault.vault.rows import Filter as Filter
from popvault.vault.rows import MessageRow as MessageRow
from popvault.vault.rows import StoredMessage as StoredMessage

SCHEMA_VERSION = "2"

#: SQLCipher settings after the key (format §9.3; a file made with others does not open
#: with these): 16 KiB pages and HMAC-SHA256 scan a 300,000-message cache about twice
#: as fast as SQLCipher's 4 KiB and HMAC-SHA512; memory security (wiping freed memory)
#: stays off, SQLCipher's default. A page read again costs a decryption, so the page
#: cache is 32 MiB (used only as pages are read): enough for the index of a listing's
#: arrivals on 300,000 messages (docs/performance.md).
_CIPHER_SETTINGS = (
    "PRAGMA cipher_page_size = 16384",
    "PRAGMA cipher_hmac_algorithm = HMAC_SHA256",
    "PRAGMA cipher_memory_security = OFF",
    "PRAGMA cache_size = -32768",
)
_EARLIEST = "first_archived = COALESCE(MIN(first_archived, {0}), first_archived, {0}), {2}"
_EARLIEST = _EARLIEST.replace("{2}", "file_time = COALESCE(MIN(file_time, {1}), file_time, {1})")
_DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.DatabaseError, sqlcipher3.DatabaseError)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commits(name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS blobs(
  id BLOB PRIMARY KEY, kind TEXT NOT NULL, pack TEXT NOT NULL, frame INTEGER NOT NULL,
  frame_offset INTEGER NOT NULL, frame_length INTEGER NOT NULL,
  offset INTEGER NOT NULL, length INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages(
  id BLOB PRIMARY KEY, size INTEGER NOT NULL, pieces TEXT NOT NULL,
  date REAL, received REAL, from_ TEXT, to_ TEXT, cc TEXT, subject TEXT, message_id TEXT,
  file_time REAL, first_archived REAL);
CREATE TABLE IF NOT EXISTS sources(
  msg BLOB NOT NULL, account TEXT NOT NULL, uidl TEXT, source TEXT NOT NULL, flags TEXT,
  archived REAL NOT NULL, file_time REAL, from_line_time REAL);
CREATE INDEX IF NOT EXISTS sources_account ON sources(account, uidl, msg);
CREATE INDEX IF NOT EXISTS sources_msg ON sources(msg);
CREATE INDEX IF NOT EXISTS messages_message_id ON messages(message_id);
CREATE INDEX IF NOT EXISTS messages_delivered
  ON messages(COALESCE(received, file_time, first_archived, -1e308), id);
CREATE UNIQUE INDEX IF NOT EXISTS sources_unique
  ON sources(msg, account, ifnull(uidl, ''), source, archived);
CREATE TABLE IF NOT EXISTS deletions(
  account TEXT NOT NULL, uidl TEXT NOT NULL, msg BLOB, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS incomplete(msg BLOB PRIMARY KEY);
CREATE TABLE IF NOT EXISTS pack_headers(pack TEXT PRIMARY KEY, header BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS restores(
  target TEXT NOT NULL, msg BLOB NOT NULL, uid INTEGER, time REAL NOT NULL,
  PRIMARY KEY(target, msg));
"""

#: Every pack a blob of an applied commit is in (what :meth:`IndexCache.pack_names`
#: reads: a writer's open read every blob for it, 0.08 s at 100,000 messages and ten
#: times that at a million).
_PACKS = "CREATE TABLE packs(name TEXT PRIMARY KEY) WITHOUT ROWID"
#: ``meta`` key: how many applied commits ``packs`` is complete for.
_PACKS_MARK = "packs_commits"


def _key_pragma(key: CacheKey) -> str:
    """``PRAGMA key`` with the raw key and salt: SQLCipher runs no KDF on it."""
    return f"PRAGMA key = \"x'{key.key.hex()}{key.salt.hex()}'\""


def cache_owner(path: Path) -> str | None:
    """Whose cache ``path`` is, as far as the file tells without a key: the vault id of a
    plaintext cache, the first 16 hex digits of an encrypted one's; None for a missing,
    empty, damaged or unrelated file."""
    if file_head(path) != PLAIN_HEADER:
        return encrypted_owner(file_head(path))
    db = sqlite3.connect(path, timeout=60)
    try:
        row = db.execute("SELECT value FROM meta WHERE key='vault_id'").fetchone()
    except _DB_ERRORS:
        return None
    finally:
        db.close()
    return None if row is None else str(row[0])


class IndexCache:
    """A connection to one vault's cache. Not shared between threads.

    ``path`` None: in memory (plain SQLite: nothing at rest). Else a file, encrypted with
    ``key`` (SQLCipher), or plaintext when ``key`` is None. A file that does not open as
    asked is deleted (with its ``-wal`` and ``-shm``) and made anew, empty, for the vault
    to rebuild: silently when it is a popvault cache of the other kind (a plaintext cache
    of an earlier popvault, or an encrypted one after ``POPVAULT_CACHE_PLAINTEXT=1``);
    otherwise (wrong key, damaged, some other file) ``warn`` is told."""

    def __init__(
        self,
        path: Path | None,
        key: CacheKey | None = None,
        *,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.encrypted = key is not None
        self._key = key  # a second connection's (fts.SearchIndex.own)
        if path is None:
            self.db = sqlite3.connect(":memory:", check_same_thread=False)
            self._prepare()
            return
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        make_private(path.parent)
        try:
            self._open(path, key)
        except _DB_ERRORS:
            # not a database we can open: it is only a cache
            if warn is not None and not _other_kind(path, key):
                what = "this vault's key" if key is not None else "SQLite"
                warn(
                    f"index cache {path} did not open with {what} (damaged, or another file):"
                    " replaced, and rebuilt from the vault"
                )
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
            self._open(path, key)

    @classmethod
    def for_vault(
        cls,
        path: Path,
        vault_id: str,
        keys: MasterKeys,
        warn: Callable[[str], None] | None = None,
    ) -> IndexCache:
        """The cache file of a vault: encrypted with :meth:`CacheKey.derive` unless
        ``POPVAULT_CACHE_PLAINTEXT=1``. A file that says it is another vault's cache is
        refused (UsageError, exit 2); one that does not open is replaced (see above)."""
        owner = cache_owner(path)
        if owner is not None and not vault_id.startswith(owner):
            raise UsageError(
                f"index cache {path} belongs to another vault ({owner[:8]}…)",
                hint="delete that file or point --cache elsewhere; it is only a cache",
            )
        key = None if plaintext_requested() else CacheKey.derive(keys, vault_id)
        return cls(path, key, warn=warn)

    def _open(self, path: Path, key: CacheKey | None) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        # sqlcipher3 is the stdlib's sqlite3 module built against SQLCipher (the same
        # DB-API), untyped: typed here as the stdlib's
        lib: Any = sqlite3 if key is None else sqlcipher3
        self.db = cast(
            sqlite3.Connection, lib.connect(str(path), timeout=60, check_same_thread=False)
        )
        try:
            if key is not None:
                self.db.execute("PRAGMA cipher_log_level = NONE")  # no stderr noise
                self.db.execute(_key_pragma(key))
                for setting in _CIPHER_SETTINGS:
                    self.db.execute(setting)
                # the key check: DatabaseError ("file is not a database") if it is wrong
                self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA temp_store=MEMORY")
            self._prepare()
        except BaseException:
            self.db.close()
            raise

    def _prepare(self) -> None:
        """Create missing tables; a cache of another schema version is emptied."""
        self.db.executescript(_SCHEMA)
        self._prepare_packs()
        fts.prepare(self.db)  # made anew when its definition changed
        schema = self.get_meta("schema")
        if schema is not None and schema != SCHEMA_VERSION:
            self.reset(self.get_meta("vault_id") or "")

    def _prepare_packs(self) -> None:
        """The ``packs`` table (:data:`_PACKS`): made, or made anew, from ``blobs`` in one
        transaction when the cache has none (an older popvault's) or when commits were
        applied without it (an older popvault wrote to this cache meanwhile: the count
        of applied commits it was complete for, :data:`_PACKS_MARK`, is behind)."""
        find = "SELECT 1 FROM sqlite_master WHERE name='packs'"
        if self.db.execute(find).fetchone() is not None and self._packs_current():
            return
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if self.db.execute(find).fetchone() is None:
                self.db.execute(_PACKS)
            elif self._packs_current():
                return
            self.db.execute("DELETE FROM packs")
            self.db.execute("INSERT INTO packs SELECT DISTINCT pack FROM blobs")
            self._mark_packs()

    def _packs_current(self) -> bool:
        count = self.db.execute("SELECT COUNT(*) FROM commits").fetchone()[0]
        return (self.get_meta(_PACKS_MARK) or "0") == str(count)

    def _mark_packs(self) -> None:
        """Within a transaction that applied commits: ``packs`` is complete for them."""
        self.db.execute(
            "INSERT OR REPLACE INTO meta VALUES(?, (SELECT COUNT(*) FROM commits))", (_PACKS_MARK,)
        )

    def close(self) -> None:
        self.db.close()

    # --- identity -------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.db:  # committed now, also outside another transaction
            self.db.execute("INSERT OR REPLACE INTO meta VALUES(?,?)", (key, value))

    def reset(self, vault_id: str) -> None:
        """Empty every table (before a rebuild)."""
        with self.db:
            for t in (
                "meta",
                "commits",
                "blobs",
                "messages",
                "sources",
                "deletions",
                "restores",
                "incomplete",
                "pack_headers",
                "packs",
                fts.TABLE,
            ):
                self.db.execute(f"DELETE FROM {t}")  # noqa: S608 (fixed names)
            self.set_meta("vault_id", vault_id)
            self.set_meta("schema", SCHEMA_VERSION)

    def applied_commits(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM commits")}

    # --- applying a commit -------------------------------------------------------------

    def apply(
        self, commit: str | None, blobs: Iterable[BlobLocation], records: Iterable[Record]
    ) -> None:
        """Add one commit's blob locations and records, in one transaction.

        Records are applied grouped by table (a statement each, :func:`insert_rows`):
        messages before the sources that update them; within a table, in record order."""
        rows = CommitRows()
        for r in records:
            rows.add(r)
        msgs, pieces, srcs = rows.msgs, rows.pieces, rows.srcs
        dels, rsts = rows.dels, rows.rsts
        blobs = list(blobs)
        with self.db:
            insert_rows(
                self.db,
                "INSERT OR IGNORE INTO blobs",
                [(b.blob_id, b.kind, *b.fields()) for b in blobs],
            )
            insert_rows(
                self.db, "INSERT OR IGNORE INTO packs", [(p,) for p in {b.pack for b in blobs}]
            )
            # a message stored again while incomplete brings pieces whose blobs exist
            if self.db.execute("SELECT 1 FROM incomplete LIMIT 1").fetchone() is not None:
                self.db.executemany(
                    "UPDATE messages SET pieces=? WHERE id=? AND id IN"
                    " (SELECT msg FROM incomplete)",
                    ((m[2], m[0]) for m in msgs),
                )
            insert_rows(  # a new row: this commit's times; one there: the earlier
                self.db,
                "INSERT INTO messages",
                rows.message_rows(),
                " ON CONFLICT(id) DO UPDATE"
                f" SET {_EARLIEST.format('excluded.first_archived', 'excluded.file_time')}",
            )
            self._note_incomplete(pieces, {b.blob_id for b in blobs})
            insert_rows(self.db, "INSERT OR IGNORE INTO sources", srcs)
            sql = f"UPDATE messages SET {_EARLIEST.format('?1', '?2')} WHERE id=?3"  # noqa: S608
            self.db.executemany(sql, rows.other_times())  # messages recorded before
            self.db.executemany("INSERT INTO deletions VALUES(?,?,?,?)", dels)
            self.db.executemany("INSERT OR REPLACE INTO restores VALUES(?,?,?,?)", rsts)
            if commit is not None:
                self.db.execute("INSERT OR IGNORE INTO commits VALUES(?)", (commit,))
            self._mark_packs()

    def _note_incomplete(self, pieces: list[tuple[bytes, list[bytes]]], new: set[bytes]) -> None:
        """Within :meth:`apply`'s transaction: mark the messages of this commit whose
        blobs are not all in the index (format §8.6: written by earlier versions of popvault
        when interrupted), and unmark those a new arrival of the same message completed."""
        wanted = list({b for _, ids in pieces for b in ids if b not in new})
        have = new | self.stored_blobs(wanted) if wanted else new
        torn = [(m,) for m, ids in pieces if not have.issuperset(ids)]
        if torn:
            self.db.executemany("INSERT OR IGNORE INTO incomplete VALUES(?)", torn)
        rows = self.db.execute(
            "SELECT m.id, m.pieces FROM incomplete i JOIN messages m ON m.id = i.msg"
        ).fetchall()
        for msg, text in rows:
            ids = piece_ids(pieces_from_json(json.loads(text)))
            if len(self.stored_blobs(ids)) == len(set(ids)):
                self.db.execute("DELETE FROM incomplete WHERE msg=?", (msg,))

    def incomplete(self) -> set[bytes]:
        """Messages recorded in the vault whose blobs are not all in its packs: not
        archived (format §8.3); their UIDLs count as not seen, so they are fetched again."""
        return {bytes(r[0]) for r in self.db.execute("SELECT msg FROM incomplete")}

    def mark_applied(self, commits: Iterable[str]) -> None:
        """Note commits as applied (after a rebuild from packs)."""
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO commits VALUES(?)", ((c,) for c in commits))
            self._mark_packs()

    # --- look-ups -----------------------------------------------------------------

    def blob(self, blob_id: bytes) -> BlobLocation | None:
        row = self.db.execute(
            "SELECT kind, pack, frame, frame_offset, frame_length, offset, length"
            " FROM blobs WHERE id=?",
            (blob_id,),
        ).fetchone()
        if row is None:
            return None
        return BlobLocation(blob_id, *row)

    def pack_header(self, pack: str) -> bytes | None:
        """The header of ``pack`` as a read verified it once (:class:`Reader`): a read of
        one blob then needs no request for it (the frame's decryption checks it again)."""
        row = self.db.execute("SELECT header FROM pack_headers WHERE pack=?", (pack,)).fetchone()
        return None if row is None else bytes(row[0])

    def remember_pack_header(self, pack: str, header: bytes) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO pack_headers(pack, header) VALUES (?, ?)", (pack, header)
            )

    def stored_blobs(self, blob_ids: Sequence[bytes]) -> set[bytes]:
        """Those of ``blob_ids`` the index holds (in queries of at most 500 ids)."""
        found: set[bytes] = set()
        for i in range(0, len(blob_ids), 500):
            part = blob_ids[i : i + 500]
            marks = ",".join("?" * len(part))  # only placeholders go into the text
            q = f"SELECT id FROM blobs WHERE id IN ({marks})"  # noqa: S608
            found.update(bytes(r[0]) for r in self.db.execute(q, part))
        return found

    def has_message(self, msg_id: bytes) -> bool:
        """Whether the message is archived (an incomplete one is not: format §8.6)."""
        row = self.db.execute(
            "SELECT 1 FROM messages WHERE id=? AND id NOT IN (SELECT msg FROM incomplete)",
            (msg_id,),
        ).fetchone()
        return row is not None

    def known_messages(self, msg_ids: Sequence[bytes]) -> set[bytes]:
        """Which of ``msg_ids`` are archived (:meth:`has_message` of each), in few queries."""
        found: set[bytes] = set()
        for i in range(0, len(msg_ids), 500):
            part = list(msg_ids[i : i + 500])
            marks = ",".join("?" * len(part))  # only placeholders go into the text
            sql = f"SELECT id FROM messages WHERE id IN ({marks})"  # noqa: S608
            sql += " AND id NOT IN (SELECT msg FROM incomplete)"
            found.update(bytes(r[0]) for r in self.db.execute(sql, part))
        return found

    def has_message_id(self, header: str) -> bool:
        """Whether an archived message carries this Message-ID header value."""
        row = self.db.execute(
            "SELECT 1 FROM messages WHERE message_id=? LIMIT 1", (header,)
        ).fetchone()
        return row is not None

    def source_exists(self, msg: bytes, account: str, uidl: str | None, source: str) -> bool:
        if uidl is not None:
            q = "SELECT 1 FROM sources WHERE msg=? AND account=? AND uidl=?"
            return self.db.execute(q, (msg, account, uidl)).fetchone() is not None
        q = "SELECT 1 FROM sources WHERE msg=? AND account=? AND source=?"
        return self.db.execute(q, (msg, account, source)).fetchone() is not None

    def uidls(self, account: str) -> dict[str, bytes]:
        """UIDL -> message id of everything archived for ``account`` (not the UIDLs
        of incomplete messages: format §8.3.1). A UIDL with several arrivals (the
        server reused it) maps to its latest one."""
        # from the (account, uidl, msg) index alone: no row of the table is read and
        # nothing sorted (a no-op backup of 100,000 UIDLs: 140-164 -> about 100 ms)
        q = (
            "SELECT uidl, msg FROM sources WHERE account=? AND uidl IS NOT NULL"
            " AND msg NOT IN (SELECT msg FROM incomplete)"
        )
        known: dict[str, bytes] = {}
        rows = 0
        for uidl, msg in self.db.execute(q, (account,)):  # no list of every row held
            known[uidl] = msg
            rows += 1
        if rows > len(known):
            # a UIDL with several arrivals: the latest one counts
            return dict(self.db.execute(f"{q} ORDER BY archived", (account,)))
        return known

    def first_archived(self, account: str, uidl: str) -> float | None:
        row = self.db.execute(
            "SELECT MIN(archived) FROM sources WHERE account=? AND uidl=?", (account, uidl)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def reused_uidls(self, account: str) -> set[str]:
        """UIDLs of ``account`` recorded as deleted from the server after their last
        arrival: if a server lists one again, it names a new message (RFC 1939 lets a
        server reuse a unique-id once its message is gone)."""
        rows = self.db.execute(
            "SELECT d.uidl FROM deletions d WHERE d.account = ? GROUP BY d.uidl"
            " HAVING MAX(d.time) >= COALESCE((SELECT MAX(s.archived) FROM sources s"
            " WHERE s.account = d.account AND s.uidl = d.uidl), 0)",
            (account,),
        )
        return {str(r[0]) for r in rows}

    def restored(self, target: str) -> set[bytes]:
        return {r[0] for r in self.db.execute("SELECT msg FROM restores WHERE target=?", (target,))}

    def resolve_prefix(self, prefix: str) -> list[bytes]:
        """Up to two message ids starting with the hex ``prefix`` (two means ambiguous)."""
        rows = self.db.execute(
            "SELECT id FROM messages WHERE hex(id) LIKE ? LIMIT 2", (prefix.upper() + "%",)
        )
        return [r[0] for r in rows]

    def messages(self, flt: Filter | None = None, *, window: int = WINDOW) -> Iterator[MessageRow]:
        """Messages matching ``flt``, oldest delivery first, ``window`` a query
        (:func:`popvault.vault.listing.messages`)."""
        return listing.messages(self, flt, window=window)

    def message_pieces(self, *, window: int = WINDOW) -> Iterator[tuple[bytes, int, Pieces]]:
        """Every message's id, size and pieces, oldest delivery first
        (:func:`popvault.vault.listing.message_pieces`)."""
        return listing.message_pieces(self, window=window)

    def arrivals(self, msg_ids: list[bytes]) -> dict[bytes, list[Any]]:
        """Message id -> its arrivals (account, uidl, source, flags), oldest first."""
        return listing.arrivals(self, msg_ids)

    def message(self, msg_id: bytes) -> StoredMessage | None:
        row = self.db.execute(
            f"SELECT {LISTED_COLUMNS}, m.pieces FROM messages m WHERE id=?",  # noqa: S608
            (msg_id,),
        ).fetchone()
        if row is None:
            return None
        srcs = self.db.execute(
            "SELECT account, uidl, source, flags FROM sources WHERE msg=? ORDER BY archived, rowid",
            (msg_id,),
        ).fetchall()
        return stored_message(row[:-1], srcs, row[-1])

    def pack_names(self) -> set[str]:
        """The packs the applied commits name (every one holds a blob its segment lists,
        format §9.1): what a writer needs to tell unnamed packs without reading every
        commit record."""
        return {str(r[0]) for r in self.db.execute("SELECT name FROM packs")}

    def count(self, table: Literal["messages", "blobs"]) -> int:
        """Rows of ``messages`` or ``blobs``."""
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608

    def totals(self) -> dict[str, int]:
        def one(sql: str) -> int:
            v = self.db.execute(sql).fetchone()[0]
            return int(v or 0)

        return {
            "messages": one("SELECT COUNT(*) FROM messages"),
            "raw_bytes": one("SELECT SUM(size) FROM messages"),
            "arrivals": one("SELECT COUNT(*) FROM sources"),
            "arrival_bytes": one(
                "SELECT SUM(m.size) FROM sources s JOIN messages m ON m.id = s.msg"
            ),
            "accounts": one("SELECT COUNT(DISTINCT account) FROM sources"),
            "blobs": one("SELECT COUNT(*) FROM blobs"),
            "blob_bytes": one("SELECT SUM(length) FROM blobs"),
        }


def _other_kind(path: Path, key: CacheKey | None) -> bool:
    """Whether ``path``, which did not open with ``key``, is a popvault cache of the other
    kind: plaintext when a key was given, encrypted when none was."""
    owner = cache_owner(path)
    if owner is None:
        return False
    return (encrypted_owner(file_head(path)) is not None) == (key is None)


def open_cache(
    backend: Backend,
    vault_id: str,
    keys: MasterKeys,
    cache_dir: Path | None,
    cache_file: Path | None,
    warn: Callable[[str], None] | None,
    location: str,
) -> IndexCache:
    """The vault's cache (format §9.3): a file for a local or S3 vault or ``--cache``
    (see :meth:`IndexCache.for_vault`), else in memory. One file per location: a copy
    of the vault elsewhere (behind or ahead of it) has a cache of its own."""
    from popvault.vault.anchor import location_key
    from popvault.vault.backend import LocalBackend
    from popvault.vault.config import default_cache_dir
    from popvault.vault.s3 import S3Backend

    path = cache_file
    if path is None and isinstance(backend, (LocalBackend, S3Backend)):
        name = f"{vault_id}-{location_key(location)}.sqlite"
        path = (cache_dir or default_cache_dir()) / name
    if path is None:
        return IndexCache(None)
    return IndexCache.for_vault(path, vault_id, keys, warn)


def open_scratch(path: Path) -> sqlite3.Connection:
    """A throwaway database at ``path``, encrypted with a random key that never leaves
    this process (``check``'s blob table, :mod:`popvault.vault.scratch`)."""
    lib: Any = sqlcipher3
    db = cast(sqlite3.Connection, lib.connect(str(path), check_same_thread=False))
    try:
        db.execute("PRAGMA cipher_log_level = NONE")
        db.execute(f"PRAGMA key = \"x'{secrets.token_hex(32)}'\"")
        for setting in _SCRATCH_SETTINGS:
            db.execute(setting)
    except BaseException:
        db.close()
        raise
    return db


_SCRATCH_SETTINGS = (
    "PRAGMA journal_mode = OFF",
    "PRAGMA synchronous = OFF",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA cache_size = -16384",
)
