"""The vault's ``config`` object and where a vault and its cache live (format §4).

``config`` is the one object of a vault that is not encrypted: the format name, the
format version and the vault id, as checksummed JSON. Reading it tells "no vault here"
(exit 10) from "a vault of a newer format" (refused, never misread) from "damaged"
(exit 20). The local index cache lives outside the vault, by default in
``$XDG_CACHE_HOME/popvault/<vault id>-<location key>.sqlite``. A location is a local folder or an
``s3://BUCKET[/PREFIX]`` URL (:func:`as_backend`, docs/storage.md).

Format versions (§4): 1 writes ``PVPACK01`` packs, 2 writes ``PVPACK02`` packs (every
byte authenticated). A new vault is version 2; a version 1 vault stays version 1 (and
readable by older popvault) until ``popvault upgrade`` (:func:`upgrade_config`) rewrites
its ``config``, the one object of a vault that is ever replaced.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from popvault import interrupts
from popvault.errors import IntegrityError, PopvaultError, UsageError, VaultNotFound
from popvault.vault import lock as lockmod
from popvault.vault.backend import Backend, LocalBackend, ObjectNotFound
from popvault.vault.crypto import checksum_json, parse_checksum_json
from popvault.vault.s3 import S3Backend, is_s3_url, parse_s3_url

FORMAT_NAME = "popvault-vault"
#: The highest format version this popvault reads, and the version of a new vault.
FORMAT_VERSION = 2
#: Every format version this popvault reads (and writes, keeping a vault's own).
FORMAT_VERSIONS = (1, 2)


def default_cache_dir() -> Path:
    env = os.environ.get("POPVAULT_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "popvault"


def config_body(vault_id: str, version: int = FORMAT_VERSION) -> dict[str, Any]:
    return {"format": FORMAT_NAME, "version": version, "id": vault_id}


@dataclass(frozen=True)
class VaultConfig:
    """What ``config`` says: the vault id and its format version (format §4)."""

    id: str
    version: int
    body: dict[str, Any]


def read_config(backend: Backend, where: str) -> str:
    """The vault id from ``config``: VaultNotFound (10) if there is no vault, a clear
    refusal for a newer format version, IntegrityError (20) if it is damaged."""
    return read_vault_config(backend, where).id


def read_vault_config(backend: Backend, where: str) -> VaultConfig:
    """``config`` checked as :func:`read_config` does: its id and format version."""
    try:
        data = backend.get("config")
    except ObjectNotFound:
        raise VaultNotFound(
            f"no vault at {where}", hint="create one with 'popvault init' or check --vault"
        ) from None
    body = parse_checksum_json(data, "vault config")
    if body.get("format") != FORMAT_NAME:
        raise VaultNotFound(f"{where} is not a popvault vault")
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise IntegrityError("vault config has an invalid format version")
    if version > FORMAT_VERSION:
        raise PopvaultError(
            f"vault format version {version} is newer than this popvault supports"
            f" ({FORMAT_VERSION})",
            hint="upgrade popvault to read this vault; it was not changed",
        )
    vid = body.get("id")
    if not isinstance(vid, str) or not re.fullmatch(r"[0-9a-f]{32}", vid):
        raise IntegrityError("vault config has a malformed id")
    return VaultConfig(vid, version, body)


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade_config` found and did."""

    vault_id: str
    before: int
    after: int
    changed: bool


def upgrade_config(
    where: Path | str | Backend,
    *,
    dry_run: bool = False,
    command: str = "popvault upgrade",
    warn: Callable[[str], None] = lambda _m: None,
) -> Upgrade:
    """Raise the vault's format version to :data:`FORMAT_VERSION` (format §4.1).

    Under the writer lock: ``config`` is read again, and rewritten (an atomic replace)
    with the new version and every other key kept; then read back. Nothing else changes:
    packs written before stay as they are (still read), new packs get the new version.
    A vault already at the version is left alone (``changed`` False); ``dry_run``
    changes nothing and takes no lock. Older popvault refuses the vault afterwards."""
    backend, label = as_backend(where)
    conf = read_vault_config(backend, label)
    if conf.version >= FORMAT_VERSION or dry_run:
        return Upgrade(conf.id, conf.version, FORMAT_VERSION, False)
    with interrupts.critical():
        lock = lockmod.acquire(backend, command, warn)
        try:
            conf = read_vault_config(backend, label)  # as it is now, under the lock
            if conf.version >= FORMAT_VERSION:
                return Upgrade(conf.id, conf.version, conf.version, False)
            backend.put("config", checksum_json({**conf.body, "version": FORMAT_VERSION}))
            after = read_vault_config(backend, label)
            if after.id != conf.id or after.version != FORMAT_VERSION:
                raise IntegrityError("vault config did not read back as written")
        finally:
            lock.release()
    return Upgrade(conf.id, conf.version, FORMAT_VERSION, True)


def as_backend(where: Path | str | Backend) -> tuple[Backend, str]:
    """The backend of a vault location, and a label for messages.

    ``s3://BUCKET[/PREFIX]`` is an :class:`~popvault.vault.s3.S3Backend` (boto3 is
    imported on its first request, never here), labelled by the URL; any other string or
    path is a local folder."""
    if isinstance(where, str) and is_s3_url(where):
        s3 = S3Backend(parse_s3_url(where))
        return s3, s3.label
    if isinstance(where, (str, Path)):
        return LocalBackend(Path(where)), str(where)
    if isinstance(where, S3Backend):
        return where, where.label
    return where, "the vault"


def check_new_location(backend: Backend, label: str) -> None:
    """Before ``init`` writes to a location that is not a local folder: an S3 location
    gets its bucket created if missing and must hold nothing yet (UsageError, nothing
    written; :meth:`S3Backend.prepare_init`); any other backend must hold no vault."""
    if isinstance(backend, S3Backend):
        backend.prepare_init()
    elif backend.exists("config"):
        raise UsageError(f"{label} already holds a vault")


def is_vault_url(where: str) -> bool:
    """Whether a vault location is a URL (``s3://...``) rather than a local folder."""
    return is_s3_url(where)


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """A JSON object of format version 1; IntegrityError or a clear refusal otherwise."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise IntegrityError(f"{what} is malformed") from None
    if not isinstance(body, dict):
        raise IntegrityError(f"{what} is malformed")
    version = body.get("version")
    if type(version) is not int or version != 1:  # JSON true and 1.0 are not 1
        if isinstance(version, int) and not isinstance(version, bool) and version > 1:
            raise PopvaultError(
                f"{what} has format version {version}, newer than this popvault supports",
                hint="upgrade popvault; the vault was not changed",
            )
        raise IntegrityError(f"{what} has an invalid format version")
    return body
