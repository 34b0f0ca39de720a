"""The vault's ``config`` object and where a vault and its cache live (format §4).

``config`` is the one object of a vault that is not encrypted: the format name, the
format version and the vault id, as checksummed JSON. Reading it tells "no vault here"
(exit 10) from "a vault of a newer format" (refused, never misread) from "damaged"
(exit 20). The local index cache lives outside the vault, by default in
``$XDG_CACHE_HOME/popvault/<vault id>.sqlite``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from popvault.errors import IntegrityError, PopvaultError, VaultNotFound
from popvault.vault.backend import Backend, LocalBackend, ObjectNotFound
from popvault.vault.crypto import parse_checksum_json

FORMAT_NAME = "popvault-vault"
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get("POPVAULT_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "popvault"


def config_body(vault_id: str) -> dict[str, Any]:
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "id": vault_id}


def read_config(backend: Backend, where: str) -> str:
    """The vault id from ``config``: VaultNotFound (10) if there is no vault, a clear
    refusal for a newer format version, IntegrityError (20) if it is damaged."""
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
    return vid


def as_backend(where: Path | str | Backend) -> tuple[Backend, str]:
    """The backend of a vault location (a path means a local folder), and a label."""
    if isinstance(where, (str, Path)):
        return LocalBackend(Path(where)), str(where)
    return where, "the vault"


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
