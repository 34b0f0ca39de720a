"""popvault: make a mailbox impossible to lose.

The library API: the few names a program needs to keep mail in a vault and get it back.
The CLI (:mod:`popvault.cli`) is a thin layer on top of the same functions. See
docs/api.md::

    import popvault

    with popvault.open_vault("mail.vault", b"passphrase", write=True) as vault:
        popvault.import_mailbox(vault, ["~/Maildir"])
        for row in vault.messages(popvault.Filter(subject="invoice")):
            data = vault.read_message(row.id)

The names load on first use (PEP 562): ``import popvault`` itself costs nothing, which
matters for the command's start-up and for the helper process.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from popvault.app.backup import AccountReport as AccountReport
    from popvault.app.backup import BackupReport as BackupReport
    from popvault.app.backup import backup_account as backup_account
    from popvault.app.backup import run_backup as run_backup
    from popvault.app.config import AccountConfig as AccountConfig
    from popvault.app.export import ExportReport as ExportReport
    from popvault.app.export import export_messages as export_messages
    from popvault.app.importer import ImportReport as ImportReport
    from popvault.errors import AuthenticationFailed as AuthenticationFailed
    from popvault.errors import IntegrityError as IntegrityError
    from popvault.errors import MailboxFormatError as MailboxFormatError
    from popvault.errors import NetworkError as NetworkError
    from popvault.errors import PopvaultError as PopvaultError
    from popvault.errors import TemporaryFailure as TemporaryFailure
    from popvault.errors import UsageError as UsageError
    from popvault.errors import VaultLocked as VaultLocked
    from popvault.errors import VaultNotFound as VaultNotFound
    from popvault.errors import WrongPassphrase as WrongPassphrase
    from popvault.interrupts import Interrupted as Interrupted
    from popvault.vault import AddResult as AddResult
    from popvault.vault import CheckReport as CheckReport
    from popvault.vault import Filter as Filter
    from popvault.vault import MessageMeta as MessageMeta
    from popvault.vault import MessageRow as MessageRow
    from popvault.vault import SourceInfo as SourceInfo
    from popvault.vault import Vault as Vault

_WHERE = {
    "AccountConfig": "popvault.app.config",
    "AccountReport": "popvault.app.backup",
    "AddResult": "popvault.vault",
    "AuthenticationFailed": "popvault.errors",
    "BackupReport": "popvault.app.backup",
    "CheckReport": "popvault.vault",
    "ExportReport": "popvault.app.export",
    "Filter": "popvault.vault",
    "ImportReport": "popvault.app.importer",
    "IntegrityError": "popvault.errors",
    "Interrupted": "popvault.interrupts",
    "MailboxFormatError": "popvault.errors",
    "MessageMeta": "popvault.vault",
    "MessageRow": "popvault.vault",
    "NetworkError": "popvault.errors",
    "PopvaultError": "popvault.errors",
    "SourceInfo": "popvault.vault",
    "TemporaryFailure": "popvault.errors",
    "UsageError": "popvault.errors",
    "Vault": "popvault.vault",
    "VaultLocked": "popvault.errors",
    "VaultNotFound": "popvault.errors",
    "WrongPassphrase": "popvault.errors",
    "backup_account": "popvault.app.backup",
    "export_messages": "popvault.app.export",
    "run_backup": "popvault.app.backup",
}

__all__ = sorted([*_WHERE, "__version__", "create_vault", "import_mailbox", "open_vault"])


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'popvault' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def create_vault(path: str | Path, passphrase: bytes) -> None:
    """Create a new, empty vault in the folder ``path`` (new or empty; its parent must
    exist). UsageError (exit 2) when the folder holds anything."""
    from popvault.vault import Vault

    Vault.init(Path(path).expanduser(), passphrase).close()


def open_vault(
    path: str | Path,
    passphrase: bytes,
    *,
    write: bool = False,
    cache_dir: str | Path | None = None,
) -> Vault:
    """Open the vault at ``path``; ``write`` takes its writer lock (VaultLocked, exit 11,
    if another live process holds it). Use it as a context manager: closing releases the
    lock. Raises VaultNotFound (10), WrongPassphrase (12), IntegrityError (20)."""
    from popvault.vault import Vault

    return Vault.open(
        Path(path).expanduser(),
        passphrase,
        write=write,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
    )


def import_mailbox(
    vault: Vault, sources: list[str | Path], *, account: str = "import"
) -> ImportReport:
    """Add every message of the mbox files, Maildirs and .eml files in ``sources`` to
    ``vault`` (opened with ``write=True``) under ``account``; committed on return."""
    from popvault.app.importer import import_sources

    return import_sources(vault, [str(Path(s).expanduser()) for s in sources], account=account)
