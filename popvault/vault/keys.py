"""Key slots: unlocking a vault, adding and replacing passphrases, key exports (§4.3).

A vault's two master keys are wrapped in key slots (``keys/<random>``), one per
passphrase (:mod:`popvault.vault.crypto` seals and opens them). A new slot is always
written and verified before an old one is removed, so a failure or an interrupt never
leaves a vault that no passphrase opens.
"""

from __future__ import annotations

import re
from pathlib import Path

from popvault import interrupts
from popvault.errors import IntegrityError, UsageError, WrongPassphrase
from popvault.vault.backend import Backend
from popvault.vault.config import as_backend, read_config
from popvault.vault.crypto import (
    KdfParams,
    MasterKeys,
    import_keys,
    make_key_slot,
    open_key_slot,
    parse_checksum_json,
    random_hex,
    slot_params,
)

SLOT_NAME = re.compile(r"^keys/[0-9a-f]{32}$")


def slot_names(backend: Backend) -> list[str]:
    """The key slots: objects under ``keys/`` named by 32 lowercase hex digits (§4.2)."""
    return [n for n in backend.list("keys") if SLOT_NAME.match(n)]


def unlock(backend: Backend, vault_id: str, passphrase: bytes) -> MasterKeys:
    """Try every key slot; WrongPassphrase (12) when none opens."""
    slots = slot_names(backend)
    if not slots:
        raise IntegrityError(
            "the vault has no key slots", hint="restore keys with 'popvault key import'"
        )
    damaged: IntegrityError | None = None
    blobs = {slot: backend.get(slot) for slot in slots}
    # the cheapest first: a forged slot of maximal cost is tried last, if at all
    for slot in sorted(slots, key=lambda s: _cost(blobs[s])):
        try:
            return open_key_slot(blobs[slot], passphrase, vault_id, slot)
        except WrongPassphrase:
            continue
        except IntegrityError as exc:
            damaged = exc
    if damaged is not None and len(slots) == 1:
        raise damaged
    raise WrongPassphrase(
        "wrong passphrase: no key slot of this vault opens with it",
        hint="check --passphrase-file/--passphrase-command/POPVAULT_PASSPHRASE",
    )


def _cost(data: bytes) -> int:
    """How expensive trying a slot is; damaged ones sort last (they fail fast anyway)."""
    try:
        params = slot_params(parse_checksum_json(data, "key slot"))
    except (IntegrityError, KeyError, TypeError, ValueError):
        return 1 << 62
    return params.cost if params.acceptable else 1 << 62


def add_slot(
    backend: Backend,
    vault_id: str,
    keys: MasterKeys,
    passphrase: bytes,
    kdf: KdfParams | None = None,
    *,
    failure: str = "new key slot did not verify; the old one was kept",
) -> str:
    """Write a new key slot for ``passphrase`` and verify it opens to ``keys``; returns
    its object name. IntegrityError (and no new slot) if it does not verify."""
    name = f"keys/{random_hex(16)}"
    backend.put(name, make_key_slot(keys, passphrase, vault_id, kdf or KdfParams()))
    if open_key_slot(backend.get(name), passphrase, vault_id, name) != keys:
        backend.delete(name)
        raise IntegrityError(failure)
    return name


def replace_passphrase(
    backend: Backend,
    vault_id: str,
    keys: MasterKeys,
    old: bytes,
    new: bytes,
    kdf: KdfParams | None = None,
) -> None:
    """Replace the slot(s) that ``old`` opens by one for ``new`` (new verified first)."""
    old_slots = []
    for slot in slot_names(backend):
        try:
            open_key_slot(backend.get(slot), old, vault_id, slot)
            old_slots.append(slot)
        except (WrongPassphrase, IntegrityError):
            continue
    if not old_slots:
        raise WrongPassphrase("wrong passphrase")
    # not torn by a signal: a user told "interrupted" must not find both passphrases
    # working, nor be told that the change failed when it is done
    with interrupts.critical():
        add_slot(backend, vault_id, keys, new, kdf)
        for slot in old_slots:
            backend.delete(slot)


def import_key_export(
    where: Path | str | Backend, text: str, passphrase: bytes, kdf: KdfParams | None = None
) -> None:
    """Write a new key slot from a key export (for a vault whose passphrase is lost)."""
    backend, label = as_backend(where)
    vault_id = read_config(backend, label)
    try:
        exp_id, keys = import_keys(text)
    except ValueError as exc:
        raise UsageError(f"key export: {exc}") from None
    if exp_id != vault_id:
        raise UsageError(f"that key export belongs to vault {exp_id[:8]}…, not {vault_id[:8]}…")
    add_slot(backend, vault_id, keys, passphrase, kdf, failure="new key slot did not verify")
