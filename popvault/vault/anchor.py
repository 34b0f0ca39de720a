"""The per-machine anchor: what this machine has seen of a vault (format §8.6).

The vault's storage may be rolled back or swapped by whoever controls it, and the local
cache may be deleted or rebuilt; neither can then tell that newer commits existed. The
anchor is a small file outside the cache, in the state folder (``$POPVAULT_STATE_DIR``,
else ``$XDG_STATE_HOME/popvault``, else ``~/.local/state/popvault``):

- ``vaults/<vault id>-<location key>.json``: the newest commit this machine has seen or
  written at that location (``{"seq": N, "commit": "<10 digits>-<64 hex>"}``); it only
  moves forward. Per location, because copies of one vault (``popvault copy``) are
  legitimately behind their source: each is held to what was seen of it;
- ``locations/<sha256 of the location>.json``: the vault id last seen at a location
  (``{"location": "...", "vault_id": "<32 hex>"}``), and for object storage whether it
  honoured conditional writes when last probed (``"conditional_writes": true``).

The location key is :func:`location_key`; the cache file is named with it too.

It is plain JSON (mode 0600, folders 0700): it holds no mail, and an attacker on this
machine is out of scope (format §12.3). Writes are atomic (temporary file, fsync,
rename). A file that does not parse is treated as absent and replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from popvault.fsync import fsync_dir

_COMMIT = re.compile(r"^([0-9]{10})-[0-9a-f]{64}\Z")
_VAULT_ID = re.compile(r"^[0-9a-f]{32}$")


def state_dir() -> Path:
    """Where anchors live (see the module doc)."""
    explicit = os.environ.get("POPVAULT_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "popvault"


@dataclass(frozen=True)
class Seen:
    """The newest commit of a vault this machine has seen."""

    seq: int
    commit: str


class Anchor:
    """This machine's memory of one vault and of its location."""

    def __init__(self, vault_id: str, location: str, folder: Path | None = None) -> None:
        self.vault_id = vault_id
        self.location = location
        self.folder = folder if folder is not None else state_dir()

    @property
    def _vault_file(self) -> Path:
        return self.folder / "vaults" / f"{self.vault_id}-{location_key(self.location)}.json"

    @property
    def _location_file(self) -> Path:
        return self.folder / "locations" / f"{_digest(self.location)}.json"

    # ------------------------------------------------------------------ reading

    def seen(self) -> Seen | None:
        """The newest commit seen, or None (never seen, or an unreadable file)."""
        body = _read(self._vault_file)
        if body is None:
            return None
        seq, commit = body.get("seq"), body.get("commit")
        if not isinstance(commit, str) or not isinstance(seq, int) or isinstance(seq, bool):
            return None
        m = _COMMIT.match(commit)
        if m is None or int(m.group(1)) != seq:
            return None
        return Seen(seq, commit)

    def vault_at_location(self) -> str | None:
        """The vault id last seen at this location, or None."""
        body = _read(self._location_file)
        if body is None or body.get("location") != self.location:
            return None
        vid = body.get("vault_id")
        return vid if isinstance(vid, str) and _VAULT_ID.match(vid) else None

    # ------------------------------------------------------------------ writing

    def advance(self, commit: str) -> None:
        """Remember ``commit`` (a short commit name) if it is newer than what was seen."""
        m = _COMMIT.match(commit)
        if m is None:
            return
        seq = int(m.group(1))
        old = self.seen()
        if old is not None and (old.seq > seq or old.commit == commit):
            return
        _write(self._vault_file, {"seq": seq, "commit": commit})

    def reset(self, commit: str | None) -> None:
        """Forget what was seen and remember ``commit`` (after a repair)."""
        if commit is None:
            with contextlib.suppress(FileNotFoundError):
                self._vault_file.unlink()
            return
        m = _COMMIT.match(commit)
        if m is not None:
            _write(self._vault_file, {"seq": int(m.group(1)), "commit": commit})

    def remember_location(self) -> None:
        """Remember that this location holds this vault."""
        if self.vault_at_location() != self.vault_id:
            self._update_location(vault_id=self.vault_id)

    def note_conditional_writes(self, honoured: bool) -> bool | None:
        """Remember whether the storage here honours conditional writes (the probe's
        answer, format §10.1); the answer it gave before when that was different."""
        before = (self._location_body() or {}).get("conditional_writes")
        if before is not honoured:
            self._update_location(conditional_writes=honoured)
        return before if isinstance(before, bool) and before is not honoured else None

    def _location_body(self) -> dict[str, Any] | None:
        body = _read(self._location_file)
        return body if body is not None and body.get("location") == self.location else None

    def _update_location(self, **fields: object) -> None:
        body = self._location_body() or {}
        _write(self._location_file, {**body, "location": self.location, **fields})


def _digest(location: str) -> str:
    return hashlib.sha256(location.encode("utf-8", "surrogateescape")).hexdigest()


def location_key(location: str) -> str:
    """16 hex digits naming a location in file names (anchor, cache)."""
    return _digest(location)[:16]


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as f:
            data = f.read(4096)
        body = json.loads(data)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _write(path: Path, body: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``body`` (0600, folders 0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{secrets.token_hex(8)}")
    data = json.dumps(body, sort_keys=True).encode() + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
